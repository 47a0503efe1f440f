dynq_macros::dynq_model!("../../../../tests/ui/bad_input/st_invalid_header_json/model.toml");

fn main() {}
