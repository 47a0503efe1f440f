dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/does_not_exist.toml");

fn main() {}
