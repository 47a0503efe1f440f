//! The `dynq` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dynq_build::standalone::{default_runtime_path, StandaloneBuild};
use dynq_build::{Options, Placement, Precision};

/// Turn a trained network (TOML description + safetensors weights) into a specialized INT8
/// Rust function or a standalone inference executable.
#[derive(Parser, Debug)]
#[command(name = "dynq", version, about, long_about = None)]
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
    /// Build a standalone executable `DIR/<model name>` that reads one JSON object per line on
    /// stdin (`{"input": [...]}`) and writes one per line on stdout (`{"output": [...]}`).
    Build {
        /// The model description.
        model: PathBuf,
        /// Output directory (the generated Cargo project and the executable).
        #[arg(short, long)]
        out: PathBuf,
        /// Numeric precision of the generated model.
        #[arg(long, value_enum, default_value = "int8")]
        precision: PrecisionArg,
        /// The dynq-runtime crate to depend on (default: the one of this checkout).
        #[arg(long)]
        runtime: Option<PathBuf>,
        /// Cargo target directory for the compile (default: DIR/target).
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// Show cargo's output.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print the Rust source generated for a model (like cargo expand).
    Expand {
        /// The model description.
        model: PathBuf,
        /// Numeric precision of the generated model.
        #[arg(long, value_enum, default_value = "int8")]
        precision: PrecisionArg,
    },
    /// Validate a model description against its weights without writing anything, and print a
    /// summary.
    Check {
        /// The model description.
        model: PathBuf,
    },
}

fn run(cli: Cli) -> dynq_build::Result<()> {
    match cli.command {
        Cmd::Build {
            model,
            out,
            precision,
            runtime,
            target_dir,
            verbose,
        } => {
            let build = StandaloneBuild {
                toml: model,
                out_dir: out,
                options: Options {
                    precision: precision.into(),
                    ..Options::default()
                },
                runtime_path: runtime.unwrap_or_else(default_runtime_path),
                target_dir,
                verbose,
            };
            eprintln!("dynq: compiling the standalone binary (release)...");
            let exe = build.run()?;
            println!("{}", exe.display());
        }
        Cmd::Expand { model, precision } => {
            let options = Options {
                precision: precision.into(),
                ..Options::default()
            };
            let g = dynq_build::generate(&model, &options, Placement::Relative)?;
            print!("{}", g.code);
        }
        Cmd::Check { model } => {
            let g = dynq_build::generate(&model, &Options::default(), Placement::Relative)?;
            let linears = g.model.linears();
            let params: usize = linears
                .iter()
                .map(|l| {
                    l.in_features * l.out_features + l.bias.as_ref().map_or(0, |b| b.data.len())
                })
                .sum();
            println!("model `{}` ({}): ok", g.name, g.type_name);
            for l in &linears {
                println!(
                    "  {:<32} {:>6} -> {:<6} {:?} {:?}",
                    l.name, l.in_features, l.out_features, l.activation, l.precision
                );
            }
            println!(
                "  {params} parameters, f32 {:.1} KiB, blob {:.1} KiB",
                params as f64 * 4.0 / 1024.0,
                g.blob.bytes.len() as f64 / 1024.0
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
