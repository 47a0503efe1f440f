//! The per-op accounting hooks of a forward, below every layer that does work: the forward
//! marks each op as a [`region`], and the work inside adds its thread time ([`time`]) and its
//! operations and bytes ([`work`]) to one of the op's [`Part`]s. Off unless
//! [`crate::profile`] is recording (then every hook is one relaxed atomic load); the
//! profile reads the counters and turns them into its table.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::types::KernelId;

/// What a forward is doing, as the profile's rows name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Op {
    /// Embedding tables, their norm, the mask and position biases.
    Embeddings,
    /// ELECTRA's embedding projection.
    Projection,
    /// The fused Q, K, V projection of each layer.
    Qkv,
    /// Each layer's self-attention (global layers).
    Attention,
    /// The self-attention of sliding-window (local) layers.
    LocalAttention,
    /// The attention output projection, residual and norm.
    AttnOut,
    /// The FFN up-projection and its activation.
    FfnUp,
    /// The FFN down-projection, residual and norm.
    FfnDown,
    /// The final norm (pre-norm encoders), pooling and normalization of the output.
    Pooling,
    /// The classification head's dense layer.
    HeadDense,
    /// The classification head's output layer.
    HeadOut,
}

impl Op {
    pub(crate) const ALL: [Op; 11] = [
        Op::Embeddings,
        Op::Projection,
        Op::Qkv,
        Op::Attention,
        Op::LocalAttention,
        Op::AttnOut,
        Op::FfnUp,
        Op::FfnDown,
        Op::Pooling,
        Op::HeadDense,
        Op::HeadOut,
    ];

    /// The row label.
    pub fn name(self) -> &'static str {
        match self {
            Op::Embeddings => "embeddings",
            Op::Projection => "projection",
            Op::Qkv => "QKV",
            Op::Attention => "attention",
            Op::LocalAttention => "local attention",
            Op::AttnOut => "attention out",
            Op::FfnUp => "FFN up",
            Op::FfnDown => "FFN down",
            Op::Pooling => "pooling",
            Op::HeadDense => "head dense",
            Op::HeadOut => "head out",
        }
    }
}

/// A part of an op: what its time is spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Part {
    /// Embedding rows gathered and summed, their norm, the mask and position biases.
    Lookup,
    /// Dynamic quantization of the activations (scale and zero point from the live rows).
    Quantize,
    /// The integer matrix product with its dequantizing epilogue.
    Gemm,
    /// The f32 matrix product of an f32 layer.
    GemmF32,
    /// The activation after the product (GELU, tanh, ...).
    Activation,
    /// Residual add and layer norm after the product.
    ResidualNorm,
    /// Keys transposed per head (f32 attention), or heads packed to bf16 (tile attention).
    KeyTranspose,
    /// `Q K^T` plus the mask (and relative) bias.
    Scores,
    /// Softmax of the scores.
    Softmax,
    /// The probabilities times the values.
    ValueSum,
    /// Scores, softmax and `P V` together on AMX bf16 tiles (one fused loop).
    Tiles,
    /// Mean or first-token pooling, L2 normalization.
    Pool,
    /// Rotary position embedding of queries and keys (in the QKV product's epilogue).
    Rotary,
    /// A gated FFN's `act(input) * gate`, the activation included (in the up-projection's
    /// epilogue), and the compaction of its rows.
    Gate,
}

impl Part {
    pub(crate) const ALL: [Part; 14] = [
        Part::Lookup,
        Part::Quantize,
        Part::Gemm,
        Part::GemmF32,
        Part::Activation,
        Part::ResidualNorm,
        Part::KeyTranspose,
        Part::Scores,
        Part::Softmax,
        Part::ValueSum,
        Part::Tiles,
        Part::Pool,
        Part::Rotary,
        Part::Gate,
    ];

    /// The row label.
    pub fn name(self) -> &'static str {
        match self {
            Part::Lookup => "lookup + norm",
            Part::Quantize => "quantize",
            Part::Gemm => "GEMM",
            Part::GemmF32 => "GEMM f32",
            Part::Activation => "activation",
            Part::ResidualNorm => "residual + norm",
            Part::KeyTranspose => "key transpose",
            Part::Scores => "scores Q K^T",
            Part::Softmax => "softmax",
            Part::ValueSum => "P V",
            Part::Tiles => "bf16 tiles",
            Part::Pool => "pool",
            Part::Rotary => "rotary",
            Part::Gate => "gate",
        }
    }
}

