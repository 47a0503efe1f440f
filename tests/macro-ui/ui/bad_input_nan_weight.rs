dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/bad_input/nan_weight/model.toml");

fn main() {}
