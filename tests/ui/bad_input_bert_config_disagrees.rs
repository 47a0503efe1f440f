dynq_macros::dynq_model!("../../../../tests/ui/bad_input/bert_config_disagrees/model.toml");

fn main() {}
