//! Integer GEMM kernels behind one trait, and the detect-once kernel selection (which
//! [`crate::dispatch`] wraps in the forward's thread team).
//!
//! Each instruction set is a zero-sized marker type implementing [`Kernel`]. Layer code in
//! [`crate::ops`] is generic over the marker, so one instantiation per (ISA, shape) is compiled
//! and inlined. A marker for a SIMD instruction set can only be obtained from detection, so
//! holding one proves the CPU has the features; [`Scalar`] is always available and is the
//! reference every other kernel is tested against, bit for bit.

use std::sync::OnceLock;

use crate::types::{Activation, F32Linear, KernelId, QLinear};
use crate::Error;

/// The two ways into a kernel's target features, for a marker type whose existence proves them:
/// `entry!(Marker, "features")` defines `enter` (a whole [`Job`] inside one target-feature
/// function) and `run_block!("features")` the [`Kernel::run_block`] method (one thread-pool
/// task inside one).
macro_rules! entry {
    ($marker:ty, $features:literal) => {
        /// Runs `job` inside one target-feature function, so the generic layer code and the
        /// kernel inline into code compiled for it.
        #[inline]
        pub(super) fn enter<J: super::Job>(job: J, kernel: $marker) -> J::Output {
            #[target_feature(enable = $features)]
            fn run<J: super::Job>(job: J, kernel: $marker) -> J::Output {
                job.run(kernel)
            }
            // SAFETY: the marker exists only if `detect` found these features on this CPU.
            unsafe { run(job, kernel) }
        }
    };
}

