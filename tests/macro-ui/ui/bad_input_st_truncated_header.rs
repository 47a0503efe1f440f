dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/bad_input/st_truncated_header/model.toml");

fn main() {}
