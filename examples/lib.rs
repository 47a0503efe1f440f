//! Examples of using dynq; run them with `cargo run --release --example <name>`.
//!
//! * `digits`: an MLP trained on scikit-learn's 8x8 digits, INT8 next to f32.
