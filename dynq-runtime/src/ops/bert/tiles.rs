//! Self-attention with its two products (`Q K^T` and `P V`) in bf16 on the AMX tiles, for INT8
//! models on CPUs that have them (x86-64 only).
//!
//! **Why bf16 is enough.** The products' inputs are rounded to bf16 (8 significant bits, a
//! relative error of at most 2^-9 per value) and summed in f32. An INT8 model has already
//! rounded the activations these values come from to 8 bits per token (an error of up to
//! 1/254 of each row's largest value, usually larger than bf16's), so the attention adds
//! little: on the MiniLM test sentences the mean cosine of the INT8 model to PyTorch FP32 went
//! from 0.99854 to 0.99852 and the worst from 0.99293 to 0.99293 (tests/minilm.rs, with the
//! tiles from 16 tokens). f32 models keep the f32 [`attention`].
//!
//! **Layout.** Per head, the keys are packed once per call as B tiles of 16 keys
//! (`[key / 16][dim / 32][dim % 32 / 2][key % 16][dim % 2]`) and the values as B tiles of 32
//! keys by 16 dimensions (`[dim / 16][key / 32][key % 32 / 2][dim % 16][key % 2]`), zero-padded,
//! in the `spare` buffer (the FFN activations, unused during attention). Each block of 16 query
//! rows copies its queries (scaled by `1 / sqrt(d)`) into an A tile, multiplies them with
//! every key tile into an f32 score block (16 x keys rounded up to 32), applies the mask and the
//! softmax in f32 (the exponentials are rounded to bf16 and summed as rounded, so the weights
//! that multiply the values sum to exactly 1 after the final scaling), and multiplies the
//! weights (A tiles straight from the row-major bf16 block) with the value tiles. Each output
//! row depends only on its query, whatever the blocks and threads.

use super::{attention, Dims, ScoreBias};
use crate::kernels::Kernel;
#[cfg(target_arch = "x86_64")]
use imp::{Geometry, PackHeads, TileBlocks};

/// Fewer tokens than this take the f32 [`attention`]: measured on a Sapphire Rapids core
/// (MiniLM, one thread), the tiles are 5 % slower at 32 tokens (packing and short tile
/// products cost more than they save), even at 64, and faster from there on (6 % at 96,
/// 21 % at 384 for the whole forward).
pub const MIN_TILE_TOKENS: usize = 64;

/// The `spare` values [`attention_bf16`] needs to run on the tiles for `len` tokens.
///
/// ```
/// // MiniLM: 12 heads of 32, 128 tokens: keys and values of every head in bf16.
/// assert_eq!(dynq_runtime::ops::bert::tile_spare_len(384, 12, 128), 12 * 128 * 64 / 2);
/// ```
pub const fn tile_spare_len(hidden: usize, heads: usize, len: usize) -> usize {
    let d = hidden / heads;
    let l32 = len.next_multiple_of(32);
    heads * (l32 * d.next_multiple_of(32) + l32 * d.next_multiple_of(16)) / 2
}

/// Self-attention for INT8 models: [`attention`]'s arguments and result, with the products in
/// bf16 on the AMX tiles when the kernel has them ([`Kernel::bf16_tiles`]), the sequence
/// has at least [`MIN_TILE_TOKENS`] tokens and `spare` holds [`tile_spare_len`] values (its
/// contents are overwritten); f32 [`attention`] otherwise. The module documentation above
/// gives the accuracy argument.
///
/// ```
/// use dynq_runtime::ops::bert::{attention_bf16, scores_len, tile_spare_len, EncoderDims, ScoreBias};
/// use dynq_runtime::kernels::{Kernel, Scalar};
/// // 2 tokens, one head of width 2: q = k = v rows.
/// let dims = EncoderDims { hidden: 2, heads: 1, intermediate: 8 };
/// let qkv = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0];
/// let (mut scores, mut kt, mut ctx) = (vec![0.0; scores_len(2, 1)], vec![0.0; 4], vec![0.0; 4]);
/// let mut spare = vec![0.0; tile_spare_len(2, 1, 2)];
/// let bias = ScoreBias::mask(&[0.0, 0.0]);
/// attention_bf16(Scalar::new(), dims, &qkv, 2, bias, &mut scores, &mut kt, &mut spare, &mut ctx);
/// assert!(ctx[0] > ctx[1] && ctx[3] > ctx[2]);
/// ```
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn attention_bf16<Kn: Kernel, D: Dims>(
    kernel: Kn,
    dims: D,
    qkv: &[f32],
    len: usize,
    bias: ScoreBias<'_>,
    scores: &mut [f32],
    kt: &mut [f32],
    spare: &mut [f32],
    ctx: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let (hidden, heads) = (dims.hidden(), dims.heads());
        let need = tile_spare_len(hidden, heads, len);
        // Sliding windows take the f32 path, which computes only the window's keys.
        if len >= MIN_TILE_TOKENS
            && bias.window.is_none()
            && spare.len() >= need
            && hidden.is_multiple_of(heads)
            && kernel.bf16_tiles().is_some()
        {
            let g = Geometry::new(hidden, heads, len);
            use crate::trace::{work, Part};
            work(Part::KeyTranspose, 3 * len * hidden, len * hidden * 6);
            work(Part::Tiles, 4 * len * len * hidden, 0);
            let packed = &mut spare[..need];
            let pack = PackHeads { g, qkv };
            crate::threads::for_each_block(
                kernel,
                heads,
                g.head_len(),
                1,
                1,
                packed,
                &mut [],
                0,
                &pack,
            );
            let task = TileBlocks {
                kernel,
                g,
                heads,
                qkv,
                packed: &*packed,
                bias,
            };
            crate::threads::for_each_block(
                kernel,
                len,
                hidden,
                16,
                32,
                &mut ctx[..len * hidden],
                &mut [],
                0,
                &task,
            );
            return;
        }
    }
    let _ = spare;
    attention(kernel, dims, qkv, len, bias, scores, kt, ctx);
}

