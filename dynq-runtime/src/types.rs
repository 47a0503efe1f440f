//! The plain types every layer shares, below everything else: the activation kind, the
//! weight views of a linear layer as the blob holds them, and the kernel ids.

/// The activation applied after a linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity.
    None,
    /// `max(x, 0)`.
    Relu,
    /// The exact GELU, `x * Phi(x)` with the error function (PyTorch's default).
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`, `approximate="tanh"`).
    GeluTanh,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
}

/// A linear layer with int8 weights, as stored in the weight blob.
///
/// `weight` is `n` output channels of `k` values packed as `[n / 16][k / 4][16][4]`
/// (see [`crate::kernels::packed_index`]); `scales[j]` dequantizes channel `j`
/// (all equal for per-tensor weights); `col_sums[j] = sum_k weight[j][k]` corrects for the
/// activation zero point in the asymmetric scheme.
///
/// ```
/// let weight = [0i8; dynq_runtime::kernels::packed_len(2, 1)];
/// let w = dynq_runtime::QLinear { n: 2, k: 1, weight: &weight, scales: &[0.1, 0.1],
///     col_sums: &[0, 0], bias: None };
/// assert_eq!(w.weight.len(), 16 * 4);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct QLinear<'a> {
    /// Output channels.
    pub n: usize,
    /// Input width.
    pub k: usize,
    /// Quantized weights in [-127, 127].
    pub weight: &'a [i8],
    /// Per-channel dequantization scales.
    pub scales: &'a [f32],
    /// Per-channel sums of the quantized weights.
    pub col_sums: &'a [i32],
    /// Optional bias, one per channel.
    pub bias: Option<&'a [f32]>,
}

/// A linear layer kept in f32 (`keep_f32`, or the f32 reference build).
///
/// ```
/// let w = dynq_runtime::F32Linear { n: 1, k: 2, weight: &[0.5, 0.25], bias: Some(&[1.0]) };
/// assert_eq!(w.weight.len(), w.n * w.k);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct F32Linear<'a> {
    /// Output channels.
    pub n: usize,
    /// Input width.
    pub k: usize,
    /// Row-major `[n][k]` weights.
    pub weight: &'a [f32],
    /// Optional bias, one per channel.
    pub bias: Option<&'a [f32]>,
}

/// A linear layer stored either way: generated code uses it where one layer function serves
/// layers of both precisions (the encoder layers of BERT, with `keep_f32`).
///
/// ```
/// use dynq_runtime::{F32Linear, Linear};
/// let l = Linear::F32(F32Linear { n: 1, k: 1, weight: &[2.0], bias: None });
/// assert_eq!((l.n(), l.k()), (1, 1));
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Linear<'a> {
    /// INT8 weights, dynamically quantized activations.
    Int8(QLinear<'a>),
    /// f32 weights.
    F32(F32Linear<'a>),
}

impl Linear<'_> {
    /// Output channels.
    pub fn n(&self) -> usize {
        match self {
            Linear::Int8(l) => l.n,
            Linear::F32(l) => l.n,
        }
    }

    /// Input width.
    pub fn k(&self) -> usize {
        match self {
            Linear::Int8(l) => l.k,
            Linear::F32(l) => l.k,
        }
    }
}

/// The kernels dynq knows, in the spelling of `DYNQ_KERNEL` and the TOML `[target]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelId {
    /// Portable Rust, the reference.
    Scalar,
    /// x86-64 AVX2 (`vpmaddubsw`).
    Avx2,
    /// x86-64 AMX-INT8 (`tdpbusd` on tiles), AVX-512 VNNI below 3 rows.
    Amx,
    /// x86-64 AVX-512 VNNI (`vpdpbusd` on zmm).
    Avx512Vnni,
    /// x86-64 AVX-VNNI (`vpdpbusd`, VEX on ymm).
    AvxVnni,
    /// AArch64 dot product (`sdot`).
    NeonDot,
    /// AArch64 int8 matrix multiply (`smmla`).
    NeonI8mm,
}

impl KernelId {
    /// Every kernel, best first within each architecture.
    pub const ALL: [KernelId; 7] = [
        KernelId::Amx,
        KernelId::Avx512Vnni,
        KernelId::AvxVnni,
        KernelId::Avx2,
        KernelId::NeonI8mm,
        KernelId::NeonDot,
        KernelId::Scalar,
    ];

    /// The name used by `DYNQ_KERNEL` and the TOML.
    ///
    /// ```
    /// assert_eq!(dynq_runtime::KernelId::AvxVnni.name(), "avxvnni");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            KernelId::Scalar => "scalar",
            KernelId::Avx2 => "avx2",
            KernelId::Amx => "amx",
            KernelId::Avx512Vnni => "avx512vnni",
            KernelId::AvxVnni => "avxvnni",
            KernelId::NeonDot => "neon_dot",
            KernelId::NeonI8mm => "neon_i8mm",
        }
    }

    /// Parses a kernel name.
    ///
    /// ```
    /// use dynq_runtime::KernelId;
    /// assert_eq!(KernelId::from_name("neon_dot"), Some(KernelId::NeonDot));
    /// assert_eq!(KernelId::from_name("sse"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<KernelId> {
        KernelId::ALL.into_iter().find(|k| k.name() == name)
    }
}
