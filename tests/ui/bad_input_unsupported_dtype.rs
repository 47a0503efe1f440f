dynq_macros::dynq_model!("../../../../tests/ui/bad_input/unsupported_dtype/model.toml");

fn main() {}
