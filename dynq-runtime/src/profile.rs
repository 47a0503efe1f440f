//! Per-op time accounting of a forward: where the time goes, and how far each op is from what
//! this machine allows.
//!
//! [`encoder`] runs a generated encoder on a sequence of a given length many times with the
//! accounting on, and returns a [`Profile`]: one row per op and part (embedding lookup, each
//! linear layer's activation quantization, GEMM, activation and residual norm, attention's
//! key transpose, scores, softmax and `P V`, pooling, the head, thread waits), each with its
//! time per forward, its share, the rate it reached and its *limit*: the least time the op
//! could take on this machine, from the peak of the instruction its kernel uses and the
//! memory bandwidth, both measured in the same process ([`Limits`]). The sum of the limits is
//! the forward's limit, printed beside the measured total.
//!
//! How it counts: the forward marks each op as a *region* on its own thread, and every piece
//! of work inside (on any of the forward's threads: GEMM row blocks, attention query blocks)
//! adds its own thread time to the region's *part*. A part's time per forward is its thread
//! time divided by the thread count; what is left of `threads x region wall time` is the
//! region's thread waits. So the rows add up to the forward's wall time, with `threads = 1`
//! and with more.
//!
//! The accounting is off unless a profile is being recorded: then every hook costs one relaxed
//! atomic load. While recording, every forward of the process is counted, so record one
//! model at a time (recordings take a lock and wait for each other). The timers themselves
//! cost a little (two clock reads per block and part): the profile prints the plain forward's
//! time, measured without them, beside its own total.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::kernels::peak;
pub use crate::trace::{Op, Part};
use crate::trace::{COUNTERS, KERNEL, ON, RECORDING};
use crate::{BertInput, KernelId};

/// What bounds a part from below on this machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Integer multiply-adds at the peak of the kernel's instruction (or weights streamed from
    /// memory, whichever is slower).
    Int8,
    /// f32 operations at the FMA peak.
    F32,
    /// Bytes at the bandwidth of the cache level the data fits in.
    Cache,
    /// Bytes at main-memory bandwidth (embedding tables).
    Memory,
    /// No measured limit (AMX bf16 tiles: their peak is not measured).
    None,
}

fn bound(part: Part) -> Bound {
    match part {
        Part::Gemm => Bound::Int8,
        Part::Scores | Part::ValueSum | Part::GemmF32 => Bound::F32,
        Part::Lookup => Bound::Memory,
        Part::Tiles => Bound::None,
        _ => Bound::Cache,
    }
}

/// The machine's measured limits, per thread (the profile multiplies compute and cache
/// limits by the thread count).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The kernel the forward ran.
    pub kernel: KernelId,
    /// Int8 multiply-adds per second per core at the peak of that kernel's instruction, from a
    /// register-only loop (`None`: no such loop for this kernel, e.g. scalar or NEON).
    pub int8_macs: Option<f64>,
    /// f32 operations per second per core at the FMA peak (2 per fused multiply-add).
    pub f32_flops: f64,
    /// Read bandwidth of a 256 KiB buffer (the cache a layer's activations live in), bytes/s
    /// per core.
    pub cache_bytes: f64,
    /// Read bandwidth of a 256 MiB buffer (beyond the caches), bytes/s with every thread.
    pub memory_bytes: f64,
}

impl Limits {
    /// Measures the limits for `kernel` on `threads` threads (about two seconds).
    pub fn measure(kernel: KernelId, threads: usize) -> Limits {
        let budget = Duration::from_millis(400);
        Limits {
            kernel,
            int8_macs: peak::int8_gops(kernel, budget).map(|g| g * 1e9 / 2.0),
            f32_flops: peak::f32_fma_gflops(budget) * 1e9,
            cache_bytes: peak::read_gbps(256 << 10, 1, budget) * 1e9,
            memory_bytes: peak::read_gbps(256 << 20, threads, budget) * 1e9,
        }
    }

    /// The least seconds `ops` operations moving `bytes` bytes can take on `threads` threads,
    /// for a part bounded by `bound` (`None` without a measured limit).
    pub fn seconds(&self, bound: Bound, ops: f64, bytes: f64, threads: usize) -> Option<f64> {
        let t = threads as f64;
        match bound {
            Bound::Int8 => {
                let compute = ops / (self.int8_macs? * t);
                Some(compute.max(bytes / self.memory_bytes))
            }
            Bound::F32 => Some((ops / (self.f32_flops * t)).max(bytes / self.memory_bytes)),
            Bound::Cache => Some(bytes / (self.cache_bytes * t)),
            Bound::Memory => Some(bytes / self.memory_bytes),
            Bound::None => None,
        }
    }
}

