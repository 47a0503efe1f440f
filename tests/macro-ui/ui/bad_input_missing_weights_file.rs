dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/bad_input/missing_weights_file/model.toml");

fn main() {}
