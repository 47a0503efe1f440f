dynq_macros::dynq_model!("../../../../tests/ui/wrong_shape.toml");

fn main() {}
