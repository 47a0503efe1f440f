dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/bad_input/st_invalid_header_json/model.toml");

fn main() {}
