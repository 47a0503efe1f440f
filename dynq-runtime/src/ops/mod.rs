//! Layer functions called by generated code, generic over the kernel and constant dimensions.

use crate::kernels::{Kernel, QuantizedRows, TILE_N};
use crate::quant::{
    padded_k, quantize_rows_asymmetric, quantize_rows_symmetric, Granularity, Scheme,
};
use crate::trace::{self, Part};
use crate::types::{Activation, F32Linear, Linear, QLinear};

pub mod bert;
pub mod rnn;

/// How a quantized linear layer quantizes its input activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActQuant {
    /// Per token or per tensor.
    pub granularity: Granularity,
    /// Symmetric int8 or asymmetric uint8.
    pub scheme: Scheme,
}

/// `out = act(x W^T + b)` through the integer kernel: quantizes the `rows x K` input
/// dynamically into the scratch buffers (`quant` holds `rows * padded_k(K)`), runs the
/// kernel's integer GEMM and its fused epilogue.
///
/// `K` and `N` are the layer's constant input and output widths.
///
/// ```
/// use dynq_runtime::kernels::{packed_index, packed_len, Scalar};
/// use dynq_runtime::ops::{linear_q, ActQuant};
/// use dynq_runtime::{Activation, Granularity, QLinear, Scheme};
/// let mut weight = vec![0i8; packed_len(1, 2)];
/// (weight[packed_index(0, 0, 2)], weight[packed_index(0, 1, 2)]) = (127, 127);
/// let w = QLinear { n: 1, k: 2, weight: &weight, scales: &[1.0 / 127.0], col_sums: &[254], bias: None };
/// let aq = ActQuant { granularity: Granularity::PerToken, scheme: Scheme::Symmetric };
/// let (mut q, mut s, mut z, mut out) = ([0i8; 4], [0f32; 1], [0i32; 1], [0f32; 1]);
/// linear_q::<_, 2, 1>(Scalar::new(), &[1.0, 0.5], 1, &w, Activation::None, aq, &mut q, &mut s, &mut z, &mut out);
/// assert!((out[0] - 1.5).abs() < 0.01);
/// ```
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn linear_q<Kn: Kernel, const K: usize, const N: usize>(
    kernel: Kn,
    x: &[f32],
    rows: usize,
    w: &QLinear<'_>,
    act: Activation,
    aq: ActQuant,
    quant: &mut [i8],
    scales: &mut [f32],
    zero_points: &mut [i32],
    out: &mut [f32],
) {
    debug_assert_eq!((w.k, w.n), (K, N));
    let mut scratch = QuantScratch {
        quant,
        scales,
        zero_points,
    };
    linear_dyn(
        kernel,
        K,
        N,
        x,
        rows,
        &Linear::Int8(*w),
        act,
        aq,
        &mut scratch,
        out,
    );
}

/// [`linear`] with the widths `k` and `n` (which must be `w`'s) as values: constants when
/// inlined into [`linear`], [`linear_q`] or a const-generic encoder layer, so the compiler
/// specializes the loops; `w.k()` and `w.n()` in tools that run models whose sizes are not
/// compile-time constants (`dynq report`). Same arithmetic, same results.
///
/// ```
/// use dynq_runtime::ops::{linear_dyn, ActQuant, QuantScratch};
/// use dynq_runtime::Linear;
/// use dynq_runtime::{kernels::Scalar, Activation, F32Linear, Granularity, Scheme};
/// let w = Linear::F32(F32Linear { n: 1, k: 2, weight: &[0.5, 0.25], bias: None });
/// let aq = ActQuant { granularity: Granularity::PerToken, scheme: Scheme::Symmetric };
/// let mut scratch = QuantScratch { quant: &mut [], scales: &mut [], zero_points: &mut [] };
/// let mut out = [0.0];
/// let (k, n) = (w.k(), w.n());
/// linear_dyn(Scalar::new(), k, n, &[2.0, 4.0], 1, &w, Activation::None, aq, &mut scratch, &mut out);
/// assert_eq!(out, [2.0]);
/// ```
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn linear_dyn<Kn: Kernel>(
    kernel: Kn,
    k: usize,
    n: usize,
    x: &[f32],
    rows: usize,
    w: &Linear<'_>,
    act: Activation,
    aq: ActQuant,
    scratch: &mut QuantScratch<'_>,
    out: &mut [f32],
) {
    linear_post(kernel, k, n, x, rows, w, act, aq, scratch, out, Post::None);
}

