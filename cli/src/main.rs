//! The `dynq` command-line tool.

use std::fmt::Display;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dynq_build::spec::{ForwardKind, WeightsStorage};
use dynq_build::{Options, Placement, Precision};
use dynq_cli::standalone::{default_runtime_path, StandaloneBuild};

/// Turn a trained network (TOML description + safetensors weights) into a specialized INT8
/// Rust function or a standalone inference executable.
///
/// A typical session with a Hugging Face encoder checkpoint: `dynq inspect` its weights,
/// `dynq init` a description, `dynq check` it, `dynq report` where INT8 loses accuracy, then
/// `dynq build` an executable (or use the description with the `dynq_model!` macro).
#[derive(Parser, Debug)]
#[command(name = "dynq", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum PrecisionArg {
    /// INT8 weights, activations quantized dynamically at run time.
    Int8,
    /// The unquantized f32 reference of the same model.
    F32,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum WeightsArg {
    /// In the binary (the default): one self-contained file.
    Embedded,
    /// In `<name>.blob` beside the binary, memory-mapped and checked at first use: builds a
    /// base-size model in seconds and keeps the binary small.
    File,
}

impl From<WeightsArg> for WeightsStorage {
    fn from(w: WeightsArg) -> Self {
        match w {
            WeightsArg::Embedded => WeightsStorage::Embedded,
            WeightsArg::File => WeightsStorage::File,
        }
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum ForwardArg {
    /// The model's own forward, sizes as constants, compiled per kernel (`expand`'s default).
    Inlined,
    /// dynq-runtime's precompiled forward, sizes as values (encoders; `build`'s default):
    /// builds in seconds.
    Shared,
}

impl From<ForwardArg> for ForwardKind {
    fn from(f: ForwardArg) -> Self {
        match f {
            ForwardArg::Inlined => ForwardKind::Inlined,
            ForwardArg::Shared => ForwardKind::Shared,
        }
    }
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Int8 => Precision::Int8,
            PrecisionArg::F32 => Precision::F32,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List the tensors of a safetensors file: dtypes, shapes, value ranges, NaN/Inf counts.
    #[command(after_help = "Example:\n  dynq inspect models/minilm/model.safetensors")]
    Inspect {
        /// The weights file.
        weights: PathBuf,
    },
    /// Write a model description (TOML) for a Hugging Face encoder checkpoint (BERT, RoBERTa,
    /// XLM-RoBERTa, DistilBERT, MPNet, ELECTRA).
    ///
    /// Detects the family from `model_type`, the tensor prefix (`bert.`, `roberta.`, ... or none), the output (`logits` when the weights have a
    /// classifier and the config names its labels, else `mean_pooled`) and a `tokenizer.json`
    /// next to the config, then checks the result as `dynq check` would.
    #[command(
        after_help = "Example:\n  dynq init --hf-config ckpt/config.json --weights ckpt/model.safetensors -o my_model.toml"
    )]
    Init {
        /// The checkpoint's `config.json`.
        #[arg(long, value_name = "CONFIG.JSON")]
        hf_config: PathBuf,
        /// The checkpoint's weights.
        #[arg(long, value_name = "MODEL.SAFETENSORS")]
        weights: PathBuf,
        /// Where to write the description; paths inside are relative to it. Without it the
        /// description is printed, with absolute paths.
        #[arg(short, long, value_name = "MODEL.TOML")]
        out: Option<PathBuf>,
        /// The model's name (default: from the output file or the checkpoint's directory).
        #[arg(long)]
        name: Option<String>,
        /// Matryoshka truncation of pooled embeddings: keep the first N values, L2-normalized
        /// again (`[encoder] dims`).
        #[arg(long, value_name = "N")]
        dims: Option<usize>,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Validate a model description against its weights without generating code, and print a
    /// summary (layers, shapes, parameter count, INT8 size). Exit code 1 on any error.
    #[command(after_help = "Example:\n  dynq check examples/digits/digits.toml")]
    Check {
        /// The model description.
        model: PathBuf,
    },
    /// Print the Rust source generated for a model (like cargo expand), or write it with its
    /// weight blob (and tokenizer) into a directory.
    #[command(
        after_help = "Examples:\n  dynq expand examples/digits/digits.toml > digits.rs\n  dynq expand examples/digits/digits.toml -o src/generated"
    )]
    Expand {
        /// The model description.
        model: PathBuf,
        /// Write `<name>.rs`, `<name>.blob` (and `<name>.tokenizer.json`) into this directory
        /// instead of printing the source; the source includes the blob by a relative path.
        #[arg(short, long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        generate: GenerateArgs,
    },
    /// Measure INT8 quantization error per layer and flag the layers that most deserve
    /// `[quantize] keep_f32`.
    ///
    /// Always: weight error (SQNR in dB, largest absolute error, the worst output channels).
    /// With --inputs: the model runs in f32 and in INT8 on each input, and every linear layer's
    /// output is compared both ways: cumulative (the INT8 model against the f32 model at that
    /// layer) and local (the layer alone in INT8 on the f32 model's input). Layers are ranked by
    /// local SQNR, since keeping one in f32 removes exactly that error.
    #[command(
        after_help = "Examples:\n  dynq report examples/digits/digits.toml\n  dynq report models/minilm/minilm.toml --inputs tests/golden/minilm/sentences.jsonl --plot report.svg"
    )]
    Report {
        /// The model description.
        model: PathBuf,
        /// JSON lines, one input per line, as the standalone binary reads them:
        /// {"input": [...]} for an MLP, {"text": "..."} or {"input_ids": [...]} for BERT.
        #[arg(long, value_name = "FILE.JSONL")]
        inputs: Option<PathBuf>,
        /// Also draw the table as an SVG chart.
        #[arg(long, value_name = "REPORT.SVG")]
        plot: Option<PathBuf>,
    },
    /// Build a standalone executable `DIR/<model name>` that reads one JSON object per line on
    /// stdin (`{"input": [...]}`) and writes one per line on stdout (`{"output": [...]}`).
    #[command(after_help = "Example:\n  dynq build examples/digits/digits.toml -o /tmp/digits")]
    Build {
        /// The model description.
        model: PathBuf,
        /// Output directory (the generated Cargo project and the executable). It must be empty,
        /// new, or one an earlier `dynq build` wrote (it holds a `.dynq-build` marker).
        #[arg(short, long)]
        out: PathBuf,
        /// Write into DIR even if it holds files `dynq build` did not write (its Cargo.toml,
        /// src/main.rs and the executable are replaced).
        #[arg(long)]
        force: bool,
        /// The dynq-runtime crate to depend on, by path (default: the one of this checkout, or
        /// the crates.io release of this version for an installed `dynq`).
        #[arg(long)]
        runtime: Option<PathBuf>,
        /// Cargo target directory for the compile (default: one shared by all `dynq build`s,
        /// under the user's cache directory, so the runtime is compiled once; `DYNQ_TARGET_DIR`
        /// sets it too).
        #[arg(long, env = "DYNQ_TARGET_DIR")]
        target_dir: Option<PathBuf>,
        /// Show cargo's output.
        #[arg(short, long)]
        verbose: bool,
        /// Cargo profile of the compile: `release` (default) or `dev`, which compiles several
        /// times faster and runs some 60 times slower (to check that a model builds).
        #[arg(long, default_value = "release")]
        profile: String,
        #[command(flatten)]
        generate: GenerateArgs,
    },
}