const OPS: usize = Op::ALL.len();
const PARTS: usize = Part::ALL.len();

/// Whether hooks count (only while [`record`] runs).
pub(crate) static ON: AtomicBool = AtomicBool::new(false);
/// The op the forward thread is in; blocks on other threads add to it.
static CURRENT: AtomicUsize = AtomicUsize::new(0);
/// The kernel of the last recorded forward (an index into [`KernelId::ALL`]).
pub(crate) static KERNEL: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Held by a recording.
pub(crate) static RECORDING: Mutex<()> = Mutex::new(());

/// Counters of one recording: thread nanoseconds per op and part, wall nanoseconds per op,
/// and the work done (operations and bytes) per op and part.
pub(crate) struct Counters {
    pub(crate) busy: [[AtomicU64; PARTS]; OPS],
    pub(crate) wall: [AtomicU64; OPS],
    pub(crate) regions: [AtomicU64; OPS],
    pub(crate) ops: [[AtomicU64; PARTS]; OPS],
    pub(crate) bytes: [[AtomicU64; PARTS]; OPS],
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ROW: [AtomicU64; PARTS] = [ZERO; PARTS];

pub(crate) static COUNTERS: Counters = Counters {
    busy: [ROW; OPS],
    wall: [ZERO; OPS],
    regions: [ZERO; OPS],
    ops: [ROW; OPS],
    bytes: [ROW; OPS],
};

impl Counters {
    /// Zeroes every counter (a recording starts).
    pub(crate) fn reset(&self) {
        let all = self
            .busy
            .iter()
            .chain(&self.ops)
            .chain(&self.bytes)
            .flatten();
        for c in all.chain(&self.wall).chain(&self.regions) {
            c.store(0, Relaxed);
        }
    }
}

#[inline(always)]
fn on() -> bool {
    ON.load(Relaxed)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The forward thread's mark of an op: from here to its drop, work anywhere in the forward
/// counts toward `op`.
pub(crate) struct Region(Option<(Op, Instant)>);

/// Notes the kernel a recorded forward runs (nothing unless recording).
#[inline(always)]
pub(crate) fn kernel(id: KernelId) {
    if on() {
        let i = KernelId::ALL
            .iter()
            .position(|&k| k == id)
            .unwrap_or(usize::MAX);
        KERNEL.store(i, Relaxed);
    }
}

/// Starts a region (nothing unless recording).
#[inline(always)]
pub(crate) fn region(op: Op) -> Region {
    if !on() {
        return Region(None);
    }
    CURRENT.store(op as usize, Relaxed);
    Region(Some((op, Instant::now())))
}

impl Drop for Region {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some((op, start)) = self.0 {
            COUNTERS.wall[op as usize].fetch_add(nanos(start.elapsed()), Relaxed);
            COUNTERS.regions[op as usize].fetch_add(1, Relaxed);
        }
    }
}

/// A timer of a part of the current op, on whichever thread runs it.
pub(crate) struct Timer(Option<(usize, Part, Instant)>);

/// Starts timing `part` of the current op (nothing unless recording).
#[inline(always)]
pub(crate) fn time(part: Part) -> Timer {
    if !on() {
        return Timer(None);
    }
    Timer(Some((CURRENT.load(Relaxed), part, Instant::now())))
}

impl Drop for Timer {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some((op, part, start)) = self.0 {
            COUNTERS.busy[op][part as usize].fetch_add(nanos(start.elapsed()), Relaxed);
        }
    }
}

/// Adds work to `part` of the current op: `ops` operations (multiply-adds for a GEMM,
/// floating-point operations for attention, elements otherwise) and the `bytes` it must move
/// at least (nothing unless recording).
#[inline(always)]
pub(crate) fn work(part: Part, ops: usize, bytes: usize) {
    if on() {
        let op = CURRENT.load(Relaxed);
        COUNTERS.ops[op][part as usize].fetch_add(ops as u64, Relaxed);
        COUNTERS.bytes[op][part as usize].fetch_add(bytes as u64, Relaxed);
    }
}