/// What [`linear_post`] does to each output row after the layer (and its activation).
#[derive(Clone, Copy)]
pub(crate) enum Post<'a> {
    /// Nothing.
    None,
    /// `row = layer_norm(row + residual row)`: a BERT sublayer's residual connection and norm.
    ResidualNorm {
        residual: &'a [f32],
        norm: &'a bert::LayerNorm<'a>,
    },
    /// `row += residual row`: a pre-norm sublayer's residual connection.
    Add { residual: &'a [f32] },
    /// Rotary position embedding of the query and key parts of fused `[q | k | v]` rows
    /// ([`bert::rotate_qk`]): the positions count from each sequence's first token.
    Rotary {
        rotary: bert::Rotary<'a>,
        seqs: bert::Ragged<'a>,
        heads: usize,
    },
    /// A gated FFN's epilogue (GeGLU): each `[input | gate]` row of width `2 i` becomes
    /// `act(input) * gate` in its first `i` values.
    Gated { act: Activation },
}

impl Post<'_> {
    /// Applies to output rows `r0..r0 + out.len() / n`.
    #[inline(always)]
    fn apply(self, r0: usize, n: usize, out: &mut [f32]) {
        match self {
            Post::None => {}
            Post::ResidualNorm { residual, norm } => {
                let _timer = trace::time(Part::ResidualNorm);
                let residual = &residual[r0 * n..r0 * n + out.len()];
                for (o, r) in out.iter_mut().zip(residual) {
                    *o += r;
                }
                bert::layer_norm_dyn(out, n, norm);
            }
            Post::Add { residual } => {
                let _timer = trace::time(Part::ResidualNorm);
                let residual = &residual[r0 * n..r0 * n + out.len()];
                for (o, r) in out.iter_mut().zip(residual) {
                    *o += r;
                }
            }
            Post::Rotary {
                rotary,
                seqs,
                heads,
            } => {
                let _timer = trace::time(Part::Rotary);
                let offsets = seqs.offsets();
                // The sequence of the block's first row, then onwards.
                let mut s = offsets.partition_point(|&o| o <= r0).saturating_sub(1);
                for (t, row) in out.chunks_exact_mut(n).enumerate() {
                    let token = r0 + t;
                    while s + 1 < offsets.len() - 1 && offsets[s + 1] <= token {
                        s += 1;
                    }
                    bert::rotate_qk(row, n / 3, heads, rotary, token - offsets[s]);
                }
            }
            Post::Gated { act } => {
                let _timer = trace::time(Part::Gate);
                let i = n / 2;
                for row in out.chunks_exact_mut(n) {
                    let (input, gate) = row.split_at_mut(i);
                    crate::math::activate(act, input);
                    for (x, g) in input.iter_mut().zip(&*gate) {
                        *x *= g;
                    }
                }
            }
        }
    }
}

