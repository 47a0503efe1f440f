dynq_macros::dynq_model!("../../../../tests/ui/bad_input/nan_weight/model.toml");

fn main() {}
