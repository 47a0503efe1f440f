dynq_macros::dynq_model!("../../../../tests/ui/does_not_exist.toml");

fn main() {}
