use std::path::PathBuf;

/// Everything that can go wrong while turning a model description into code.
///
/// Every message names the file and the key or tensor at fault and, where there are two values,
/// what was expected and what was found.
///
/// ```
/// let e = dynq_build::Error::Tensor {
///     file: "m.safetensors".into(),
///     tensor: "net.0.weight".into(),
///     message: "expected shape [32, 64], found [32, 63]".into(),
/// };
/// assert_eq!(e.to_string(), "m.safetensors: tensor `net.0.weight`: expected shape [32, 64], found [32, 63]");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done ("cannot read", "cannot write").
        action: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The TOML description is malformed or inconsistent.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Spec {
        /// The TOML file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The weights file is not a valid safetensors file.
    #[error("{}: {message}", file.display())]
    Weights {
        /// The weights file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor is missing, has the wrong shape or dtype, or holds NaN/Inf.
    #[error("{}: tensor `{tensor}`: {message}", file.display())]
    Tensor {
        /// The weights file.
        file: PathBuf,
        /// The tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// A line of an input file (`dynq report --inputs`) is malformed or does not fit the model.
    #[error("{}:{line}: {message}", file.display())]
    Input {
        /// The input file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Invalid options given to the builder, the macro or the command line.
    #[error("{0}")]
    Options(String),
    /// Compiling a standalone binary failed.
    #[error("{0}")]
    Build(String),
}

impl Error {
    /// An I/O error on `path` while doing `action` ("cannot read", ...).
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
