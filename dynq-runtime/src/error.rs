/// Everything that can go wrong when a generated model runs.
///
/// ```
/// let e = dynq_runtime::Error::InputLength { expected: 64, rows: 1, width: 64, found: 63 };
/// assert_eq!(e.to_string(), "input length: expected 64 values (1 rows x 64), found 63");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A forward call asked for zero rows (or a row count whose size overflows).
    #[error("no rows: a forward call needs at least one row")]
    NoRows,
    /// The input slice does not hold `rows * width` values.
    #[error("input length: expected {expected} values ({rows} rows x {width}), found {found}")]
    InputLength {
        /// `rows * width`.
        expected: usize,
        /// Rows asked for.
        rows: usize,
        /// Input width of the model.
        width: usize,
        /// Length of the slice passed.
        found: usize,
    },
    /// The output slice does not hold `rows * width` values.
    #[error("output length: expected {expected} values ({rows} rows x {width}), found {found}")]
    OutputLength {
        /// `rows * width`.
        expected: usize,
        /// Rows asked for.
        rows: usize,
        /// Output width of the model.
        width: usize,
        /// Length of the slice passed.
        found: usize,
    },
    /// The input holds NaN or an infinity.
    #[error("input value at index {index} is {value}: inputs must be finite")]
    NonFiniteInput {
        /// Flat index into the input slice.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// The embedded weight blob does not match the generated code.
    #[error("weight blob: {0}")]
    Blob(String),
    /// `DYNQ_KERNEL` names a kernel that does not exist.
    #[error("DYNQ_KERNEL={0:?}: unknown kernel, expected one of scalar, avx2, avx512vnni, avxvnni, neon_dot, neon_i8mm")]
    UnknownKernel(String),
    /// `DYNQ_KERNEL` names a kernel this CPU, this build or this model cannot run.
    #[error("DYNQ_KERNEL={name}: {reason}")]
    KernelUnavailable {
        /// The kernel asked for.
        name: &'static str,
        /// Why it cannot run here.
        reason: String,
    },
}
