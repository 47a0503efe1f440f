//! `dynq-cli`: the `dynq` command-line tool over [`dynq_build`], and the library behind its
//! subcommands.
//!
//! - [`inspect`]: the tensors of a safetensors file (`dynq inspect`);
//! - [`init`]: a model description for a Hugging Face encoder checkpoint (`dynq init`);
//! - [`summary`]: what a description builds, layer by layer (`dynq check`);
//! - [`report`]: where INT8 loses accuracy, measured on the model's own forward (`dynq report`);
//! - [`standalone`]: a standalone inference executable (`dynq build`).
//!
//! These live apart from `dynq-build` so that the `dynq_model!` macro, which compiles
//! `dynq-build`, does not compile what only the command needs (clap, indicatif, plotters, the
//! runtime with its tokenizer).
#![warn(missing_docs)]

pub mod init;
pub mod inspect;
pub mod progress;
pub mod report;
pub mod standalone;
pub mod summary;