/// [`linear_dyn`] followed by `post` on each output row, inside each thread's block: the
/// residual add and norm run in parallel with the GEMM instead of after it on one thread.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn linear_post<Kn: Kernel>(
    kernel: Kn,
    k: usize,
    n: usize,
    x: &[f32],
    rows: usize,
    w: &Linear<'_>,
    act: Activation,
    aq: ActQuant,
    scratch: &mut QuantScratch<'_>,
    out: &mut [f32],
    post: Post<'_>,
) {
    debug_assert_eq!((w.k(), w.n()), (k, n));
    match post {
        Post::ResidualNorm { .. } => trace::work(Part::ResidualNorm, rows * n, rows * n * 12),
        Post::Add { .. } => trace::work(Part::ResidualNorm, rows * n, rows * n * 12),
        Post::Rotary { .. } => trace::work(Part::Rotary, rows * n, rows * n * 4),
        Post::Gated { .. } => trace::work(Part::Gate, rows * n / 2, rows * n * 6),
        Post::None => {}
    }
    let w = match w {
        Linear::Int8(q) => q,
        Linear::F32(f) => {
            trace::work(Part::GemmF32, 2 * rows * k * n, k * n * 4);
            // Row blocks over the threads from two rows and 2^20 multiply-adds: every kernel's
            // f32 product computes each row on its own, so the split changes no bit.
            let min_rows = if rows * k * n >= SPLIT_CHANNELS_MACS {
                2
            } else {
                usize::MAX
            };
            let task = F32Blocks {
                kernel,
                x: &x[..rows * k],
                k,
                w: f,
                act,
                post,
            };
            let out = &mut out[..rows * n];
            crate::threads::for_each_block(kernel, rows, n, 1, min_rows, out, &mut [], 0, &task);
            return;
        }
    };
    let stride = padded_k(k);
    trace::work(Part::Gemm, rows * k * n, n * stride);
    trace::work(Part::Quantize, rows * k, rows * (k * 4 + stride));
    let (x, out) = (&x[..rows * k], &mut out[..rows * n]);
    // Row blocks on the thread pool (feature `rayon`) once there is enough work to share.
    let (align, min_rows) = (4, 32);
    let source = if aq.granularity == Granularity::PerToken
        && crate::threads::count() > 1
        && rows >= min_rows
    {
        // Per-token quantization is row by row: each block quantizes its own rows (into
        // per-thread buffers), so it runs in parallel and inside the GEMM's block.
        Rows::Raw { x, k, aq }
    } else {
        let quant = &mut scratch.quant[..rows * stride];
        let scales = &mut scratch.scales[..rows];
        let zero_points = &mut scratch.zero_points[..rows];
        let timer = trace::time(Part::Quantize);
        let zero_points = quantize_activations(x, rows, k, stride, aq, quant, scales, zero_points);
        drop(timer);
        Rows::Quantized {
            quant,
            scales,
            zero_points,
        }
    };
    let threads = crate::threads::count();
    let tiles = n.div_ceil(TILE_N);
    if let Rows::Quantized {
        quant,
        scales,
        zero_points,
    } = source
    {
        if threads > 1
            && rows < min_rows
            && rows * k * n >= SPLIT_CHANNELS_MACS
            && tiles >= 2 * threads
        {
            // Too few rows to share: the threads share the output channels instead, each
            // streaming its part of the weights. Every kernel matches the scalar reference
            // element by element, so the split changes no bit.
            let a = QuantizedRows {
                data: quant,
                stride,
                scales,
                zero_points,
            };
            split_channels(kernel, a, rows, w, act, out, threads);
            post.apply(0, n, out);
            return;
        }
    }
    let task = QgemmBlocks {
        kernel,
        rows: source,
        stride,
        w,
        act,
        post,
    };
    crate::threads::for_each_block(kernel, rows, n, align, min_rows, out, &mut [], 0, &task);
}

/// Multiply-adds from which a GEMM of few rows (fewer than a row block per thread) splits its
/// output channels over the threads: below it, a parallel region costs more than it saves.
const SPLIT_CHANNELS_MACS: usize = 1 << 20;

