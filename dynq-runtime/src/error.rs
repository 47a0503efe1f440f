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
    /// The output slice of a batch call does not hold every input's output, in turn (their
    /// lengths can differ: `last_hidden_state` is one row per token).
    #[error("output length: expected {expected} values (the outputs of {inputs} inputs, summed), found {found}")]
    BatchOutputLength {
        /// The inputs' output lengths, summed.
        expected: usize,
        /// Inputs in the batch.
        inputs: usize,
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
    /// A sequence model got no tokens.
    #[error("empty input: a sequence needs at least one token")]
    EmptySequence,
    /// A sequence is longer than the model was generated for.
    #[error("sequence of {len} tokens is longer than max_seq_len {max}")]
    SequenceTooLong {
        /// Tokens given.
        len: usize,
        /// The model's `max_seq_len`.
        max: usize,
    },
    /// Parallel inputs of different lengths.
    #[error("{what}: expected {expected} values (one per input id), found {found}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// Number of input ids.
        expected: usize,
        /// Its length.
        found: usize,
    },
    /// A token id, token type or mask value out of range.
    #[error("{what}[{index}] = {value}: expected a value below {limit}")]
    TokenOutOfRange {
        /// Which input.
        what: &'static str,
        /// Position.
        index: usize,
        /// The value.
        value: u32,
        /// Exclusive upper bound (vocabulary size, type vocabulary size, 2 for the mask).
        limit: usize,
    },
    /// The attention mask is all zeros.
    #[error("attention_mask is all zeros: at least one token must be attended")]
    NoTokenAttended,
    /// An initial or final recurrent state of the wrong length.
    #[error("{what} length: expected {expected} values (layers x directions x batch x hidden), found {found}")]
    StateLength {
        /// `h0`, `c0`, `h_n` or `c_n`.
        what: &'static str,
        /// The length the model's shape asks for (0: the cell has no such state).
        expected: usize,
        /// The length passed.
        found: usize,
    },
    /// The embedded weight blob does not match the generated code.
    #[error("weight blob: {0}")]
    Blob(String),
    /// A model built with its weights in a file (`[target] weights = "file"`) cannot load them:
    /// the file is missing, unreadable, or belongs to another build.
    #[error("weights file {path}: {reason}")]
    WeightsFile {
        /// The file looked at (the first candidate when none was found).
        path: std::path::PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// The generated code needs a part of dynq-runtime this build of it lacks (a feature).
    #[error("{0}")]
    BuildMismatch(String),
    /// `DYNQ_KERNEL` names a kernel that does not exist.
    #[error("DYNQ_KERNEL={0:?}: unknown kernel, expected one of scalar, avx2, amx, avx512vnni, avxvnni, neon_dot, neon_i8mm")]
    UnknownKernel(String),
    /// `DYNQ_KERNEL` names a kernel this CPU, this build or this model cannot run.
    #[error("DYNQ_KERNEL={name}: {reason}")]
    KernelUnavailable {
        /// The kernel asked for.
        name: &'static str,
        /// Why it cannot run here.
        reason: String,
    },
    /// A thread count that cannot be used (`DYNQ_THREADS`, [`crate::set_threads`]).
    #[error("{0}")]
    Threads(String),
    /// A tokenizer that cannot be loaded or a text it cannot tokenize.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A text longer than the model's sequence limit, with [`crate::text::Truncate::Refuse`].
    #[error("text of {chars} characters is longer than the model's {max} tokens; pass Truncate::AtMax to cut it there")]
    TextTooLong {
        /// The model's `max_seq_len`.
        max: usize,
        /// Characters in the text.
        chars: usize,
    },
    /// Token ids that end in padding, without an attention mask to say so.
    #[error("input_ids ends with {count} padding id(s) ({pad_id}) and no attention_mask was given: padding would be read as text; pass the tokenizer's attention_mask (BertInput {{ attention_mask: Some(..), .. }} with `forward`, or `embed_masked`/`classify_masked`), strip the padding, or use the text API (`embed_text`)")]
    TrailingPadding {
        /// Trailing padding ids.
        count: usize,
        /// The model's padding id.
        pad_id: u32,
    },
    /// One input of a batch call failed.
    #[error("input {index}: {error}")]
    Item {
        /// Its index in the batch.
        index: usize,
        /// What went wrong.
        error: Box<Error>,
    },
}

impl Error {
    /// Input `index` of a batch failed with `error` ([`Error::Item`]).
    ///
    /// ```
    /// use dynq_runtime::Error;
    /// let e = Error::item(2, Error::EmptySequence);
    /// assert!(matches!(e, Error::Item { index: 2, .. }));
    /// ```
    pub fn item(index: usize, error: Error) -> Self {
        Error::Item {
            index,
            error: Box::new(error),
        }
    }

    /// `Ok` when a batch call's output slice holds `expected` values (its `inputs`' outputs,
    /// summed), else [`Error::BatchOutputLength`].
    pub(crate) fn check_batch_output(
        expected: usize,
        inputs: usize,
        found: usize,
    ) -> Result<(), Self> {
        if found == expected {
            Ok(())
        } else {
            Err(Error::BatchOutputLength {
                expected,
                inputs,
                found,
            })
        }
    }

    /// An [`Error::Item`] of a chunk that starts at input `first` of a larger batch, with the
    /// index counted in the larger batch; other errors unchanged.
    ///
    /// ```
    /// use dynq_runtime::Error;
    /// let e = Error::Item { index: 2, error: Box::new(Error::EmptySequence) };
    /// assert!(matches!(e.offset_item(10), Error::Item { index: 12, .. }));
    /// ```
    pub fn offset_item(self, first: usize) -> Self {
        match self {
            Error::Item { index, error } => Error::Item {
                index: index + first,
                error,
            },
            e => e,
        }
    }
}