/// The tile path (x86-64 only).
#[cfg(target_arch = "x86_64")]
mod imp {
    use std::cell::RefCell;

    use super::super::{exp_k, ScoreBias};
    use crate::kernels::{BlockTask, Kernel, BF16_TILE};
    use crate::quant::{max_sel, reduce};
    use crate::workspace::grow;

    /// `x` rounded to the nearest bf16 (ties to even), as its 16 bits. Integer operations only,
    /// so loops of it vectorize; NaN never reaches it (scores and weights are finite).
    #[inline(always)]
    pub(super) fn bf16(x: f32) -> u16 {
        let b = x.to_bits();
        (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
    }

    /// One softmax row: `row += bias` (the mask), then `weights = bf16(exp(row - max))`; returns
    /// `1 / sum(weights)` (the rounded weights). 16 lanes throughout, reduced as a tree, so the
    /// loops vectorize and the reductions do not wait on one long chain.
    #[inline(always)]
    pub(super) fn softmax_row<Kn: Kernel>(
        row: &mut [f32],
        bias: &[f32],
        weights: &mut [u16],
    ) -> f32 {
        const L: usize = 16;
        for (x, &b) in row.iter_mut().zip(bias) {
            *x += b;
        }
        // A plain comparison (no NaN rules), so the reduction vectorizes.
        let mut m = [f32::NEG_INFINITY; L];
        let mut x16 = row.chunks_exact(L);
        for x in &mut x16 {
            let x: &[f32; L] = x.try_into().expect("16 lanes");
            for l in 0..L {
                m[l] = if x[l] > m[l] { x[l] } else { m[l] };
            }
        }
        // The remainder in a scalar of its own: lane-indexed updates would split `m` into
        // scalars and unvectorize the loop above.
        let mut tail = f32::NEG_INFINITY;
        for &x in x16.remainder() {
            tail = if x > tail { x } else { tail };
        }
        let max = max_sel(reduce(m, max_sel), tail);
        let mut lanes = [0.0f32; L];
        let mut w16 = weights.chunks_exact_mut(L);
        let mut x16 = row.chunks_exact(L);
        for (x, w) in (&mut x16).zip(&mut w16) {
            let x: &[f32; L] = x.try_into().expect("16 lanes");
            let w: &mut [u16; L] = w.try_into().expect("16 lanes");
            for l in 0..L {
                let e = bf16(exp_k::<Kn>(x[l] - max));
                w[l] = e;
                lanes[l] += from_bf16(e);
            }
        }
        let mut tail = 0.0f32;
        for (w, &x) in w16.into_remainder().iter_mut().zip(x16.remainder()) {
            *w = bf16(exp_k::<Kn>(x - max));
            tail += from_bf16(*w);
        }
        1.0 / (reduce(lanes, |a, b| a + b) + tail)
    }

    /// The f32 value of a bf16.
    #[inline(always)]
    pub(super) fn from_bf16(v: u16) -> f32 {
        f32::from_bits(u32::from(v) << 16)
    }

    /// Sizes shared by the packing and the products.
    #[derive(Clone, Copy)]
    pub(super) struct Geometry {
        hidden: usize,
        /// Head width.
        d: usize,
        /// Head width rounded up to 32 (A tile rows).
        dp: usize,
        /// Head width rounded up to 16 (C tile columns).
        d16: usize,
        len: usize,
        /// Keys rounded up to 32.
        l32: usize,
    }

    impl Geometry {
        pub(super) fn new(hidden: usize, heads: usize, len: usize) -> Self {
            let d = hidden / heads;
            Geometry {
                hidden,
                d,
                dp: d.next_multiple_of(32),
                d16: d.next_multiple_of(16),
                len,
                l32: len.next_multiple_of(32),
            }
        }

        /// bf16 words of one head's packed keys.
        pub(super) fn keys_len(&self) -> usize {
            self.l32 * self.dp
        }

        /// f32 slots of one head's packed keys and values (an even number of words).
        pub(super) fn head_len(&self) -> usize {
            (self.keys_len() + self.l32 * self.d16) / 2
        }
    }

    /// Packs the keys and values of heads `h0..` (one [`Geometry::head_len`] row each).
    pub(super) struct PackHeads<'a> {
        pub(super) g: Geometry,
        pub(super) qkv: &'a [f32],
    }