macro_rules! run_block {
    ($features:literal) => {
        #[inline(always)]
        fn run_block<T: super::BlockTask>(
            self,
            task: &T,
            first_row: usize,
            out: &mut [f32],
            scratch: &mut [f32],
        ) {
            #[target_feature(enable = $features)]
            fn call<T: super::BlockTask>(
                task: &T,
                first_row: usize,
                out: &mut [f32],
                scratch: &mut [f32],
            ) {
                task.run(first_row, out, scratch)
            }
            // SAFETY: `self` exists only if `detect` found these features on this CPU.
            unsafe { call(task, first_row, out, scratch) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512vnni;
#[cfg(target_arch = "x86_64")]
mod avxvnni;
#[cfg(target_arch = "aarch64")]
mod neon_dot;
#[cfg(target_arch = "aarch64")]
mod neon_i8mm;
pub mod peak;
mod scalar;
#[cfg(target_arch = "x86_64")]
pub use amx::{Amx, Bf16Tiles, BF16_TILE};
#[cfg(target_arch = "x86_64")]
pub use avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub use avx512vnni::Avx512Vnni;
#[cfg(target_arch = "x86_64")]
pub use avxvnni::AvxVnni;
#[cfg(target_arch = "aarch64")]
pub use neon_dot::NeonDot;
#[cfg(target_arch = "aarch64")]
pub use neon_i8mm::NeonI8mm;
pub use scalar::Scalar;

/// Quantized activations entering an integer GEMM: `m` rows of `k` values, each row stored
/// at `data[i * stride..]` and zero-padded to `stride` (a multiple of [`crate::quant::K_BLOCK`]).
#[derive(Debug, Clone, Copy)]
pub struct QuantizedRows<'a> {
    /// Row-major values: symmetric int8, or asymmetric uint8 shifted by -128.
    pub data: &'a [i8],
    /// Distance between rows, `>= k`, a multiple of 4.
    pub stride: usize,
    /// One scale per row.
    pub scales: &'a [f32],
    /// One zero point per row (shifted by -128 like the values), or `None` for symmetric.
    pub zero_points: Option<&'a [i32]>,
}

#[cfg(target_arch = "x86_64")]
std::thread_local! {
    static UNSIGNED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the first `m` rows of `a` with every byte flipped to `a + 128` (unsigned, as
/// `vpdpbusd` wants them). Flipping once per call, rather than once per broadcast in the inner
/// loop, keeps the `vpxor` off the two vector ports that `vpdpbusd` needs. The flipped rows
/// live in a per-thread buffer that only grows (no allocation once warm).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn with_unsigned<R>(
    a: &QuantizedRows<'_>,
    m: usize,
    f: impl FnOnce(&QuantizedRows<'_>) -> R,
) -> R {
    UNSIGNED.with(|buf| {
        let mut buf = buf.borrow_mut();
        let len = m * a.stride;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        for (u, &v) in buf[..len].iter_mut().zip(&a.data[..len]) {
            *u = (v as u8) ^ 0x80;
        }
        let flipped = QuantizedRows {
            data: bytemuck::cast_slice(&buf[..len]),
            ..*a
        };
        f(&flipped)
    })
}

/// `a * b + c`, fused into one instruction and one rounding where the kernel's CPU has FMA
/// ([`Kernel::FMA`]).
#[inline(always)]
pub(crate) fn madd<Kn: Kernel>(a: f32, b: f32, c: f32) -> f32 {
    crate::math::madd_with(a, b, c, Kn::FMA)
}

/// [`crate::math::exp`] with its polynomial fused where the kernel's CPU has FMA (half the
/// instructions; results may differ from `exp` in the last bit).
#[inline(always)]
pub(crate) fn exp_k<Kn: Kernel>(x: f32) -> f32 {
    crate::math::exp_with(x, Kn::FMA)
}

/// Output channels per packed weight tile.
pub const TILE_N: usize = 16;

/// Length of a weight matrix packed in tiles of [`TILE_N`] channels by 4 k values:
/// `[n / 16][k / 4][16][4]`, both dimensions zero-padded.
///
/// ```
/// assert_eq!(dynq_runtime::kernels::packed_len(17, 5), 32 * 8);
/// ```
pub const fn packed_len(n: usize, k: usize) -> usize {
    n.div_ceil(TILE_N) * TILE_N * crate::quant::padded_k(k)
}

/// Index of weight `(j, k)` in the packed layout of a matrix with input width `k_total`.
///
/// ```
/// use dynq_runtime::kernels::packed_index;
/// assert_eq!(packed_index(0, 0, 8), 0);
/// assert_eq!(packed_index(1, 0, 8), 4);
/// assert_eq!(packed_index(0, 4, 8), 64);
/// assert_eq!(packed_index(16, 0, 8), 128);
/// ```
#[inline(always)]
pub const fn packed_index(j: usize, k: usize, k_total: usize) -> usize {
    let k4 = crate::quant::padded_k(k_total);
    (j / TILE_N) * TILE_N * k4 + (k / 4) * (TILE_N * 4) + (j % TILE_N) * 4 + k % 4
}

/// One instruction set's implementation of the integer and f32 matrix products.
///
/// `qgemm` computes, for every row `i` and output channel `j` of `w`,
/// `out[i, j] = act(acc as f32 * (row_scale[i] * w.scales[j]) + bias[j])` with
/// `acc = sum_k a[i, k] * w[j, k] - zero_point[i] * w.col_sums[j]` exact in i32 (the mul and
/// the add are separate roundings, no FMA, so every kernel matches [`Scalar`] bit for bit).
/// Weights are packed as [`packed_index`] says.
///
/// ```
/// use dynq_runtime::kernels::{packed_index, packed_len, Kernel, QuantizedRows, Scalar};
/// use dynq_runtime::{Activation, QLinear};
/// let mut weight = vec![0i8; packed_len(1, 2)];
/// (weight[packed_index(0, 0, 2)], weight[packed_index(0, 1, 2)]) = (3, -2);
/// let w = QLinear { n: 1, k: 2, weight: &weight, scales: &[0.5], col_sums: &[1], bias: Some(&[1.0]) };
/// let a = QuantizedRows { data: &[10, 4, 0, 0], stride: 4, scales: &[0.25], zero_points: None };
/// let mut out = [0.0];
/// Scalar::new().qgemm(a, 1, &w, Activation::None, &mut out);
/// assert_eq!(out, [(30.0 - 8.0) * 0.125 + 1.0]);
/// ```
pub trait Kernel: Copy + Send + Sync + 'static {
    /// Which kernel this is.
    const ID: KernelId;

    /// Whether the CPU this kernel runs on has fused multiply-add, so f32 loops outside the
    /// integer GEMM (attention) may use [`f32::mul_add`]: one instruction and one rounding
    /// instead of two. Without it `mul_add` would be a library call, so the scalar reference
    /// multiplies and adds.
    const FMA: bool = false;

    /// Whether the CPU has 32 vector registers of 16 f32 lanes (AVX-512): the f32 attention
    /// loops then keep 8 queries x 32 lanes of accumulators in registers; otherwise 4 x 16.
    const WIDE_F32: bool = false;

    /// Quantized activations (`m` rows of `w.k`) times int8 weights, dequantized into `out`
    /// (`m * w.n`, row-major) with bias and activation fused.
    fn qgemm(
        self,
        a: QuantizedRows<'_>,
        m: usize,
        w: &QLinear<'_>,
        act: Activation,
        out: &mut [f32],
    );

    /// f32 activations (`m` rows of `w.k`) times f32 weights plus bias and activation.
    fn gemm_f32(self, x: &[f32], m: usize, w: &F32Linear<'_>, act: Activation, out: &mut [f32]);

    /// The AMX-BF16 tile unit, for kernels whose CPU has one ([`Amx`] with AMX-BF16): a
    /// capability, like [`Kernel::FMA`], that ops may use for bf16 products (INT8 encoders run
    /// their attention products on it: [`crate::ops::bert::attention_bf16`]).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn bf16_tiles(self) -> Option<Bf16Tiles> {
        None
    }

    /// Runs one block of `task` compiled with this kernel's target features (a task on another
    /// thread leaves the forward's target-feature entry point, so it enters its own).
    #[inline(always)]
    fn run_block<T: BlockTask>(
        self,
        task: &T,
        first_row: usize,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        task.run(first_row, out, scratch)
    }
}

/// Panics (a bug in the caller, never user input) unless every slice is long enough.
pub(crate) fn check_qgemm(a: &QuantizedRows<'_>, m: usize, w: &QLinear<'_>, out: &[f32]) {
    let tiles = w.n.div_ceil(TILE_N);
    assert!(
        a.stride.is_multiple_of(4) && a.stride >= w.k,
        "activation stride"
    );
    assert!(
        a.data.len() >= m * a.stride && a.scales.len() >= m,
        "activation rows"
    );
    assert!(a.zero_points.is_none_or(|z| z.len() >= m), "zero points");
    assert!(
        w.weight.len() >= tiles * TILE_N * a.stride,
        "packed weights"
    );
    assert!(
        w.scales.len() >= w.n && w.col_sums.len() >= w.n,
        "channel scales"
    );
    assert!(w.bias.is_none_or(|b| b.len() >= w.n), "bias");
    assert!(out.len() >= m * w.n, "output");
}

/// Work over blocks of output rows. Implementations mark `run` `#[inline(always)]`: it then
/// compiles inside the caller's (or [`Kernel::run_block`]'s) target features. (A closure would
/// not do: its body stays a function of its own, compiled for the baseline CPU.)
pub trait BlockTask: Sync {
    /// Computes output rows `first_row..first_row + out.len() / row_len` into `out`.
    fn run(&self, first_row: usize, out: &mut [f32], scratch: &mut [f32]);
}

/// Why this kernel cannot run in this process, or `None` if it can.
fn unavailable_reason(id: KernelId) -> Option<String> {
    match id {
        KernelId::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        KernelId::Avx2 => Avx2::detect()
            .is_none()
            .then(|| "this CPU lacks AVX2 or FMA".to_string()),
        #[cfg(target_arch = "x86_64")]
        KernelId::Amx => Amx::detect().is_none().then(|| {
            "this CPU lacks AMX-TILE/AMX-INT8 or AVX-512 F/BW/VNNI, or the OS refused the \
             AMX tile state"
                .to_string()
        }),
        #[cfg(target_arch = "x86_64")]
        KernelId::Avx512Vnni => Avx512Vnni::detect()
            .is_none()
            .then(|| "this CPU lacks AVX-512 F/BW/VNNI".to_string()),
        #[cfg(target_arch = "x86_64")]
        KernelId::AvxVnni => AvxVnni::detect()
            .is_none()
            .then(|| "this CPU lacks AVX-VNNI".to_string()),
        #[cfg(target_arch = "aarch64")]
        KernelId::NeonDot => NeonDot::detect()
            .is_none()
            .then(|| "this CPU lacks the dot-product extension (dotprod)".to_string()),
        #[cfg(target_arch = "aarch64")]
        KernelId::NeonI8mm => NeonI8mm::detect()
            .is_none()
            .then(|| "this CPU lacks the int8 matrix-multiply extension (i8mm)".to_string()),
        // Another architecture's kernel, by the name `DYNQ_KERNEL` spells it.
        #[cfg(not(target_arch = "x86_64"))]
        KernelId::Avx2 | KernelId::Amx | KernelId::Avx512Vnni | KernelId::AvxVnni => Some(format!(
            "the {} kernel needs x86-64, this is {}",
            id.name(),
            std::env::consts::ARCH
        )),
        #[cfg(not(target_arch = "aarch64"))]
        KernelId::NeonDot | KernelId::NeonI8mm => Some(format!(
            "the {} kernel needs aarch64, this is {}",
            id.name(),
            std::env::consts::ARCH
        )),
    }
}

/// Work generic over the kernel: generated forward functions implement it, and [`dispatch`](crate::dispatch)
/// runs it with the kernel chosen for this CPU.
///
/// ```
/// use dynq_runtime::{dispatch, Job, Kernel, KernelId};
/// struct Name;
/// impl Job for Name {
///     type Output = &'static str;
///     fn run<K: Kernel>(self, _kernel: K) -> &'static str { K::ID.name() }
/// }
/// assert!(dispatch(Name, &KernelId::ALL).is_ok());
/// ```
pub trait Job {
    /// What the job returns.
    type Output;
    /// The kernels [`dispatch`](crate::dispatch) compiles this job for: it instantiates [`Job::run`] only for
    /// these and the scalar kernel (the fallback), so a model generated for fewer kernels
    /// (`[target] kernels`, or `kernels = "native"`) compiles faster and makes a smaller
    /// binary. Every kernel by default.
    const KERNELS: &'static [KernelId] = &KernelId::ALL;
    /// Runs the job with the given kernel.
    fn run<K: Kernel>(self, kernel: K) -> Self::Output;
}

/// A set of kernels as a type, for drivers that build a [`Job`] of their own from a generated
/// model's parameters: the generated code passes a unit struct whose [`KernelSet::KERNELS`] are
/// the kernels it was generated for (see [`Job::KERNELS`]).
pub trait KernelSet: Copy + Send + Sync {
    /// The kernels compiled in.
    const KERNELS: &'static [KernelId];
    /// The kernels this value lets [`dispatch`](crate::dispatch) choose from (those not in
    /// [`KernelSet::KERNELS`], scalar aside, are skipped): all of them by default. A test can
    /// pin one kernel at run time without compiling another copy of the job.
    fn enabled(&self) -> &[KernelId] {
        Self::KERNELS
    }
}

/// The kernels whose bits are set in `M` (bit `id as u8` of each [`KernelId`]: see [`mask`]),
/// as a [`KernelSet`]: the type generated encoders pass. Models generated for the same kernels
/// name the same type, so models of the same sizes share one copy of the forward per kernel.
///
/// ```
/// use dynq_runtime::kernels::{mask, KernelMask, KernelSet};
/// use dynq_runtime::KernelId;
/// const M: u8 = mask(&[KernelId::Avx2, KernelId::Scalar]);
/// assert_eq!(KernelMask::<M>::KERNELS, [KernelId::Avx2, KernelId::Scalar]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KernelMask<const M: u8>;

impl<const M: u8> KernelMask<M> {
    /// The kernels of `M` in [`KernelId::ALL`]'s order, and how many there are.
    const LIST: ([KernelId; KernelId::ALL.len()], usize) = {
        let mut list = [KernelId::Scalar; KernelId::ALL.len()];
        let (mut n, mut i) = (0, 0);
        while i < KernelId::ALL.len() {
            if contains(M, KernelId::ALL[i]) {
                list[n] = KernelId::ALL[i];
                n += 1;
            }
            i += 1;
        }
        (list, n)
    };
    const FULL: &'static [KernelId; KernelId::ALL.len()] = &Self::LIST.0;
}

impl<const M: u8> KernelSet for KernelMask<M> {
    const KERNELS: &'static [KernelId] = (Self::FULL as &[KernelId]).split_at(Self::LIST.1).0;
}

/// The bits of `list` for [`KernelMask`].
pub const fn mask(list: &[KernelId]) -> u8 {
    let (mut m, mut i) = (0, 0);
    while i < list.len() {
        m |= 1 << list[i] as u8;
        i += 1;
    }
    m
}

/// `id`'s bit is set in the [`mask`] `m` (a `const fn`: [`Compiled`]'s flags are constants).
const fn contains(m: u8, id: KernelId) -> bool {
    m & (1 << id as u8) != 0
}

/// Which kernels [`dispatch`](crate::dispatch) instantiates `J` for, as constants: a match arm guarded by a
/// `false` one is dead once `J` is known, and the compiler then does not instantiate (nor
/// compile) the job for that kernel.
struct Compiled<J>(std::marker::PhantomData<J>);

#[allow(dead_code)] // Each architecture reads its own flags.
impl<J: Job> Compiled<J> {
    const MASK: u8 = mask(J::KERNELS);
    const AVX2: bool = contains(Self::MASK, KernelId::Avx2);
    const AMX: bool = contains(Self::MASK, KernelId::Amx);
    const AVX512VNNI: bool = contains(Self::MASK, KernelId::Avx512Vnni);
    const AVXVNNI: bool = contains(Self::MASK, KernelId::AvxVnni);
    const NEON_DOT: bool = contains(Self::MASK, KernelId::NeonDot);
    const NEON_I8MM: bool = contains(Self::MASK, KernelId::NeonI8mm);
}

fn choose() -> Result<KernelId, Error> {
    match std::env::var("DYNQ_KERNEL") {
        Ok(name) if !name.is_empty() => {
            let id = KernelId::from_name(&name).ok_or(Error::UnknownKernel(name))?;
            match unavailable_reason(id) {
                None => Ok(id),
                Some(reason) => Err(Error::KernelUnavailable {
                    name: id.name(),
                    reason,
                }),
            }
        }
        _ => Ok(KernelId::ALL
            .into_iter()
            .find(|&k| unavailable_reason(k).is_none())
            .unwrap_or(KernelId::Scalar)),
    }
}

/// The kernel this process runs: the best one the CPU supports, or the one pinned by the
/// `DYNQ_KERNEL` environment variable. Detected once and cached.
///
/// ```
/// let id = dynq_runtime::selected_kernel().unwrap();
/// println!("running on {}", id.name());
/// ```
pub fn selected_kernel() -> Result<KernelId, Error> {
    static SELECTED: OnceLock<Result<KernelId, Error>> = OnceLock::new();
    SELECTED.get_or_init(choose).clone()
}

/// Runs `job` on the calling thread with the kernel selected for this process, restricted to
/// the kernels the model was packed for (`enabled`) and the job is compiled for
/// ([`Job::KERNELS`]; scalar always): the kernel half of [`crate::dispatch`], which adds the
/// forward's thread team.
pub(crate) fn run_selected<J: Job>(job: J, enabled: &[KernelId]) -> Result<J::Output, Error> {
    static PINNED: OnceLock<bool> = OnceLock::new();
    let selected = selected_kernel()?;
    // Read once, like the selection: no environment lookup per forward call.
    let pinned =
        *PINNED.get_or_init(|| std::env::var_os("DYNQ_KERNEL").is_some_and(|v| !v.is_empty()));
    // Scalar is always compiled: it is the fallback.
    let carried =
        |k: KernelId| enabled.contains(&k) && (k == KernelId::Scalar || J::KERNELS.contains(&k));
    let id = if carried(selected) {
        selected
    } else if pinned {
        return Err(Error::KernelUnavailable {
            name: selected.name(),
            reason: "the model was generated without this kernel (see [target] kernels)".into(),
        });
    } else {
        // The best kernel the model carries that this CPU runs.
        KernelId::ALL
            .into_iter()
            .find(|&k| carried(k) && unavailable_reason(k).is_none())
            .unwrap_or(KernelId::Scalar)
    };
    // Each kernel's forward is compiled once, out of line, in its own module (so in its own
    // codegen unit, which rustc optimizes in parallel with the others): a SIMD kernel's `enter`
    // when the CPU has it, else the one scalar instantiation, which every fallback shares. (A
    // `job.run(Scalar::new())` per arm inlined the whole scalar forward seven times into this
    // function: 8 of the 10 minutes the shared forward took to compile.)
    match id {
        KernelId::Scalar => {}
        #[cfg(target_arch = "x86_64")]
        KernelId::Avx2 if Compiled::<J>::AVX2 => {
            if let Some(k) = Avx2::detect() {
                return Ok(avx2::enter(job, k));
            }
        }
        #[cfg(target_arch = "x86_64")]
        KernelId::Amx if Compiled::<J>::AMX => {
            if let Some(k) = Amx::detect() {
                return Ok(amx::enter(job, k));
            }
        }
        #[cfg(target_arch = "x86_64")]
        KernelId::Avx512Vnni if Compiled::<J>::AVX512VNNI => {
            if let Some(k) = Avx512Vnni::detect() {
                return Ok(avx512vnni::enter(job, k));
            }
        }
        #[cfg(target_arch = "x86_64")]
        KernelId::AvxVnni if Compiled::<J>::AVXVNNI => {
            if let Some(k) = AvxVnni::detect() {
                return Ok(avxvnni::enter(job, k));
            }
        }
        #[cfg(target_arch = "aarch64")]
        KernelId::NeonDot if Compiled::<J>::NEON_DOT => {
            if let Some(k) = NeonDot::detect() {
                return Ok(neon_dot::enter(job, k));
            }
        }
        #[cfg(target_arch = "aarch64")]
        KernelId::NeonI8mm if Compiled::<J>::NEON_I8MM => {
            if let Some(k) = NeonI8mm::detect() {
                return Ok(neon_i8mm::enter(job, k));
            }
        }
        other => {
            return Err(Error::KernelUnavailable {
                name: other.name(),
                reason: "no entry point in this build".into(),
            })
        }
    }
    Ok(scalar::enter(job))
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn fused_exp_is_as_accurate() {
        if Avx2::detect().is_none() {
            eprintln!("skipped: no AVX2/FMA");
            return;
        }
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let e = f64::from(x).exp();
            worst = worst.max(((f64::from(exp_k::<Avx2>(x)) - e) / e).abs());
            x += 0.013;
        }
        assert!(worst < 4e-7, "relative error {worst:e}");
        assert_eq!(exp_k::<Avx2>(-1000.0), 0.0);
    }
}
