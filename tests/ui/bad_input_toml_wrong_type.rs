dynq_macros::dynq_model!("../../../../tests/ui/bad_input/toml_wrong_type/model.toml");

fn main() {}