    impl BlockTask for PackHeads<'_> {
        #[inline(always)]
        fn run(&self, h0: usize, out: &mut [f32], _: &mut [f32]) {
            let _timer = crate::trace::time(crate::trace::Part::KeyTranspose);
            let g = self.g;
            let (h, d, len) = (g.hidden, g.d, g.len);
            let chunks = g.dp / 32;
            let key_chunks = g.l32 / 32;
            for (i, head) in out.chunks_exact_mut(g.head_len()).enumerate() {
                let c0 = (h0 + i) * d;
                let words: &mut [u32] = bytemuck::cast_slice_mut(head);
                let (keys, values) = words.split_at_mut(g.keys_len() / 2);
                keys.fill(0);
                values.fill(0);
                for j in 0..len {
                    // Key j is column j % 16 of its tiles: dimension pair p in row p % 16 of
                    // chunk p / 16, i.e. at 16 p from the key's first word.
                    let k = &self.qkv[j * 3 * h + h + c0..][..d];
                    let at = (j / 16) * chunks * 256 + j % 16;
                    let mut k2 = k.chunks_exact(2);
                    for (p, x) in (&mut k2).enumerate() {
                        keys[at + 16 * p] = pair(x[0], x[1]);
                    }
                    if let [x] = k2.remainder() {
                        keys[at + 16 * (d / 2)] = pair(*x, 0.0);
                    }
                }
                for j in (0..len).step_by(2) {
                    // Keys j and j + 1 are one row of the value tiles: 16 dimensions per tile.
                    let v0 = &self.qkv[j * 3 * h + 2 * h + c0..][..d];
                    let at = (j / 32) * 256 + (j % 32) / 2 * 16;
                    if j + 1 < len {
                        let v1 = &self.qkv[(j + 1) * 3 * h + 2 * h + c0..][..d];
                        for (t, (x, y)) in v0.chunks(16).zip(v1.chunks(16)).enumerate() {
                            let dst = &mut values[t * key_chunks * 256 + at..][..x.len()];
                            for ((o, &x), &y) in dst.iter_mut().zip(x).zip(y) {
                                *o = pair(x, y);
                            }
                        }
                    } else {
                        // An odd last key: its partner is zero padding.
                        for (t, x) in v0.chunks(16).enumerate() {
                            let dst = &mut values[t * key_chunks * 256 + at..][..x.len()];
                            for (o, &x) in dst.iter_mut().zip(x) {
                                *o = pair(x, 0.0);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Two values as bf16 in one word, `lo` in the low half: the (k, k + 1) pair a B tile row
    /// holds for one column.
    #[inline(always)]
    fn pair(lo: f32, hi: f32) -> u32 {
        u32::from(bf16(lo)) | u32::from(bf16(hi)) << 16
    }

    /// Per-thread buffers of the query blocks: scores, weights, queries, outputs.
    #[derive(Default)]
    pub(super) struct Scratch {
        scores: Vec<f32>,
        out: Vec<f32>,
        weights: Vec<u16>,
        queries: Vec<u16>,
    }

    std::thread_local! {
        static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    }

    /// Attention of a block of query rows on the tiles.
    pub(super) struct TileBlocks<'a, Kn> {
        pub(super) kernel: Kn,
        pub(super) g: Geometry,
        pub(super) heads: usize,
        pub(super) qkv: &'a [f32],
        pub(super) packed: &'a [f32],
        pub(super) bias: ScoreBias<'a>,
    }

    impl<Kn: Kernel> BlockTask for TileBlocks<'_, Kn> {
        #[inline(always)]
        fn run(&self, i0: usize, ctx: &mut [f32], _: &mut [f32]) {
            let _timer = crate::trace::time(crate::trace::Part::Tiles);
            let tiles = self
                .kernel
                .bf16_tiles()
                .expect("attention_bf16 found the tiles");
            let mut s = SCRATCH.with_borrow_mut(std::mem::take);
            let rows = ctx.len() / self.g.hidden;
            for b in (0..rows).step_by(16) {
                let n = (rows - b).min(16);
                for h in 0..self.heads {
                    self.block(&tiles, i0 + b, n, h, &mut ctx[b * self.g.hidden..], &mut s);
                }
            }
            SCRATCH.with_borrow_mut(|t| *t = s);
        }
    }

    impl<Kn: Kernel> TileBlocks<'_, Kn> {
        /// Queries `i..i + n` (`n <= 16`) of head `h` into `ctx` (row `r` at `r * hidden`).
        #[inline(always)]
        fn block(
            &self,
            tiles: &crate::kernels::Bf16Tiles,
            i: usize,
            n: usize,
            h: usize,
            ctx: &mut [f32],
            s: &mut Scratch,
        ) {
            let g = self.g;
            let (hidden, d, dp, d16, len, l32) = (g.hidden, g.d, g.dp, g.d16, g.len, g.l32);
            let words: &[u16] =
                bytemuck::cast_slice(&self.packed[h * g.head_len()..][..g.head_len()]);
            let (keys, values) = words.split_at(g.keys_len());
            // Queries, scaled as they are rounded; rows past n stay zero (never read out).
            let scale = 1.0 / (d as f32).sqrt();
            let queries = grow(&mut s.queries, 16 * dp);
            queries.fill(0);
            for r in 0..n {
                let q = &self.qkv[(i + r) * 3 * hidden + h * d..][..d];
                for (t, &x) in queries[r * dp..][..d].iter_mut().zip(q) {
                    *t = bf16(x * scale);
                }
            }
            // Scores: two 16-key tiles per product.
            let chunks = dp / 32;
            let panel = chunks * BF16_TILE;
            let scores = grow(&mut s.scores, 16 * l32);
            for t in (0..l32 / 16).step_by(2) {
                tiles.product(
                    queries,
                    dp,
                    chunks,
                    &[&keys[t * panel..], &keys[(t + 1) * panel..]],
                    scores,
                    &[t * 16, (t + 1) * 16],
                    l32,
                );
            }
            // Softmax of each valid row; the weights are rounded to bf16 and summed as rounded.
            let mut inv = [0.0f32; 16];
            let bias = &self.bias.mask[..len];
            let relative = self.bias.relative_head(h, len);
            let weights = grow(&mut s.weights, 16 * l32);
            for (r, inv) in inv.iter_mut().enumerate().take(n) {
                let (row, pad) = weights[r * l32..][..l32].split_at_mut(len);
                pad.fill(0);
                if let Some(rel) = relative {
                    // q.k + relative bias, then the mask in `softmax_row`.
                    let b = &rel[len - 1 - (i + r)..][..len];
                    for (x, &b) in scores[r * l32..][..len].iter_mut().zip(b) {
                        *x += b;
                    }
                }
                *inv = softmax_row::<Kn>(&mut scores[r * l32..][..len], bias, row);
            }
            // Outputs: two 16-dimension tiles per product, over the keys 32 at a time.
            let key_chunks = l32 / 32;
            let panel = key_chunks * BF16_TILE;
            let out = grow(&mut s.out, 16 * d16);
            let col_tiles = d16 / 16;
            for t in (0..col_tiles).step_by(2) {
                // Two tiles per product; one for an odd last tile.
                let k = (col_tiles - t).min(2);
                let b = [&values[t * panel..], &values[(t + k - 1) * panel..]];
                let at = [t * 16, (t + 1) * 16];
                tiles.product(weights, l32, key_chunks, &b[..k], out, &at[..k], d16);
            }
            for r in 0..n {
                let o = &mut ctx[r * hidden + h * d..][..d];
                for (o, &x) in o.iter_mut().zip(&out[r * d16..][..d]) {
                    *o = x * inv[r];
                }
            }
        }
    }
}
