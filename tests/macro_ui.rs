//! Compile-fail tests of `dynq_model!`: bad descriptions and arguments give a `compile_error!`
//! at the call with the library's message, and one mistake does not cascade.

// trybuild compiles each case in its own project under target/tests/trybuild/dynq-tests, and
// the macro resolves paths against that project's CARGO_MANIFEST_DIR, so the cases name their
// TOML files from there (`../../../../tests/ui/...`).
#[test]
fn macro_errors_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