/// The generation options `expand` and `build` share.
#[derive(clap::Args, Debug)]
struct GenerateArgs {
    /// Numeric precision of the generated model.
    #[arg(long, value_enum, default_value = "int8")]
    precision: PrecisionArg,
    /// Kernels to compile the forward for, overriding the TOML's `[target] kernels`:
    /// comma-separated names, or `native` for this machine's CPU (builds faster and makes a
    /// smaller binary; on a CPU without them it runs the scalar kernel).
    #[arg(long, value_delimiter = ',', value_name = "LIST|native")]
    kernels: Option<Vec<String>>,
    /// Where the weights go, overriding the TOML's `[target] weights`: `embedded` in the
    /// binary, or `file`, `<name>.blob` beside it (written next to the output), loaded
    /// at first use and checked against the build.
    #[arg(long, value_enum, value_name = "embedded|file")]
    weights: Option<WeightsArg>,
    /// Which forward an encoder runs, overriding the TOML's `[target] forward`: `inlined`,
    /// its own with constant sizes, compiled per model (minutes), or `shared`, dynq-runtime's
    /// precompiled one (seconds; needs the runtime's `shared-forward` feature, which `dynq
    /// build` turns on). Without either, `expand` generates inlined and `build` shared.
    #[arg(long, value_enum, value_name = "inlined|shared")]
    forward: Option<ForwardArg>,
}

