//! Exercises the build-script front end: the golden MLP generated through `dynq_build::Config`
//! into OUT_DIR, included by tests/golden_mlp.rs next to the macro-generated one. Also writes
//! `native_kernels.rs`: the kernels this machine runs (`dynq_build::native_kernels`), for the
//! runtime-level tests that instantiate the forward themselves (tests/batch.rs), as the models
//! the tests generate with `kernels = "native"` are compiled for them only.

use std::fmt::Write;

fn main() {
    dynq_build::Config::new()
        .name("golden_mlp_build_rs")
        .compile("golden/mlp.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    // Scalar first: the property tests compare the others with it.
    let mut names = dynq_build::native_kernels();
    names.rotate_right(1);
    let mut src = String::from(
        "/// The kernels of the machine that built the tests, scalar first.\n\
         pub const NATIVE: &[dynq_runtime::KernelId] = &[",
    );
    for name in &names {
        let variant = dynq_build::codegen::kernel_variant(name);
        write!(src, "dynq_runtime::KernelId::{variant}, ").unwrap();
    }
    src.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::write(out.join("native_kernels.rs"), src).unwrap();
}
