dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/bad_input/st_overlapping_offsets/model.toml");

fn main() {}
