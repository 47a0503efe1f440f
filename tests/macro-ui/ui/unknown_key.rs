dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/unknown_key.toml");

fn main() {}
