dynq_macros::dynq_model!("../../../../tests/ui/unknown_key.toml");

fn main() {}
