//! Nothing: this package exists for its test, tests/macro-ui/macro_ui.rs, whose trybuild
//! projects then depend on `dynq-macros` alone instead of the whole end-to-end test crate.
