dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/bad_input/lstm_gate_dimension/model.toml");

fn main() {}