/// One row of a [`Profile`].
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The op (`None`: the thread-waits row).
    pub op: Option<Op>,
    /// The part (`None` on the thread-waits row).
    pub part: Option<Part>,
    /// Times the op ran per forward (layers).
    pub calls: usize,
    /// Seconds per forward (thread time / threads).
    pub seconds: f64,
    /// Operations per forward (multiply-adds, flops or elements, by part).
    pub ops: f64,
    /// Bytes moved per forward, at least.
    pub bytes: f64,
    /// What limits it.
    pub bound: Bound,
    /// Its limit in seconds per forward (`None`: not measured).
    pub limit: Option<f64>,
}

/// A forward's time, op by op: see the [module documentation](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The model's name.
    pub model: String,
    /// Tokens of the profiled sequence.
    pub seq_len: usize,
    /// Threads per forward.
    pub threads: usize,
    /// Forwards averaged.
    pub runs: usize,
    /// The limits measured.
    pub limits: Limits,
    /// The rows, in forward order, thread waits last.
    pub rows: Vec<Row>,
    /// Wall seconds per forward with the accounting on.
    pub total: f64,
    /// Wall seconds per forward of the same forward without it.
    pub plain: f64,
}

impl Profile {
    /// Sum of the rows' limits (rows without one count their measured time).
    pub fn limit(&self) -> f64 {
        self.rows
            .iter()
            .map(|r| {
                r.limit
                    .unwrap_or(if r.op.is_some() { r.seconds } else { 0.0 })
            })
            .sum()
    }
}

/// Runs `forward` `runs` times with the accounting on and returns the counters per forward;
/// `plain` is the wall time per forward measured without it. Recordings wait for each other.
fn record(runs: usize, threads: usize, mut forward: impl FnMut()) -> (Vec<Row>, f64) {
    let _lock = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
    COUNTERS.reset();
    ON.store(true, Relaxed);
    let start = Instant::now();
    for _ in 0..runs {
        forward();
    }
    let total = start.elapsed().as_secs_f64() / runs as f64;
    ON.store(false, Relaxed);
    let per = |c: &AtomicU64| c.load(Relaxed) as f64 / runs as f64;
    let t = threads as f64;
    let mut rows = Vec::new();
    let mut waits = 0.0;
    for op in Op::ALL {
        let o = op as usize;
        let wall = per(&COUNTERS.wall[o]) * 1e-9;
        let calls = (per(&COUNTERS.regions[o]).round()) as usize;
        if calls == 0 {
            continue;
        }
        // The activation runs inside the GEMM's timer: its time comes out of the GEMM's.
        let busy = |p: Part| per(&COUNTERS.busy[o][p as usize]) * 1e-9;
        let mut busy_sum = 0.0;
        let mut activation = busy(Part::Activation);
        for part in Part::ALL {
            let mut b = busy(part);
            if part == Part::Gemm || part == Part::GemmF32 {
                let taken = activation.min(b);
                b -= taken;
                activation -= taken;
            }
            let (ops, bytes) = (
                per(&COUNTERS.ops[o][part as usize]),
                per(&COUNTERS.bytes[o][part as usize]),
            );
            if b == 0.0 && ops == 0.0 {
                continue;
            }
            busy_sum += b;
            rows.push(Row {
                op: Some(op),
                part: Some(part),
                calls,
                seconds: b / t,
                ops,
                bytes,
                bound: bound(part),
                limit: None,
            });
        }
        waits += (wall - busy_sum / t).max(0.0);
    }
    // Time on the forward thread outside every region (checks, buffer carving) counts as
    // waiting too: nothing of the model runs then.
    let inside: f64 = rows.iter().map(|r| r.seconds).sum::<f64>() + waits;
    waits += (total - inside).max(0.0);
    rows.push(Row {
        op: None,
        part: None,
        calls: 0,
        seconds: waits,
        ops: 0.0,
        bytes: 0.0,
        bound: Bound::None,
        limit: Some(0.0),
    });
    (rows, total)
}

