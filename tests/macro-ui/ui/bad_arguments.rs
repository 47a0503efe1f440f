dynq_macros::dynq_model!("golden/mlp.toml", precision = "fp16");
dynq_macros::dynq_model!("golden/mlp.toml", threads = "2");
dynq_macros::dynq_model!(golden_mlp);
dynq_macros::dynq_model!("../../../../tests/golden/mlp.toml", kernels = "avx2, sse9");
dynq_macros::dynq_model!("../../../../tests/golden/mlp.toml", weights = "disk");
dynq_macros::dynq_model!("../../../../tests/golden/mlp.toml", forward = "shared");

fn main() {}