std::thread_local! {
    /// [`split_channels`]' buffer on the forward thread: the product tile by tile, then each
    /// thread's rows of its tiles.
    static SPLIT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out = act(a W^T)` for few rows, on `threads` threads that each take a run of whole
/// channel tiles: each block computes its tiles' `rows x width` product into its thread's
/// scratch and writes it tile by tile (`[tile][row][16]`) into a shared buffer, which this
/// thread then copies into `out`'s rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn split_channels<Kn: Kernel>(
    kernel: Kn,
    a: QuantizedRows<'_>,
    rows: usize,
    w: &QLinear<'_>,
    act: Activation,
    out: &mut [f32],
    threads: usize,
) {
    let n = w.n;
    let tiles = n.div_ceil(TILE_N);
    let by_tile = tiles * rows * TILE_N;
    // The largest block `for_each_block` may hand one thread.
    let scratch_len = rows * tiles.div_ceil(threads) * TILE_N;
    let mut buf = SPLIT.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if buf.len() < by_tile + threads * scratch_len {
        buf.resize(by_tile + threads * scratch_len, 0.0);
    }
    let (by_tile_buf, scratch) = buf.split_at_mut(by_tile);
    let task = ChannelBlocks {
        kernel,
        a,
        rows,
        w,
        act,
    };
    crate::threads::for_each_block(
        kernel,
        tiles,
        rows * TILE_N,
        1,
        1,
        by_tile_buf,
        scratch,
        scratch_len,
        &task,
    );
    let _timer = trace::time(Part::Gemm);
    for (t, tile) in by_tile_buf.chunks_exact(rows * TILE_N).enumerate() {
        let (j0, width) = (t * TILE_N, TILE_N.min(n - t * TILE_N));
        for (r, src) in tile.chunks_exact(TILE_N).enumerate() {
            out[r * n + j0..r * n + j0 + width].copy_from_slice(&src[..width]);
        }
    }
    SPLIT.with(|b| *b.borrow_mut() = buf);
}

/// The f32 product of [`linear_post`] over a block of rows, then `post` on them.
struct F32Blocks<'a, K> {
    kernel: K,
    x: &'a [f32],
    k: usize,
    w: &'a F32Linear<'a>,
    act: Activation,
    post: Post<'a>,
}

impl<K: Kernel> crate::kernels::BlockTask for F32Blocks<'_, K> {
    #[inline(always)]
    fn run(&self, r0: usize, out: &mut [f32], _scratch: &mut [f32]) {
        let Some(m) = out.len().checked_div(self.w.n) else {
            return; // no output channels: nothing to compute
        };
        let x = &self.x[r0 * self.k..(r0 + m) * self.k];
        let timer = trace::time(Part::GemmF32);
        self.kernel.gemm_f32(x, m, self.w, self.act, out);
        drop(timer);
        self.post.apply(r0, self.w.n, out);
    }
}

/// A run of channel tiles of [`split_channels`].
struct ChannelBlocks<'a, K> {
    kernel: K,
    a: QuantizedRows<'a>,
    rows: usize,
    w: &'a QLinear<'a>,
    act: Activation,
}

impl<K: Kernel> crate::kernels::BlockTask for ChannelBlocks<'_, K> {
    #[inline(always)]
    fn run(&self, t0: usize, out: &mut [f32], scratch: &mut [f32]) {
        let _timer = trace::time(Part::Gemm);
        let (rows, w) = (self.rows, self.w);
        let count = out.len() / (rows * TILE_N);
        let j0 = t0 * TILE_N;
        let width = (count * TILE_N).min(w.n - j0);
        let stride = self.a.stride;
        let part = QLinear {
            n: width,
            k: w.k,
            weight: &w.weight[j0 * stride..(j0 + count * TILE_N) * stride],
            scales: &w.scales[j0..j0 + width],
            col_sums: &w.col_sums[j0..j0 + width],
            bias: w.bias.map(|b| &b[j0..j0 + width]),
        };
        let product = &mut scratch[..rows * width];
        self.kernel.qgemm(self.a, rows, &part, self.act, product);
        for t in 0..count {
            let tw = TILE_N.min(width - t * TILE_N);
            for r in 0..rows {
                let dst = &mut out[(t * rows + r) * TILE_N..][..tw];
                dst.copy_from_slice(&product[r * width + t * TILE_N..][..tw]);
            }
        }
    }
}

std::thread_local! {
    /// Quantized rows, scales and zero points of the blocks [`QgemmBlocks`] quantizes itself.
    static BLOCK_QUANT: std::cell::RefCell<(Vec<i8>, Vec<f32>, Vec<i32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Quantizes `rows x k` activations as `aq` says into `quant` (rows at `stride`, zero-padded),
/// `scales` and, for the asymmetric scheme, `zero_points`, which it then returns.
///
/// ```
/// use dynq_runtime::ops::{quantize_activations, ActQuant};
/// use dynq_runtime::{Granularity, Scheme};
/// let aq = ActQuant { granularity: Granularity::PerToken, scheme: Scheme::Symmetric };
/// let (mut q, mut s, mut z) = ([0i8; 4], [0f32; 1], [0i32; 1]);
/// let zp = quantize_activations(&[1.0, -0.5], 1, 2, 4, aq, &mut q, &mut s, &mut z);
/// assert_eq!((q, zp), ([127, -64, 0, 0], None));
/// ```
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn quantize_activations<'z>(
    x: &[f32],
    rows: usize,
    k: usize,
    stride: usize,
    aq: ActQuant,
    quant: &mut [i8],
    scales: &mut [f32],
    zero_points: &'z mut [i32],
) -> Option<&'z [i32]> {
    match aq.scheme {
        Scheme::Symmetric => {
            quantize_rows_symmetric(x, rows, k, stride, aq.granularity, quant, scales);
            None
        }
        Scheme::Asymmetric => {
            quantize_rows_asymmetric(
                x,
                rows,
                k,
                stride,
                aq.granularity,
                quant,
                scales,
                zero_points,
            );
            Some(&*zero_points)
        }
    }
}

