dynq_macros::dynq_model!("../../../../tests/ui/bad_input/lstm_gate_dimension/model.toml");

fn main() {}
