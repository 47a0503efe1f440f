//! Exercises the build-script front end: the golden MLP generated through `dynq_build::Config`
//! into OUT_DIR, included by tests/golden_mlp.rs next to the macro-generated one.

fn main() {
    dynq_build::Config::new()
        .name("golden_mlp_build_rs")
        .compile("golden/mlp.toml")
        .unwrap_or_else(|e| panic!("{e}"));
}