/// Profiles `model` on one sequence of `seq_len` tokens on the current thread count:
/// measures the machine's [`Limits`], runs the forward `runs` times without and with the
/// accounting, and returns the averages. With a tokenizer the sequence is English text
/// (truncated to `seq_len`), else token ids 1 and 2 in turn with a full attention mask.
pub fn encoder<M: crate::EncoderModel>(
    model: &M,
    seq_len: usize,
    runs: usize,
) -> Result<Profile, crate::Error> {
    if seq_len == 0 {
        return Err(crate::Error::EmptySequence);
    }
    if seq_len > M::MAX_SEQ_LEN {
        return Err(crate::Error::SequenceTooLong {
            len: seq_len,
            max: M::MAX_SEQ_LEN,
        });
    }
    let ids = sample_ids::<M>(seq_len)?;
    let mask = vec![1u32; seq_len];
    let input = BertInput {
        attention_mask: Some(&mask),
        ..BertInput::new(&ids)
    };
    let mut out = vec![0.0f32; M::output_len(seq_len)];
    let runs = runs.max(1);
    // Warm-up (workspace, pages, the pool), then the plain time. The thread count is read
    // after the first forward: that call makes dynq's pool (with stacks large enough for an
    // unoptimized build's frames), which reading the count first would preempt with rayon's
    // default pool.
    for _ in 0..3 {
        model.forward(&input, &mut out)?;
    }
    let threads = crate::threads::count();
    let start = Instant::now();
    for _ in 0..runs {
        model.forward(&input, &mut out)?;
    }
    let plain = start.elapsed().as_secs_f64() / runs as f64;
    let mut failed = None;
    let (mut rows, total) = record(runs, threads, || {
        if let Err(e) = model.forward(&input, &mut out) {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let kernel = KernelId::ALL
        .get(KERNEL.load(Relaxed))
        .copied()
        .unwrap_or(KernelId::Scalar);
    let limits = Limits::measure(kernel, threads);
    for r in rows.iter_mut().filter(|r| r.op.is_some()) {
        r.limit = limits.seconds(r.bound, r.ops, r.bytes, threads);
    }
    Ok(Profile {
        model: M::NAME.to_string(),
        seq_len,
        threads,
        runs,
        limits,
        rows,
        total,
        plain,
    })
}

/// `seq_len` token ids for [`encoder`]: a sentence through `M`'s tokenizer where it has one.
#[cfg_attr(not(feature = "text"), allow(clippy::extra_unused_type_parameters))]
fn sample_ids<M: crate::EncoderModel>(seq_len: usize) -> Result<Vec<u32>, crate::Error> {
    #[cfg(feature = "text")]
    if let Some(json) = M::TOKENIZER_JSON {
        let t = crate::text::Tokenizer::new(json, seq_len)?;
        let sentence = "Rust engineers embed whole corpora with small, fast models that \
                        run inside their own binaries, one sentence or one passage at a time. ";
        let text = sentence.repeat(seq_len / 16 + 1);
        let enc = t.encode(&text, crate::text::Truncate::At(seq_len))?;
        if enc.ids.len() == seq_len {
            return Ok(enc.ids);
        }
    }
    Ok((0..seq_len).map(|i| 1 + (i % 2) as u32).collect())
}

fn rate(r: &Row) -> String {
    if r.seconds <= 0.0 {
        return String::new();
    }
    match r.bound {
        Bound::Int8 => format!("{:.0} GMAC/s", r.ops / r.seconds / 1e9),
        Bound::F32 => format!("{:.1} GFLOP/s", r.ops / r.seconds / 1e9),
        Bound::Cache | Bound::Memory => format!("{:.1} GB/s", r.bytes / r.seconds / 1e9),
        Bound::None => String::new(),
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.limits;
        writeln!(
            f,
            "profile: {}, {} tokens, {} thread{}, kernel {}, {} forwards",
            self.model,
            self.seq_len,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            l.kernel.name(),
            self.runs
        )?;
        let int8 = l.int8_macs.map_or("not measured".to_string(), |m| {
            format!("{:.0} GMAC/s", m / 1e9)
        });
        writeln!(
            f,
            "limits per core: int8 {int8} ({}), f32 {:.0} GFLOP/s, cache {:.0} GB/s; memory, all threads: {:.1} GB/s",
            peak::int8_instruction(l.kernel),
            l.f32_flops / 1e9,
            l.cache_bytes / 1e9,
            l.memory_bytes / 1e9
        )?;
        writeln!(
            f,
            "{:<14} {:<16} {:>5} {:>9} {:>6} {:>15} {:>9} {:>8}",
            "op", "part", "calls", "ms", "share", "rate", "limit ms", "x limit"
        )?;
        for r in &self.rows {
            let (op, part) = match (r.op, r.part) {
                (Some(op), Some(part)) => (op.name(), part.name()),
                _ => ("thread waits", "(idle threads)"),
            };
            let ratio = match r.limit {
                Some(lim) if lim > 0.0 => format!("{:.1}", r.seconds / lim),
                _ => "-".to_string(),
            };
            let limit = match r.limit {
                Some(lim) if r.op.is_some() => format!("{:.3}", lim * 1e3),
                _ => "-".to_string(),
            };
            writeln!(
                f,
                "{:<14} {:<16} {:>5} {:>9.3} {:>5.1}% {:>15} {:>9} {:>8}",
                op,
                part,
                if r.calls > 0 {
                    r.calls.to_string()
                } else {
                    String::new()
                },
                r.seconds * 1e3,
                100.0 * r.seconds / self.total,
                rate(r),
                limit,
                ratio
            )?;
        }
        let limit = self.limit();
        writeln!(
            f,
            "total: {:.3} ms per forward profiled ({:.3} ms without the accounting); \
             limit {:.3} ms; {:.1} x the limit",
            self.total * 1e3,
            self.plain * 1e3,
            limit * 1e3,
            self.total / limit
        )
    }
}
