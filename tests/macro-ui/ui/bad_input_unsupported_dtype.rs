dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/bad_input/unsupported_dtype/model.toml");

fn main() {}
