dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/bad_input/bert_config_disagrees/model.toml");

fn main() {}
