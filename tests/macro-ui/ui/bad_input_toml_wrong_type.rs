dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/bad_input/toml_wrong_type/model.toml");

fn main() {}
