dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/wrong_shape.toml");

fn main() {}