/// The integer GEMM of [`linear_q`] over a block of rows.
pub(crate) struct QgemmBlocks<'a, K> {
    pub(crate) kernel: K,
    pub(crate) rows: Rows<'a>,
    pub(crate) stride: usize,
    pub(crate) w: &'a QLinear<'a>,
    pub(crate) act: Activation,
    pub(crate) post: Post<'a>,
}

/// The activations of [`QgemmBlocks`]: quantized by the caller, or f32 rows each block
/// quantizes per token.
pub(crate) enum Rows<'a> {
    Quantized {
        quant: &'a [i8],
        scales: &'a [f32],
        zero_points: Option<&'a [i32]>,
    },
    Raw {
        x: &'a [f32],
        k: usize,
        aq: ActQuant,
    },
}

impl<K: Kernel> crate::kernels::BlockTask for QgemmBlocks<'_, K> {
    #[inline(always)]
    fn run(&self, r0: usize, out: &mut [f32], _scratch: &mut [f32]) {
        let m = out.len() / self.w.n;
        let stride = self.stride;
        match self.rows {
            Rows::Quantized {
                quant,
                scales,
                zero_points,
            } => {
                let a = QuantizedRows {
                    data: &quant[r0 * stride..],
                    stride,
                    scales: &scales[r0..],
                    zero_points: zero_points.map(|z| &z[r0..]),
                };
                let _timer = trace::time(Part::Gemm);
                self.kernel.qgemm(a, m, self.w, self.act, out);
            }
            Rows::Raw { x, k, aq } => {
                // Taken out of the thread-local and put back, rather than used inside `with`'s
                // closure: the closure may stay out of line, compiled for the baseline CPU.
                let mut bufs = BLOCK_QUANT.with(|b| std::mem::take(&mut *b.borrow_mut()));
                let (q, s, z) = &mut bufs;
                if q.len() < m * stride {
                    q.resize(m * stride, 0);
                }
                if s.len() < m {
                    s.resize(m, 0.0);
                    z.resize(m, 0);
                }
                let x = &x[r0 * k..(r0 + m) * k];
                let timer = trace::time(Part::Quantize);
                let zp = quantize_activations(x, m, k, stride, aq, q, s, z);
                drop(timer);
                let a = QuantizedRows {
                    data: &q[..m * stride],
                    stride,
                    scales: &s[..m],
                    zero_points: zp,
                };
                let timer = trace::time(Part::Gemm);
                self.kernel.qgemm(a, m, self.w, self.act, out);
                drop(timer);
                BLOCK_QUANT.with(|b| *b.borrow_mut() = bufs);
            }
        }
        self.post.apply(r0, self.w.n, out);
    }
}

/// `out = act(x W^T + b)` in f32.
///
/// ```
/// use dynq_runtime::{kernels::Scalar, ops::linear_f32, Activation, F32Linear};
/// let w = F32Linear { n: 1, k: 2, weight: &[0.5, 0.25], bias: Some(&[-1.0]) };
/// let mut out = [0.0];
/// linear_f32::<_, 2, 1>(Scalar::new(), &[2.0, 4.0], 1, &w, Activation::Relu, &mut out);
/// assert_eq!(out, [1.0]);
/// ```
#[inline(always)]
pub fn linear_f32<Kn: Kernel, const K: usize, const N: usize>(
    kernel: Kn,
    x: &[f32],
    rows: usize,
    w: &F32Linear<'_>,
    act: Activation,
    out: &mut [f32],
) {
    debug_assert_eq!((w.k, w.n), (K, N));
    kernel.gemm_f32(&x[..rows * K], rows, w, act, &mut out[..rows * N]);
}

/// Scratch for the activation quantization of [`linear`].
#[derive(Debug)]
pub struct QuantScratch<'a> {
    /// `rows * padded_k(k)` quantized values.
    pub quant: &'a mut [i8],
    /// One scale per row.
    pub scales: &'a mut [f32],
    /// One zero point per row.
    pub zero_points: &'a mut [i32],
}

/// [`linear_q`] or [`linear_f32`], whichever the layer is.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn linear<Kn: Kernel, const K: usize, const N: usize>(
    kernel: Kn,
    x: &[f32],
    rows: usize,
    w: &Linear<'_>,
    act: Activation,
    aq: ActQuant,
    scratch: &mut QuantScratch<'_>,
    out: &mut [f32],
) {
    debug_assert_eq!((w.k(), w.n()), (K, N));
    linear_dyn(kernel, K, N, x, rows, w, act, aq, scratch, out);
}
