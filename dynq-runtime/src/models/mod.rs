//! Whole-model drivers: each model kind owns its forward and the sizing of its scratch, generic
//! over the kernel and the sizes, so generated code and tools run the same function.

pub mod encoder;
