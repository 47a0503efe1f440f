dynq_macros::dynq_model!("golden/mlp.toml", precision = "fp16");
dynq_macros::dynq_model!("golden/mlp.toml", threads = "2");
dynq_macros::dynq_model!(golden_mlp);

fn main() {}