impl GenerateArgs {
    fn options(self) -> Options {
        Options {
            precision: self.precision.into(),
            kernels: self.kernels,
            weights: self.weights.map(Into::into),
            forward: self.forward.map(Into::into),
            ..Options::default()
        }
    }
}

/// Why a command stopped early.
enum Stop {
    /// An error to report.
    Failed(dynq_build::Error),
    /// Standard output was closed by its reader (`dynq report ... | head`): not an error.
    ClosedPipe,
}

impl From<dynq_build::Error> for Stop {
    fn from(e: dynq_build::Error) -> Self {
        Stop::Failed(e)
    }
}

/// Prints `text` on standard output; a closed pipe stops the command quietly instead of
/// panicking as `print!` would.
fn emit(text: impl Display) -> Result<(), Stop> {
    let mut out = std::io::stdout().lock();
    match write!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(Stop::ClosedPipe),
        Err(source) => Err(Stop::Failed(dynq_build::Error::Io {
            path: "<stdout>".into(),
            action: "cannot write",
            source,
        })),
    }
}

fn run(cli: Cli) -> Result<(), Stop> {
    match cli.command {
        Cmd::Inspect { weights } => emit(dynq_cli::inspect::inspect(&weights)?)?,
        Cmd::Init {
            hf_config,
            weights,
            out,
            name,
            dims,
            force,
        } => {
            if let Some(out) = out.as_deref().filter(|o| o.exists() && !force) {
                // Refuse before the work, not after it.
                dynq_cli::init::write_new(out, "", false)?;
            }
            let d = dynq_cli::init::describe(
                &hf_config,
                &weights,
                out.as_deref(),
                name.as_deref(),
                dims,
            )?;
            match out {
                Some(out) => {
                    dynq_cli::init::write_new(&out, &d.toml, force)?;
                    eprintln!(
                        "dynq: wrote {} (model `{}`, family {}, prefix {:?}, output {}{}); next: dynq check {}",
                        out.display(),
                        d.name,
                        d.family,
                        d.prefix,
                        d.output.name(),
                        if d.tokenizer.is_some() { ", tokenizer" } else { "" },
                        out.display()
                    );
                }
                None => emit(&d.toml)?,
            }
        }
        Cmd::Check { model } => emit(dynq_cli::summary::check(&model)?)?,
        Cmd::Expand {
            model,
            out,
            generate,
        } => {
            let g = dynq_build::generate(&model, &generate.options(), Placement::Relative)?;
            match out {
                Some(dir) => emit(format_args!("{}\n", g.write_files(&dir)?.display()))?,
                None => emit(&g.code)?,
            }
        }
        Cmd::Report {
            model,
            inputs,
            plot,
        } => {
            let report = dynq_cli::report::report(&model, inputs.as_deref())?;
            if let Some(plot) = &plot {
                report.plot_svg(plot)?;
            }
            emit(&report)?;
            if let Some(plot) = &plot {
                eprintln!("dynq: wrote {}", plot.display());
            }
        }
        Cmd::Build {
            model,
            out,
            force,
            runtime,
            target_dir,
            verbose,
            profile,
            generate,
        } => {
            let build = StandaloneBuild {
                toml: model,
                out_dir: out,
                // Encoders run the shared forward unless told otherwise: the runtime, already
                // compiled in the shared target directory, holds it, so a model builds in
                // seconds rather than minutes per model.
                options: Options {
                    default_forward: ForwardKind::Shared,
                    ..generate.options()
                },
                runtime_path: runtime.or_else(default_runtime_path),
                target_dir,
                force,
                verbose,
                profile: Some(profile.clone()),
            };
            let project = build.write_project()?;
            eprintln!("dynq: compiling the standalone binary ({profile})...");
            let exe = build.compile(&project.bin)?;
            if let Some(w) = &project.weights_file {
                eprintln!(
                    "dynq: the weights are in {} (not in the executable): ship it beside it, \
                     or point DYNQ_WEIGHTS_DIR at its directory",
                    w.display()
                );
            }
            emit(format_args!("{}\n", exe.display()))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    dynq_cli::progress::enable();
    match run(Cli::parse()) {
        Ok(()) | Err(Stop::ClosedPipe) => ExitCode::SUCCESS,
        Err(Stop::Failed(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
