//! BERT encoder ops: embeddings, layer norm, self-attention with a padding mask, the encoder
//! layer (called once per layer in a loop by generated code), pooling.
//!
//! The arithmetic follows Hugging Face's `BertModel`: post-norm residual blocks, attention
//! scores scaled by `1 / sqrt(head_dim)` with masked keys pushed to `f32::MIN`, mean pooling
//! over the attention mask.

use super::{linear_dyn, linear_post, ActQuant, Activation, Linear, Post, QuantScratch};
use crate::kernels::Kernel;
use crate::kernels::{exp_k, madd};
use crate::trace::{self, Op, Part};
use crate::Error;

mod tiles;
pub use tiles::{attention_bf16, tile_spare_len, MIN_TILE_TOKENS};

/// One tokenized sequence. `attention_mask` (1 = attend, 0 = padding) and `token_type_ids`
/// default to all ones and all zeros.
///
/// ```
/// let input = dynq_runtime::BertInput::new(&[101, 7592, 102]);
/// assert_eq!(input.check(30522, 2, 256).unwrap(), 3);
/// assert!(input.check(1000, 2, 256).is_err()); // 7592 >= vocab
/// ```
#[derive(Debug, Clone, Copy)]
pub struct BertInput<'a> {
    /// Token ids.
    pub input_ids: &'a [u32],
    /// 1 for tokens to attend to, 0 for padding.
    pub attention_mask: Option<&'a [u32]>,
    /// Segment ids.
    pub token_type_ids: Option<&'a [u32]>,
}

impl<'a> BertInput<'a> {
    /// A sequence with the default mask and token types.
    pub fn new(input_ids: &'a [u32]) -> Self {
        BertInput {
            input_ids,
            attention_mask: None,
            token_type_ids: None,
        }
    }

    /// Refuses ids that end with the padding id `pad_id` when no mask comes with them: what a
    /// tokenizer that pads produces, and read as text it gives a wrong result, not an error.
    ///
    /// ```
    /// use dynq_runtime::BertInput;
    /// assert!(BertInput::new(&[101, 7, 102]).check_padding(Some(0)).is_ok());
    /// let e = BertInput::new(&[101, 7, 102, 0, 0]).check_padding(Some(0)).unwrap_err();
    /// assert!(e.to_string().starts_with("input_ids ends with 2 padding id(s) (0)"));
    /// let mask = [1, 1, 1, 0, 0];
    /// let masked = BertInput { attention_mask: Some(&mask), ..BertInput::new(&[101, 7, 102, 0, 0]) };
    /// assert!(masked.check_padding(Some(0)).is_ok());
    /// ```
    pub fn check_padding(&self, pad_id: Option<u32>) -> Result<(), Error> {
        if let (Some(pad_id), None) = (pad_id, self.attention_mask) {
            let count = self
                .input_ids
                .iter()
                .rev()
                .take_while(|&&id| id == pad_id)
                .count();
            if count > 0 {
                return Err(Error::TrailingPadding { count, pad_id });
            }
        }
        Ok(())
    }

    /// Checks the sequence against the model's sizes; returns its length.
    pub fn check(&self, vocab: usize, type_vocab: usize, max_len: usize) -> Result<usize, Error> {
        let len = self.input_ids.len();
        if len == 0 {
            return Err(Error::EmptySequence);
        }
        if len > max_len {
            return Err(Error::SequenceTooLong { len, max: max_len });
        }
        for (what, v) in [
            ("attention_mask", self.attention_mask),
            ("token_type_ids", self.token_type_ids),
        ] {
            if let Some(v) = v {
                if v.len() != len {
                    return Err(Error::LengthMismatch {
                        what,
                        expected: len,
                        found: v.len(),
                    });
                }
            }
        }
        let bad = |what: &'static str, values: &[u32], limit: usize| {
            values
                .iter()
                .position(|&v| v as usize >= limit)
                .map(|index| Error::TokenOutOfRange {
                    what,
                    index,
                    value: values[index],
                    limit,
                })
        };
        if let Some(e) = bad("input_ids", self.input_ids, vocab) {
            return Err(e);
        }
        if let Some(e) = self
            .token_type_ids
            .and_then(|t| bad("token_type_ids", t, type_vocab))
        {
            return Err(e);
        }
        if let Some(m) = self.attention_mask {
            if let Some(e) = bad("attention_mask", m, 2) {
                return Err(e);
            }
            if m.iter().all(|&v| v == 0) {
                return Err(Error::NoTokenAttended);
            }
        }
        Ok(len)
    }

    fn attends(&self, i: usize) -> bool {
        self.attention_mask.is_none_or(|m| m[i] == 1)
    }
}

/// What a BERT model returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BertOutput {
    /// Mean of the last hidden states over the attention mask.
    MeanPooled,
    /// The last hidden state of the first token.
    Cls,
    /// Every last hidden state.
    LastHiddenState,
    /// Classifier logits (pooler + classifier).
    Logits,
}

/// A word-embedding table `[vocab][hidden]`, row-major: f32, or weight-only storage that makes
/// the binary smaller (f16: half, INT8 with a scale per row: about a quarter). A looked-up row
/// is widened (or dequantized) to f32 as it is added to the other embeddings.
///
/// ```
/// use dynq_runtime::ops::bert::{embed_dyn, Embeddings, LayerNorm, Positions, Table};
/// use dynq_runtime::BertInput;
/// let embed = |word: Table<'_>| {
///     let e = Embeddings {
///         word,
///         position: &[0.1, 0.2, 0.3],
///         positions: Positions::Absolute,
///         token_type: Some(&[0.0; 3]),
///         norm: LayerNorm { gamma: &[1.0; 3], beta: &[0.0; 3], eps: 1e-12 },
///     };
///     let mut out = [0.0; 3];
///     embed_dyn(&e, &BertInput::new(&[1]), 3, &mut out);
///     out
/// };
/// // Token 1's row, [1.0, -0.5, 0.25] quantized with scale 1 / 127 (its absmax over 127):
/// let s = 1.0f32 / 127.0;
/// let int8 = embed(Table::I8 { rows: &[0, 0, 0, 127, -64, 32], scales: &[1.0, s] });
/// let f32 = embed(Table::F32(&[0.0, 0.0, 0.0, 127.0 * s, -64.0 * s, 32.0 * s]));
/// assert_eq!(int8, f32);
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Table<'a> {
    /// f32 rows.
    F32(&'a [f32]),
    /// f16 rows (raw bits).
    F16(&'a [u16]),
    /// Symmetric INT8 rows with one scale per row: row `i` is `rows[i * hidden..][..hidden]`,
    /// value `q as f32 * scales[i]`.
    I8 {
        /// `[vocab][hidden]` quantized values in [-127, 127].
        rows: &'a [i8],
        /// One scale per row (`vocab` values).
        scales: &'a [f32],
    },
}

/// Layer normalization parameters.
#[derive(Debug, Clone, Copy)]
pub struct LayerNorm<'a> {
    /// Scale.
    pub gamma: &'a [f32],
    /// Shift.
    pub beta: &'a [f32],
    /// Added to the variance.
    pub eps: f32,
}

/// What is added to the attention scores before the softmax.
#[derive(Debug, Clone, Copy)]
pub struct ScoreBias<'a> {
    /// One value per key: 0 for attended keys, `f32::MIN` for padding ([`mask_bias`]).
    pub mask: &'a [f32],
    /// A relative position bias (MPNet): `[heads][2 len - 1]`, the score of query `i` against
    /// key `j` in head `h` gets `relative[h * (2 len - 1) + len - 1 + j - i]`
    /// ([`relative_position_bias`]).
    pub relative: Option<&'a [f32]>,
    /// Sliding-window attention: query `i` attends to keys `j` with `|i - j| <= window`
    /// only (the others as if masked); the keys outside are never computed, so a local
    /// layer's cost grows linearly with the length.
    pub window: Option<usize>,
}

impl<'a> ScoreBias<'a> {
    /// The padding mask alone.
    pub fn mask(mask: &'a [f32]) -> Self {
        ScoreBias {
            mask,
            relative: None,
            window: None,
        }
    }

    /// Head `h`'s relative bias (`2 len - 1` values), if any.
    #[inline(always)]
    pub(crate) fn relative_head(&self, h: usize, len: usize) -> Option<&'a [f32]> {
        let w = 2 * len - 1;
        self.relative.map(|r| &r[h * w..(h + 1) * w])
    }
}

/// MPNet's relative position bucket of `relative = key - query`, as Hugging Face's
/// `MPNetEncoder.relative_position_bucket` computes it (f32 logarithm, truncated): half the
/// buckets for each sign, exact below `num_buckets / 4`, logarithmic up to `max_distance`.
///
/// ```
/// use dynq_runtime::ops::bert::relative_position_bucket;
/// assert_eq!(relative_position_bucket(0, 32, 128), 0);
/// assert_eq!(relative_position_bucket(-3, 32, 128), 3);
/// assert_eq!(relative_position_bucket(3, 32, 128), 19);
/// assert_eq!(relative_position_bucket(-1000, 32, 128), 15);
/// ```
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = num_buckets / 2;
    // n = -relative: positive when the key is before the query.
    let n = -relative;
    let mut bucket = if n < 0 { half } else { 0 };
    let n = n.unsigned_abs() as usize;
    let max_exact = half / 2;
    bucket += if n < max_exact {
        n
    } else {
        // torch: log(n.float() / max_exact) / log(max_distance / max_exact) * (half - max_exact),
        // in f32, truncated toward zero.
        let ratio = n as f32 / max_exact as f32;
        let scale = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
        let large = max_exact + (ratio.ln() / scale * (half - max_exact) as f32) as usize;
        large.min(half - 1)
    };
    bucket
}

/// Fills `out` (`heads * (2 len - 1)` values) with MPNet's relative position bias for `len`
/// tokens from its `[num_buckets][heads]` embedding `table`, in [`ScoreBias::relative`]'s layout.
pub fn relative_position_bias(
    table: &[f32],
    num_buckets: usize,
    max_distance: usize,
    heads: usize,
    len: usize,
    out: &mut [f32],
) {
    let w = 2 * len - 1;
    for slot in 0..w {
        let relative = slot as i64 - (len as i64 - 1);
        let b = relative_position_bucket(relative, num_buckets, max_distance);
        for h in 0..heads {
            out[h * w + slot] = table[b * heads + h];
        }
    }
}

/// How a token's position id is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// Position `i` for the `i`-th token (BERT, DistilBERT, ELECTRA).
    Absolute,
    /// RoBERTa's numbering (also XLM-R's and MPNet's): tokens whose id is not `padding_idx` are
    /// numbered `padding_idx + 1, padding_idx + 2, ...` in order, and every `padding_idx` token
    /// gets position `padding_idx` (Hugging Face's `create_position_ids_from_input_ids`).
    AfterPadding {
        /// The padding token id (`pad_token_id`), which is also the first position row used.
        padding_idx: u32,
    },
    /// No position table: positions enter through rotary embeddings in attention
    /// ([`Rotary`]; ModernBERT).
    None,
}

impl Positions {
    /// The number of position rows a sequence of `len` tokens can need.
    ///
    /// ```
    /// use dynq_runtime::ops::bert::Positions;
    /// assert_eq!(Positions::Absolute.rows_needed(8), 8);
    /// assert_eq!(Positions::AfterPadding { padding_idx: 1 }.rows_needed(8), 10);
    /// ```
    pub const fn rows_needed(self, len: usize) -> usize {
        match self {
            Positions::Absolute => len,
            Positions::AfterPadding { padding_idx } => padding_idx as usize + 1 + len,
            Positions::None => 0,
        }
    }
}

/// The embedding block.
#[derive(Debug, Clone, Copy)]
pub struct Embeddings<'a> {
    /// `[vocab][width]`.
    pub word: Table<'a>,
    /// `[positions][width]`: at least [`Positions::rows_needed`] rows for the longest input.
    pub position: &'a [f32],
    /// How position ids are assigned.
    pub positions: Positions,
    /// `[type_vocab][width]`, or `None` for models without token types (DistilBERT, MPNet),
    /// which then accept only token type 0.
    pub token_type: Option<&'a [f32]>,
    /// LayerNorm after the sum.
    pub norm: LayerNorm<'a>,
}

/// The weights of one encoder layer.
#[derive(Debug, Clone, Copy)]
pub struct EncoderLayer<'a> {
    /// Q, K and V fused into one `[3 * hidden][hidden]` matrix: one activation quantization,
    /// one GEMM.
    pub qkv: Linear<'a>,
    /// Attention output projection.
    pub attn_out: Linear<'a>,
    /// Post-norm layers: the LayerNorm after attention. Pre-norm layers: the LayerNorm of
    /// the attention's input, `None` where the layer has none (ModernBERT's first layer).
    pub norm1: Option<LayerNorm<'a>>,
    /// FFN up-projection (GELU fused into its epilogue). Gated FFNs: `2 x intermediate`
    /// outputs, `[input | gate]`.
    pub ffn_up: Linear<'a>,
    /// FFN down-projection.
    pub ffn_down: Linear<'a>,
    /// Post-norm layers: the LayerNorm after the FFN. Pre-norm layers: the LayerNorm of the
    /// FFN's input.
    pub norm2: LayerNorm<'a>,
    /// Rotary position embedding of queries and keys, if the model has one.
    pub rotary: Option<Rotary<'a>>,
    /// Sliding-window attention: each token attends to the tokens at most this far from it
    /// (ModernBERT's local layers: `local_attention / 2`); `None`: every token.
    pub window: Option<usize>,
}

/// Scratch of one forward over a ragged batch of `tokens` tokens ([`Ragged`]), carved from
/// the workspace.
#[derive(Debug)]
pub struct EncoderScratch<'a> {
    /// `tokens * 3 * hidden`.
    pub qkv: &'a mut [f32],
    /// `tokens * hidden`: attention context, then the FFN down-projection.
    pub ctx: &'a mut [f32],
    /// `(tokens + KEY_ROW_PAD) * hidden` ([`KEY_ROW_PAD`]): layer inputs and sums, and the
    /// transposed keys during attention.
    pub tmp: &'a mut [f32],
    /// `tokens * intermediate`.
    pub ffn: &'a mut [f32],
    /// [`ragged_scores_len`]`(seqs, hidden, threads::count())`: attention score blocks per
    /// thread.
    pub scores: &'a mut [f32],
    /// `tokens`: 0 for attended keys, `f32::MIN` for padding.
    pub mask_bias: &'a [f32],
    /// The relative position bias of every layer, each sequence's `heads x (2 len - 1)` in
    /// turn ([`ScoreBias::relative`], [`Ragged::relative_start`]), if the model has one.
    pub relative: Option<&'a [f32]>,
    /// Activation quantization scratch.
    pub quant: QuantScratch<'a>,
}

/// Sums word, position and token-type embeddings and normalizes: `out` is `len x H` (`H` the
/// embedding width).
#[inline(always)]
pub fn embed<const H: usize>(e: &Embeddings<'_>, input: &BertInput<'_>, out: &mut [f32]) {
    embed_dyn(e, input, H, out);
}

/// [`embed`] with the hidden width `h` as a value (for tools such as `dynq report`).
#[inline(always)]
pub fn embed_dyn(e: &Embeddings<'_>, input: &BertInput<'_>, h: usize, out: &mut [f32]) {
    let mut next = 0usize;
    for (i, (row, &id)) in out.chunks_exact_mut(h).zip(input.input_ids).enumerate() {
        let pos = match e.positions {
            Positions::Absolute => i,
            Positions::AfterPadding { padding_idx } if id == padding_idx => padding_idx as usize,
            Positions::AfterPadding { padding_idx } => {
                next += 1;
                padding_idx as usize + next
            }
            Positions::None => {
                word_row(e.word, id as usize, row);
                continue;
            }
        };
        let id = id as usize;
        let pos = &e.position[pos * h..(pos + 1) * h];
        match e.word {
            Table::F32(w) => {
                for ((o, &w), &p) in row.iter_mut().zip(&w[id * h..(id + 1) * h]).zip(pos) {
                    *o = w + p;
                }
            }
            Table::F16(w) => {
                for ((o, &w), &p) in row.iter_mut().zip(&w[id * h..(id + 1) * h]).zip(pos) {
                    *o = half::f16::from_bits(w).to_f32() + p;
                }
            }
            Table::I8 { rows, scales } => {
                let s = scales[id];
                for ((o, &q), &p) in row.iter_mut().zip(&rows[id * h..(id + 1) * h]).zip(pos) {
                    *o = f32::from(q) * s + p;
                }
            }
        }
        // (word + position) + token type, in that order whatever the family.
        if let Some(types) = e.token_type {
            let tt = input.token_type_ids.map_or(0, |t| t[i] as usize);
            let typ = &types[tt * h..(tt + 1) * h];
            for (o, &t) in row.iter_mut().zip(typ) {
                *o += t;
            }
        }
    }
    layer_norm_dyn(out, h, &e.norm);
}

/// Word row `id` of `table` into `row` (no position, no token type: rotary models).
#[inline(always)]
fn word_row(table: Table<'_>, id: usize, row: &mut [f32]) {
    let h = row.len();
    match table {
        Table::F32(w) => row.copy_from_slice(&w[id * h..(id + 1) * h]),
        Table::F16(w) => {
            for (o, &w) in row.iter_mut().zip(&w[id * h..(id + 1) * h]) {
                *o = half::f16::from_bits(w).to_f32();
            }
        }
        Table::I8 { rows, scales } => {
            let s = scales[id];
            for (o, &q) in row.iter_mut().zip(&rows[id * h..(id + 1) * h]) {
                *o = f32::from(q) * s;
            }
        }
    }
}

/// Rotary position embedding of one attention kind: `[positions][d]` values per position,
/// the `d / 2` cosines then the `d / 2` sines of `position * inv_freq[c]` (`d` the head width),
/// computed at build time as `transformers` computes them (f32 angle, its cosine and sine).
#[derive(Debug, Clone, Copy)]
pub struct Rotary<'a> {
    /// `[positions][d]`: cosines, then sines.
    pub table: &'a [f32],
}

/// Rotates the query and key parts of one fused `[q | k | v]` row (`3 h` values, `heads`
/// heads) to position `pos`, as `transformers`' `apply_rotary_pos_emb` does:
/// `x * cos + rotate_half(x) * sin`, each product rounded before the sum (no fused
/// multiply-add), so the results are the reference's bit for bit given the same table.
///
/// ```
/// use dynq_runtime::ops::bert::{rotate_qk, Rotary};
/// // One head of width 2 at position 1 with angle pi/2: cos 0, sin 1.
/// let table = [1.0, 0.0, 0.0, 1.0];
/// let mut row = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// rotate_qk(&mut row, 2, 1, Rotary { table: &table }, 1);
/// assert_eq!(row, [-2.0, 1.0, -4.0, 3.0, 5.0, 6.0]);
/// ```
#[inline(always)]
pub fn rotate_qk(row: &mut [f32], h: usize, heads: usize, rotary: Rotary<'_>, pos: usize) {
    let d = h / heads;
    let half = d / 2;
    let t = &rotary.table[pos * d..(pos + 1) * d];
    let (cos, sin) = t.split_at(half);
    for x in row[..2 * h].chunks_exact_mut(d) {
        let (a, b) = x.split_at_mut(half);
        for c in 0..half {
            let (x1, x2) = (a[c], b[c]);
            a[c] = x1 * cos[c] - x2 * sin[c];
            b[c] = x2 * cos[c] + x1 * sin[c];
        }
    }
}

/// Normalizes each row of `x` in place: `(x - mean) / sqrt(var + eps) * gamma + beta`, with
/// mean and (biased) variance accumulated in f64.
///
/// ```
/// use dynq_runtime::ops::bert::{layer_norm, LayerNorm};
/// let mut x = [1.0, 3.0];
/// layer_norm::<2>(&mut x, &LayerNorm { gamma: &[1.0, 1.0], beta: &[0.0, 0.0], eps: 0.0 });
/// assert_eq!(x, [-1.0, 1.0]);
/// ```
#[inline(always)]
pub fn layer_norm<const H: usize>(x: &mut [f32], ln: &LayerNorm<'_>) {
    layer_norm_dyn(x, H, ln);
}

/// [`layer_norm`] over rows of width `h` given as a value.
#[inline(always)]
pub fn layer_norm_dyn(x: &mut [f32], h: usize, ln: &LayerNorm<'_>) {
    for row in x.chunks_exact_mut(h) {
        let mean = sum8(row, |v| v) / h as f64;
        let var = sum8(row, |v| (v - mean) * (v - mean)) / h as f64;
        let inv = (1.0 / (var + f64::from(ln.eps)).sqrt()) as f32;
        let mean = mean as f32;
        for ((v, &g), &b) in row.iter_mut().zip(ln.gamma).zip(ln.beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// `sum f(x)` in f64 over 8 lanes (so the loop vectorizes; a single f64 accumulator would
/// wait out the add latency at every element), then across the lanes.
#[inline(always)]
fn sum8(x: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            lanes[l] += f(f64::from(c[l]));
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f(f64::from(v))).sum();
    lanes.iter().sum::<f64>() + tail
}

/// Multi-head self-attention over `len` tokens in f32: `qkv` rows hold `[q | k | v]` (each
/// `H` wide, heads contiguous), `ctx` receives the heads' outputs side by side. `kt` (at least
/// [`key_stride`]`(len) * H`) receives the keys transposed per head, so scores are computed for 32 keys at a
/// time without horizontal sums. `scores` holds [`scores_len`] values: query rows are split into
/// blocks across threads with the `rayon` feature. `dims` gives the hidden width `H` and the
/// heads.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn attention<Kn: Kernel, D: Dims>(
    kernel: Kn,
    dims: D,
    qkv: &[f32],
    len: usize,
    bias: ScoreBias<'_>,
    scores: &mut [f32],
    kt: &mut [f32],
    ctx: &mut [f32],
) {
    let h = dims.hidden();
    // Keys per query: all, or the window's.
    let keys = bias.window.map_or(len, |w| len.min(2 * w + 1));
    trace::work(Part::KeyTranspose, len * h, len * h * 8);
    trace::work(Part::Scores, 2 * len * keys * h, 0);
    trace::work(
        Part::Softmax,
        dims.heads() * len * keys,
        dims.heads() * len * keys * 8,
    );
    trace::work(Part::ValueSum, 2 * len * keys * h, 0);
    // kt[h][c][j] = k[j][h * d + c]: rows of kt split over the threads from 64 tokens on.
    let stride = key_stride(len);
    let transpose = TransposeKeys {
        qkv,
        len,
        stride,
        h,
    };
    let min_rows = if len >= SHORT_SEQUENCE { 1 } else { usize::MAX };
    crate::threads::for_each_block(
        kernel,
        h,
        stride,
        1,
        min_rows,
        &mut kt[..h * stride],
        &mut [],
        0,
        &transpose,
    );
    let kt = &*kt;
    let task = AttentionBlocks {
        kernel: std::marker::PhantomData::<Kn>,
        dims,
        qkv,
        kt,
        len,
        bias,
    };
    crate::threads::for_each_block(
        kernel,
        len,
        h,
        QUERY_BLOCK,
        SHORT_SEQUENCE,
        ctx,
        scores,
        QUERY_BLOCK * len.next_multiple_of(KEY_GROUP),
        &task,
    );
}

/// Keys transposed per head for [`attention`]: rows `hc` of `kt` (`len` keys each, rows
/// [`key_stride`] apart) from the `k` part of the `qkv` rows.
struct TransposeKeys<'a> {
    qkv: &'a [f32],
    len: usize,
    stride: usize,
    h: usize,
}

impl crate::kernels::BlockTask for TransposeKeys<'_> {
    #[inline(always)]
    fn run(&self, hc0: usize, kt: &mut [f32], _: &mut [f32]) {
        let _timer = trace::time(Part::KeyTranspose);
        let (qkv, len, stride, h) = (self.qkv, self.len, self.stride, self.h);
        let n = kt.len() / stride;
        // Eight keys at a time: each store then fills 32 consecutive bytes instead of touching
        // one cache line per value.
        let mut j = 0;
        while j + 8 <= len {
            let k: [&[f32]; 8] = std::array::from_fn(|t| &qkv[(j + t) * 3 * h + h + hc0..][..n]);
            for c in 0..n {
                let dst: &mut [f32; 8] =
                    (&mut kt[c * stride + j..][..8]).try_into().expect("8 keys");
                for t in 0..8 {
                    dst[t] = k[t][c];
                }
            }
            j += 8;
        }
        for j in j..len {
            let k = &qkv[j * 3 * h + h + hc0..][..n];
            for (c, &v) in k.iter().enumerate() {
                kt[c * stride + j] = v;
            }
        }
    }
}

/// [`attention`] over a block of query rows.
struct AttentionBlocks<'a, Kn, D> {
    kernel: std::marker::PhantomData<Kn>,
    dims: D,
    qkv: &'a [f32],
    kt: &'a [f32],
    len: usize,
    bias: ScoreBias<'a>,
}

impl<Kn: Kernel, D: Dims> crate::kernels::BlockTask for AttentionBlocks<'_, Kn, D> {
    #[inline(always)]
    fn run(&self, i0: usize, ctx: &mut [f32], scores: &mut [f32]) {
        let (h, heads) = (self.dims.hidden(), self.dims.heads());
        attend_rows::<Kn>(
            h, heads, self.qkv, self.kt, self.len, self.bias, i0, scores, ctx,
        );
    }
}

/// The most query rows the attention loops handle together ([`Kernel::WIDE_F32`] kernels: 8,
/// others 4): each key row and value row loaded from cache serves them all, and their
/// accumulators are independent, so the FMAs do not wait on each other's latency.
pub const QUERY_BLOCK: usize = 8;

/// Keys per group of the score layout (see [`attend_block`]).
const KEY_GROUP: usize = 16;

/// The distance between rows of the transposed keys of a sequence of `len` tokens: `len` for
/// short sequences (all their rows fit in L1), else `len` rounded up to an odd number of
/// 16-key groups (64-byte lines). With rows `len` apart a head's 64 rows of a power-of-two
/// length lie a multiple of 4 KiB apart and share one set of the 8-way L1 cache, so each block
/// of queries reloaded its keys from L2; an odd number of lines apart they spread over every
/// set. At most [`KEY_ROW_PAD`] keys longer than `len`.
///
/// ```
/// use dynq_runtime::ops::bert::key_stride;
/// assert_eq!((key_stride(10), key_stride(2048), key_stride(1000)), (10, 2064, 1040));
/// ```
pub const fn key_stride(len: usize) -> usize {
    if len < SHORT_SEQUENCE {
        len
    } else {
        (2 * len.div_ceil(2 * KEY_GROUP) + 1) * KEY_GROUP
    }
}

/// The most [`key_stride`] adds to a length: a buffer for the transposed keys of `len` tokens
/// holds `(len + KEY_ROW_PAD) x hidden` values.
pub const KEY_ROW_PAD: usize = 3 * KEY_GROUP;

/// Head widths up to this keep a block's transposed queries on the stack; wider heads (no
/// known model has them) use a heap buffer per block.
const STACK_HEAD_WIDTH: usize = 256;

/// The `scores` scratch [`EncoderScratch`] needs for `len` tokens on `threads` threads: per
/// thread, a block of [`QUERY_BLOCK`] score rows, keys rounded up to a group of 16.
///
/// ```
/// assert_eq!(dynq_runtime::ops::bert::scores_len(10, 2), 16 * 2 * 8);
/// assert_eq!(dynq_runtime::ops::bert::scores_len(32, 1), 32 * 8);
/// ```
pub const fn scores_len(len: usize, threads: usize) -> usize {
    len.next_multiple_of(KEY_GROUP) * threads * QUERY_BLOCK
}

/// Attention of query rows `i0..i0 + ctx.len() / hidden` against all `len` keys, head by head
/// in blocks of queries: 8 queries x 32 lanes on AVX-512, 4 x 16 elsewhere.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_rows<Kn: Kernel>(
    hidden: usize,
    heads: usize,
    qkv: &[f32],
    kt: &[f32],
    len: usize,
    bias: ScoreBias<'_>,
    i0: usize,
    scores: &mut [f32],
    ctx: &mut [f32],
) {
    let d = hidden / heads;
    let rows = ctx.len() / hidden;
    // Queries are scaled by 1 / sqrt(head width) as they are copied into a block.
    let scale = 1.0 / (d as f32).sqrt();
    let block = if Kn::WIDE_F32 { 8 } else { 4 };
    let mut stack = [[0.0f32; QUERY_BLOCK]; STACK_HEAD_WIDTH];
    let mut heap = Vec::new();
    let qt: &mut [[f32; QUERY_BLOCK]] = if d <= STACK_HEAD_WIDTH {
        &mut stack[..d]
    } else {
        heap.resize(d, [0.0; QUERY_BLOCK]);
        &mut heap
    };
    let ks = key_stride(len);
    for h in 0..heads {
        let kh = &kt[h * d * ks..(h + 1) * d * ks];
        let mut r = 0;
        while r < rows {
            let ctx = &mut ctx[r * hidden..];
            let rel = bias.relative_head(h, len);
            let i = i0 + r;
            let n = if rows - r < block {
                1
            } else if Kn::WIDE_F32 {
                8
            } else {
                4
            };
            // The keys any of the block's queries attends to: all, or the windows' union.
            let (first, end) = match bias.window {
                None => (0, len),
                Some(w) => (i.saturating_sub(w), len.min(i + n + w)),
            };
            let g = Geometry {
                hidden,
                d,
                len: end - first,
                first,
                seq_len: len,
                key_stride: ks,
                scale,
            };
            let args = (qkv, kh, bias.mask, h, i);
            // `Kn::WIDE_F32` is a constant: each kernel instantiates two block shapes.
            if n == 1 {
                attend_block::<Kn, 1, 32>(&g, args, rel, bias.window, qt, scores, ctx);
            } else if Kn::WIDE_F32 {
                attend_block::<Kn, 8, 32>(&g, args, rel, bias.window, qt, scores, ctx);
            } else {
                attend_block::<Kn, 4, 16>(&g, args, rel, bias.window, qt, scores, ctx);
            }
            r += n;
        }
    }
}

/// Widths shared by the attention loops.
struct Geometry {
    hidden: usize,
    /// Head width.
    d: usize,
    /// Keys of the block: `first..first + len` of the sequence's.
    len: usize,
    /// The block's first key.
    first: usize,
    /// The sequence's length.
    seq_len: usize,
    /// The row stride of the transposed keys ([`key_stride`]).
    key_stride: usize,
    /// `1 / sqrt(d)`.
    scale: f32,
}

/// Where the score of query `r` of a block against key `j` lies: keys in groups of 16, each
/// group holding the 16 scores of every query of the block in turn (`[j / 16][r][j % 16]`).
/// The score loops store whole vectors of keys, and the value loop finds the `R` queries'
/// weights of one key at fixed offsets from one pointer (no pointer per query to keep in
/// registers).
#[inline(always)]
fn score_at(j: usize, r: usize) -> usize {
    (j / KEY_GROUP) * (KEY_GROUP * QUERY_BLOCK) + r * KEY_GROUP + j % KEY_GROUP
}

/// Queries `i..i + R` of head `h` (`args` = qkv, the head's keys transposed `[d][len]`, mask
/// bias, `h`, `i`): scores against every key (queries scaled by `1 / sqrt(d)`),
/// softmax, and the weighted sum of the value rows into `ctx` (row `r` of the block at
/// `ctx[r * hidden + h * d..]`), `W` lanes at a time. `qt` (`d` rows) receives the queries
/// transposed, so the score loop reads the `R` queries' value at one dimension from one place.
/// Each score and each output is summed in the same order as one query at a time would (mask
/// bias first, then dimension by dimension; value rows in key order), so blocking changes no
/// result.
#[inline(always)]
fn attend_block<Kn: Kernel, const R: usize, const W: usize>(
    g: &Geometry,
    (qkv, kh, mask_bias, h, i): (&[f32], &[f32], &[f32], usize, usize),
    relative: Option<&[f32]>,
    window: Option<usize>,
    qt: &mut [[f32; QUERY_BLOCK]],
    scores: &mut [f32],
    ctx: &mut [f32],
) {
    let (hidden, d, len) = (g.hidden, g.d, g.len);
    let timer = trace::time(Part::Scores);
    for r in 0..R {
        let q = &qkv[(i + r) * 3 * hidden + h * d..][..d];
        for (t, &v) in qt.iter_mut().zip(q) {
            t[r] = v * g.scale;
        }
    }
    let qt = &*qt;
    let scores = &mut scores[..len.next_multiple_of(KEY_GROUP) * QUERY_BLOCK];
    // W keys at a time, then 8, then one by one.
    let mut j0 = 0;
    j0 = score_keys::<Kn, R, W>(g, qt, kh, mask_bias, j0, scores);
    j0 = score_keys::<Kn, R, 8>(g, qt, kh, mask_bias, j0, scores);
    score_keys::<Kn, R, 1>(g, qt, kh, mask_bias, j0, scores);
    if let Some(rel) = relative {
        // (mask + q.k) + relative bias: query i's row of the bias is `rel[seq_len - 1 - i..]`.
        for r in 0..R {
            let row = &rel[g.seq_len - 1 - (i + r) + g.first..][..len];
            for (j, &b) in row.iter().enumerate() {
                scores[score_at(j, r)] += b;
            }
        }
    }
    if let Some(w) = window {
        // Keys of the block's range outside a query's own window, as if masked.
        for r in 0..R {
            let q = i + r;
            for j in 0..len {
                if (g.first + j).abs_diff(q) > w {
                    scores[score_at(j, r)] = f32::MIN;
                }
            }
        }
    }
    drop(timer);
    let timer = trace::time(Part::Softmax);
    let inv = softmax_unscaled::<Kn, R>(scores, len);
    drop(timer);
    let _timer = trace::time(Part::ValueSum);
    // Values: W output lanes per query at a time, then 8, then one by one.
    let base = 2 * hidden + h * d;
    let mut c = 0;
    c = weigh_values::<Kn, R, W>(g, scores, &inv, qkv, base, c, ctx, h);
    c = weigh_values::<Kn, R, 8>(g, scores, &inv, qkv, base, c, ctx, h);
    weigh_values::<Kn, R, 1>(g, scores, &inv, qkv, base, c, ctx, h);
}

/// `s = exp(s - max(s))` in place for each of the block's `R` score rows (layout of
/// [`score_at`]); returns `1 / sum` per row (the caller scales each output once instead of each
/// weight). Max and sum are kept in 16 lanes so the loops vectorize; the exponentials are
/// summed as they are made.
#[inline(always)]
fn softmax_unscaled<Kn: Kernel, const R: usize>(s: &mut [f32], len: usize) -> [f32; R] {
    const L: usize = KEY_GROUP;
    let full = len / L;
    let rest = len % L;
    let mut inv = [0.0f32; R];
    for (r, inv) in inv.iter_mut().enumerate() {
        // A plain comparison (no NaN rules), so the reduction vectorizes.
        let mut m = [f32::NEG_INFINITY; L];
        for b in 0..full {
            let g: &[f32; L] = s[score_at(b * L, r)..][..L].try_into().expect("16 keys");
            for l in 0..L {
                m[l] = if g[l] > m[l] { g[l] } else { m[l] };
            }
        }
        // The partial last group (none when `len` is a multiple of 16: its start would lie past
        // the buffer).
        let last = if rest > 0 { score_at(full * L, r) } else { 0 };
        let tail = &s[last..][..rest];
        let max = tail
            .iter()
            .chain(&m)
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        // Plain loops, no closures: a closure the compiler leaves out of line is compiled for
        // the baseline CPU, where `mul_add` is a library call.
        let mut lanes = [0.0f32; L];
        for b in 0..full {
            let g: &mut [f32; L] = (&mut s[score_at(b * L, r)..][..L])
                .try_into()
                .expect("16 keys");
            for l in 0..L {
                let e = exp_k::<Kn>(g[l] - max);
                g[l] = e;
                lanes[l] += e;
            }
        }
        let mut tail = 0.0f32;
        for v in &mut s[last..][..rest] {
            *v = exp_k::<Kn>(*v - max);
            tail += *v;
        }
        *inv = 1.0 / (lanes.iter().sum::<f32>() + tail);
    }
    inv
}

/// `acc += a * x`, lane by lane (vectorized whole when `acc` is a local the compiler keeps in
/// registers), fused where the kernel's CPU has FMA.
#[inline(always)]
fn axpy<Kn: Kernel, const W: usize>(acc: &mut [f32; W], a: f32, x: &[f32; W]) {
    for l in 0..W {
        acc[l] = madd::<Kn>(a, x[l], acc[l]);
    }
}

/// Runs `$body` once per query `$r` below `R` (at most 8) with `$acc` bound to that query's
/// accumulator: separate locals, not an array indexed by query, so they stay in registers.
macro_rules! per_query {
    ($R:expr, [$($a:ident),*], |$r:ident, $acc:ident| $body:block) => {{
        let mut $r = 0usize;
        $(
            if $r < $R {
                let $acc = &mut $a;
                $body
            }
            $r += 1;
        )*
        let _ = $r;
    }};
}

/// Scores of `R` queries (`qt`: transposed, `[d][query]`) against keys `j0..` in blocks of
/// `W`, stored as [`score_at`] lays them out; returns where it stopped.
#[inline(always)]
fn score_keys<Kn: Kernel, const R: usize, const W: usize>(
    g: &Geometry,
    qt: &[[f32; QUERY_BLOCK]],
    kh: &[f32],
    mask_bias: &[f32],
    mut j0: usize,
    scores: &mut [f32],
) -> usize {
    let (len, first, stride) = (g.len, g.first, g.key_stride);
    while j0 + W <= len {
        let bias: &[f32; W] = mask_bias[first + j0..][..W].try_into().expect("W keys");
        let (mut a0, mut a1, mut a2, mut a3) = (*bias, *bias, *bias, *bias);
        let (mut a4, mut a5, mut a6, mut a7) = (*bias, *bias, *bias, *bias);
        for (c, q) in qt.iter().enumerate().take(g.d) {
            let row: &[f32; W] = kh[c * stride + first + j0..][..W]
                .try_into()
                .expect("W keys");
            per_query!(R, [a0, a1, a2, a3, a4, a5, a6, a7], |r, acc| {
                axpy::<Kn, W>(acc, q[r], row);
            });
        }
        for (r, acc) in [a0, a1, a2, a3, a4, a5, a6, a7].iter().enumerate().take(R) {
            // W is 32 (two whole groups: j0 is a multiple of 32 then), 16, 8 (inside one
            // group: j0 is a multiple of 8) or 1.
            for (t, part) in acc.chunks(KEY_GROUP).enumerate() {
                let j = j0 + t * KEY_GROUP;
                scores[score_at(j, r)..][..part.len()].copy_from_slice(part);
            }
        }
        j0 += W;
    }
    j0
}

/// `ctx[r][c..c + W] = inv[r] * sum_j p[r][j] * v[j][c..c + W]` for `R` queries and output
/// lanes `c0..` of the head in blocks of `W`; returns where it stopped.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn weigh_values<Kn: Kernel, const R: usize, const W: usize>(
    g: &Geometry,
    p: &[f32],
    inv: &[f32; R],
    qkv: &[f32],
    base: usize,
    mut c: usize,
    ctx: &mut [f32],
    h: usize,
) -> usize {
    let (len, stride) = (g.len, 3 * g.hidden);
    while c + W <= g.d {
        let z = [0.0f32; W];
        let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
        let (mut a4, mut a5, mut a6, mut a7) = (z, z, z, z);
        for j0 in (0..len).step_by(KEY_GROUP) {
            // The weights of key j for every query: p[j % 16 + 16 r] (see `score_at`).
            let p: &[f32; KEY_GROUP * QUERY_BLOCK] = p[score_at(j0, 0)..]
                [..KEY_GROUP * QUERY_BLOCK]
                .try_into()
                .expect("a key group");
            for t in 0..KEY_GROUP.min(len - j0) {
                let v: &[f32; W] = qkv[base + (g.first + j0 + t) * stride + c..][..W]
                    .try_into()
                    .expect("W lanes");
                per_query!(R, [a0, a1, a2, a3, a4, a5, a6, a7], |r, acc| {
                    axpy::<Kn, W>(acc, p[r * KEY_GROUP + t], v);
                });
            }
        }
        for (r, acc) in [a0, a1, a2, a3, a4, a5, a6, a7].iter().enumerate().take(R) {
            let o = &mut ctx[r * g.hidden + h * g.d + c..][..W];
            for (o, &a) in o.iter_mut().zip(acc) {
                *o = a * inv[r];
            }
        }
        c += W;
    }
    c
}

/// Fills the mask bias: 0 for attended keys, `f32::MIN` for padding (as Hugging Face does).
#[inline(always)]
pub fn mask_bias(input: &BertInput<'_>, len: usize, out: &mut [f32]) {
    for (j, b) in out[..len].iter_mut().enumerate() {
        *b = if input.attends(j) { 0.0 } else { f32::MIN };
    }
}

/// One encoder layer over one sequence, in place on `x` (`len x H`): attention block and FFN
/// block, each followed by a residual add and LayerNorm ([`encoder_layer_dyn`] over a batch).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn encoder_layer<
    Kn: Kernel,
    const H: usize,
    const H3: usize,
    const HEADS: usize,
    const I: usize,
>(
    kernel: Kn,
    layer: &EncoderLayer<'_>,
    act: Activation,
    aq: ActQuant,
    len: usize,
    x: &mut [f32],
    s: &mut EncoderScratch<'_>,
) {
    debug_assert_eq!(H3, 3 * H);
    let dims = ConstDims::<H, HEADS, I>;
    let offsets = [0, len];
    let seqs = Ragged::new(&offsets);
    let shape = LayerShape::post_norm(act);
    encoder_layer_dyn(
        kernel,
        dims,
        layer,
        0,
        shape,
        aq,
        seqs,
        x,
        s,
        &mut NoObserver,
    );
}

/// The sequences of a ragged batch, back to back without padding: sequence `s` is tokens
/// `offsets[s]..offsets[s + 1]` of every `tokens x width` buffer. The linear layers run over
/// all tokens at once (their rows are independent: each token's activations are quantized on
/// their own and its sums are exact), attention, pooling and heads per sequence.
///
/// ```
/// let seqs = dynq_runtime::ops::bert::Ragged::new(&[0, 3, 10]);
/// assert_eq!((seqs.count(), seqs.tokens(), seqs.len(1), seqs.start(1)), (2, 10, 7, 3));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Ragged<'a> {
    offsets: &'a [usize],
}

impl<'a> Ragged<'a> {
    /// The batch whose sequence `s` spans `offsets[s]..offsets[s + 1]`; `offsets` starts at 0
    /// and does not decrease.
    pub fn new(offsets: &'a [usize]) -> Self {
        assert!(
            offsets.first() == Some(&0) && offsets.windows(2).all(|w| w[0] <= w[1]),
            "ragged offsets start at 0 and ascend"
        );
        Ragged { offsets }
    }

    /// The offsets: one more than the sequences.
    pub fn offsets(&self) -> &'a [usize] {
        self.offsets
    }

    /// Sequences in the batch.
    pub fn count(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Tokens of the whole batch: the row count of its linear layers.
    pub fn tokens(&self) -> usize {
        self.offsets[self.offsets.len() - 1]
    }

    /// First token of sequence `s`.
    pub fn start(&self, s: usize) -> usize {
        self.offsets[s]
    }

    /// Tokens of sequence `s`.
    pub fn len(&self, s: usize) -> usize {
        self.offsets[s + 1] - self.offsets[s]
    }

    /// Whether the batch has no token.
    pub fn is_empty(&self) -> bool {
        self.tokens() == 0
    }

    /// The longest sequence's length among those that `keep` accepts (0 if none).
    pub fn longest(&self, keep: impl Fn(usize) -> bool) -> usize {
        (0..self.count())
            .map(|s| self.len(s))
            .filter(|&l| keep(l))
            .max()
            .unwrap_or(0)
    }

    /// Where sequence `s`'s relative position bias starts in a buffer holding each sequence's
    /// `heads x (2 len - 1)` values in turn ([`relative_position_bias`] per sequence).
    pub fn relative_start(&self, s: usize, heads: usize) -> usize {
        heads * (2 * self.offsets[s] - s)
    }
}

/// Sequences shorter than this run their attention on one thread, a sequence per block of the
/// threads' work ([`ragged_attention`]); longer ones split their query rows across the
/// threads. A sequence's result is the same either way (every output row depends only on its
/// query), and which way a sequence goes depends only on its length, never on its batch.
pub const SHORT_SEQUENCE: usize = 64;

/// The `scores` scratch [`ragged_attention`] needs for the batch `seqs` on `threads` threads:
/// a score block per thread for the long sequences, and per thread a score block and the keys
/// of one short sequence.
pub fn ragged_scores_len(seqs: Ragged<'_>, hidden: usize, threads: usize) -> usize {
    let long = seqs.longest(|l| l >= SHORT_SEQUENCE);
    let short = seqs.longest(|l| l < SHORT_SEQUENCE);
    let long = if long > 0 {
        scores_len(long, threads)
    } else {
        0
    };
    long.max(threads * short_piece(short, hidden))
}

/// One thread's scratch for the attention of a short sequence of up to `len` tokens.
fn short_piece(len: usize, hidden: usize) -> usize {
    if len == 0 {
        0
    } else {
        scores_len(len, 1) + len * hidden
    }
}

/// Self-attention of every sequence of a ragged batch: `qkv` and `ctx` hold the batch's
/// tokens back to back, `mask` one bias per token, `relative` (MPNet) each sequence's
/// `heads x (2 len - 1)` bias in turn, `window` the sliding window of a local layer
/// ([`ScoreBias::window`]). Sequences of [`SHORT_SEQUENCE`] tokens or more run one
/// after the other, each split across the threads (on the AMX tiles for INT8 models:
/// `tiles`); shorter ones run a whole sequence per thread at a time, so that a batch of short
/// sentences keeps every thread busy. `scores` holds [`ragged_scores_len`] values, `kt` and
/// `spare` are free buffers of `(tokens + KEY_ROW_PAD) x hidden` ([`KEY_ROW_PAD`]) and
/// `tokens x intermediate` values.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn ragged_attention<Kn: Kernel, D: Dims>(
    kernel: Kn,
    dims: D,
    tiles: bool,
    qkv: &[f32],
    seqs: Ragged<'_>,
    mask: &[f32],
    relative: Option<&[f32]>,
    window: Option<usize>,
    scores: &mut [f32],
    kt: &mut [f32],
    spare: &mut [f32],
    ctx: &mut [f32],
) {
    let (h, heads) = (dims.hidden(), dims.heads());
    // The bf16 tiles compute every key: sliding-window layers take the f32 path, which
    // computes only the window.
    let tiles = tiles && window.is_none();
    let short = seqs.longest(|l| l < SHORT_SEQUENCE);
    if short > 0 {
        let piece = short_piece(short, h);
        let task = ShortAttention {
            kernel,
            dims,
            tiles,
            qkv,
            seqs,
            mask,
            relative,
            window,
        };
        crate::threads::for_each_span(
            kernel,
            seqs.offsets(),
            h,
            &mut ctx[..seqs.tokens() * h],
            scores,
            piece,
            &task,
        );
    }
    for s in 0..seqs.count() {
        let len = seqs.len(s);
        if len < SHORT_SEQUENCE {
            continue;
        }
        let start = seqs.start(s);
        let bias = sequence_bias(seqs, s, heads, mask, relative, window);
        let (qkv, ctx) = (
            &qkv[start * 3 * h..(start + len) * 3 * h],
            &mut ctx[start * h..(start + len) * h],
        );
        if tiles {
            attention_bf16(kernel, dims, qkv, len, bias, scores, kt, spare, ctx);
        } else {
            attention(kernel, dims, qkv, len, bias, scores, kt, ctx);
        }
    }
}

/// Sequence `s`'s part of a ragged batch's mask and relative bias.
#[inline(always)]
fn sequence_bias<'a>(
    seqs: Ragged<'_>,
    s: usize,
    heads: usize,
    mask: &'a [f32],
    relative: Option<&'a [f32]>,
    window: Option<usize>,
) -> ScoreBias<'a> {
    let (start, len) = (seqs.start(s), seqs.len(s));
    ScoreBias {
        mask: &mask[start..start + len],
        relative: relative.map(|r| &r[seqs.relative_start(s, heads)..][..heads * (2 * len - 1)]),
        window,
    }
}

/// [`ragged_attention`] of the short sequences: block `s` of the threads' work is sequence
/// `s` (long sequences' blocks do nothing; they run afterwards).
struct ShortAttention<'a, Kn, D> {
    kernel: Kn,
    dims: D,
    tiles: bool,
    qkv: &'a [f32],
    seqs: Ragged<'a>,
    mask: &'a [f32],
    relative: Option<&'a [f32]>,
    window: Option<usize>,
}

impl<Kn: Kernel, D: Dims> crate::kernels::BlockTask for ShortAttention<'_, Kn, D> {
    #[inline(always)]
    fn run(&self, first_row: usize, ctx: &mut [f32], scratch: &mut [f32]) {
        let (h, heads) = (self.dims.hidden(), self.dims.heads());
        let seqs = self.seqs;
        // The block starting at `first_row` is the first sequence starting there that has
        // tokens (empty sequences are refused before a forward; an empty block is nothing).
        let s = seqs.offsets()[..seqs.count()].partition_point(|&o| o < first_row);
        if ctx.is_empty() || s >= seqs.count() {
            return;
        }
        let len = seqs.len(s);
        if len >= SHORT_SEQUENCE {
            return;
        }
        let bias = sequence_bias(seqs, s, heads, self.mask, self.relative, self.window);
        let qkv = &self.qkv[first_row * 3 * h..(first_row + len) * 3 * h];
        let (scores, kt) = scratch.split_at_mut(scores_len(len, 1));
        let kt = &mut kt[..len * h];
        // The same calls a sequence alone makes: below SHORT_SEQUENCE tokens both run on
        // this thread, and `attention_bf16` takes the f32 path.
        if self.tiles {
            attention_bf16(
                self.kernel,
                self.dims,
                qkv,
                len,
                bias,
                scores,
                kt,
                &mut [],
                ctx,
            );
        } else {
            attention(self.kernel, self.dims, qkv, len, bias, scores, kt, ctx);
        }
    }
}

/// The sizes of an encoder, as values: [`encoder_layer_dyn`]'s counterpart of
/// [`encoder_layer`]'s const parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderDims {
    /// Hidden width.
    pub hidden: usize,
    /// Attention heads (dividing `hidden`).
    pub heads: usize,
    /// FFN width.
    pub intermediate: usize,
}

/// A linear layer of an encoder, as [`LinearObserver`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncoderLinear {
    /// The embedding projection (ELECTRA's `embeddings_project`).
    Projection,
    /// The fused Q, K, V projection of a layer.
    Qkv,
    /// The attention output projection of a layer.
    AttnOut,
    /// The FFN up-projection of a layer, with its activation.
    FfnUp,
    /// The FFN down-projection of a layer.
    FfnDown,
    /// The classification head's dense layer (BERT's pooler), with its activation.
    HeadDense,
    /// The classification head's output layer.
    HeadOut,
}

/// Watches the linear layers of an encoder as they run: `layer` is the encoder layer's index
/// (0 outside the layers), `input` the linear's `rows x k` input and `output` its `rows x n`
/// result (after the activation). `dynq report` measures quantization error with it;
/// generated code runs without one.
pub trait LinearObserver {
    /// Whether [`Self::linear`] looks at anything. Without an observer the residual add and
    /// norm run inside the GEMM's row blocks, and the raw layer output is never whole.
    const ACTIVE: bool = true;

    /// Called once per linear layer, in order.
    fn linear(&mut self, layer: usize, which: EncoderLinear, input: &[f32], output: &[f32]);
}

/// The observer of generated code: sees nothing, costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl LinearObserver for NoObserver {
    const ACTIVE: bool = false;

    #[inline(always)]
    fn linear(&mut self, _: usize, _: EncoderLinear, _: &[f32], _: &[f32]) {}
}

/// The widths the encoder ops need: constants in generated code (a private const-generic
/// type), values in tools ([`EncoderDims`]). Inlined with constants, the loops compile as if
/// written with them.
pub trait Dims: Copy + Sync {
    /// Hidden width.
    fn hidden(self) -> usize;
    /// Attention heads.
    fn heads(self) -> usize;
    /// FFN width.
    fn intermediate(self) -> usize;
}

/// Encoder widths as constants: what generated code passes as [`Dims`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ConstDims<const H: usize, const HEADS: usize, const I: usize>;

impl<const H: usize, const HEADS: usize, const I: usize> Dims for ConstDims<H, HEADS, I> {
    #[inline(always)]
    fn hidden(self) -> usize {
        H
    }
    #[inline(always)]
    fn heads(self) -> usize {
        HEADS
    }
    #[inline(always)]
    fn intermediate(self) -> usize {
        I
    }
}

impl Dims for EncoderDims {
    #[inline(always)]
    fn hidden(self) -> usize {
        self.hidden
    }
    #[inline(always)]
    fn heads(self) -> usize {
        self.heads
    }
    #[inline(always)]
    fn intermediate(self) -> usize {
        self.intermediate
    }
}

/// How an encoder's layers are put together (the same for all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    /// The FFN activation.
    pub act: Activation,
    /// Pre-norm layers (ModernBERT): `x += attn(norm1(x)); x += ffn(norm2(x))`, the
    /// encoder's final norm after the last layer. Otherwise post-norm (BERT):
    /// `x = norm1(x + attn(x)); x = norm2(x + ffn(x))`.
    pub pre_norm: bool,
    /// A gated FFN (GeGLU): the up-projection gives `[input | gate]` and `act(input) * gate`
    /// goes down. Otherwise `act(up(x))` goes down.
    pub gated: bool,
}

impl LayerShape {
    /// BERT's layers: post-norm, plain FFN with `act`.
    pub const fn post_norm(act: Activation) -> Self {
        LayerShape {
            act,
            pre_norm: false,
            gated: false,
        }
    }
}

/// One encoder layer over a ragged batch `seqs`, in place on `x` (`tokens x H`): the linear
/// layers over all tokens, attention per sequence ([`ragged_attention`]). The sizes come as
/// [`Dims`] (constants in generated code, values in `dynq report`), and `observer` sees each
/// linear layer. A sequence's rows come out the same whatever else is in the batch.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn encoder_layer_dyn<Kn: Kernel, D: Dims, O: LinearObserver>(
    kernel: Kn,
    dims: D,
    layer: &EncoderLayer<'_>,
    index: usize,
    shape: LayerShape,
    aq: ActQuant,
    seqs: Ragged<'_>,
    x: &mut [f32],
    s: &mut EncoderScratch<'_>,
    observer: &mut O,
) {
    let (h, i) = (dims.hidden(), dims.intermediate());
    let len = seqs.tokens();
    let x = &mut x[..len * h];
    let (qkv, ctx, tmp) = (
        &mut s.qkv[..len * 3 * h],
        &mut s.ctx[..len * h],
        &mut s.tmp[..len * h],
    );
    let q = &mut s.quant;
    let none = Activation::None;
    let region = trace::region(Op::Qkv);
    // Pre-norm: the attention's input is norm1(x) (in tmp), or x where there is no norm1.
    let pre = match (shape.pre_norm, &layer.norm1) {
        (true, Some(norm)) => {
            let _timer = trace::time(Part::ResidualNorm);
            trace::work(Part::ResidualNorm, len * h, len * h * 8);
            tmp.copy_from_slice(x);
            layer_norm_dyn(tmp, h, norm);
            true
        }
        _ => false,
    };
    let input: &[f32] = if pre { tmp } else { x };
    let post = match layer.rotary {
        Some(rotary) => Post::Rotary {
            rotary,
            seqs,
            heads: dims.heads(),
        },
        None => Post::None,
    };
    linear_post(
        kernel,
        h,
        3 * h,
        input,
        len,
        &layer.qkv,
        none,
        aq,
        q,
        qkv,
        post,
    );
    observer.linear(index, EncoderLinear::Qkv, input, qkv);
    drop(region);
    let region = trace::region(if layer.window.is_some() {
        Op::LocalAttention
    } else {
        Op::Attention
    });
    // INT8 models: bf16 products where the CPU has AMX tiles (`ffn` is free until the FFN
    // and holds the packed keys and values; `tmp` the transposed keys).
    let tiles = matches!(layer.qkv, Linear::Int8(_));
    ragged_attention(
        kernel,
        dims,
        tiles,
        qkv,
        seqs,
        s.mask_bias,
        s.relative,
        layer.window,
        s.scores,
        // The transposed keys' rows are padded (`key_stride`): the whole buffer.
        &mut *s.tmp,
        &mut s.ffn[..len * i],
        ctx,
    );
    drop(region);
    // One call site per linear for both arrangements (each instantiates the whole GEMM per
    // kernel): what differs is the epilogue and where the rows go.
    let up = if shape.gated { 2 * i } else { i };
    let (q, ctx, tmp, ffn) = (
        &mut s.quant,
        &mut s.ctx[..len * h],
        &mut s.tmp[..len * h],
        &mut s.ffn[..len * up],
    );
    let norm1 = layer.norm1.as_ref();
    // Pre-norm: `x + sublayer` becomes x, and its norm the next sublayer's input in tmp.
    let next_input = |x: &mut [f32], tmp: &mut [f32], norm: &LayerNorm<'_>| {
        let _timer = trace::time(Part::ResidualNorm);
        trace::work(Part::ResidualNorm, x.len(), x.len() * 12);
        x.copy_from_slice(tmp);
        layer_norm_dyn(tmp, h, norm);
    };
    // Attention output: post-norm tmp = norm1(x + attn_out(ctx)); pre-norm tmp = x + attn_out.
    let region = trace::region(Op::AttnOut);
    if O::ACTIVE {
        // The raw product for the observer, then the same arithmetic.
        linear_dyn(kernel, h, h, ctx, len, &layer.attn_out, none, aq, q, tmp);
        observer.linear(index, EncoderLinear::AttnOut, ctx, tmp);
        residual(tmp, x, if shape.pre_norm { None } else { norm1 }, h);
    } else {
        let post = match (shape.pre_norm, norm1) {
            (false, Some(norm)) => Post::ResidualNorm { residual: x, norm },
            _ => Post::Add { residual: x },
        };
        linear_post(
            kernel,
            h,
            h,
            ctx,
            len,
            &layer.attn_out,
            none,
            aq,
            q,
            tmp,
            post,
        );
    }
    if shape.pre_norm {
        next_input(x, tmp, &layer.norm2);
    }
    drop(region);
    // FFN up from tmp: the activation in the GEMM's epilogue, or the gate after it.
    let region = trace::region(Op::FfnUp);
    let (act, post) = if shape.gated {
        (none, Post::Gated { act: shape.act })
    } else {
        (shape.act, Post::None)
    };
    linear_post(
        kernel,
        h,
        up,
        tmp,
        len,
        &layer.ffn_up,
        act,
        aq,
        q,
        ffn,
        post,
    );
    if shape.gated {
        // Row r's `act(input) * gate` (its first i values) to row r of a `len x i` buffer,
        // in place: rows move down in order, each onto rows already done.
        let _timer = trace::time(Part::Gate);
        for r in 1..len {
            ffn.copy_within(r * up..r * up + i, r * i);
        }
    }
    let ffn = &ffn[..len * i];
    observer.linear(index, EncoderLinear::FfnUp, tmp, ffn);
    drop(region);
    // FFN down: post-norm x = norm2(tmp + down); pre-norm tmp = x + down, then into x.
    let _region = trace::region(Op::FfnDown);
    let (out, res): (&mut [f32], &mut [f32]) = if shape.pre_norm { (tmp, x) } else { (x, tmp) };
    if O::ACTIVE {
        linear_dyn(kernel, i, h, ffn, len, &layer.ffn_down, none, aq, q, out);
        observer.linear(index, EncoderLinear::FfnDown, ffn, out);
        let norm = (!shape.pre_norm).then_some(&layer.norm2);
        residual(out, res, norm, h);
    } else {
        let post = if shape.pre_norm {
            Post::Add { residual: res }
        } else {
            Post::ResidualNorm {
                residual: res,
                norm: &layer.norm2,
            }
        };
        linear_post(
            kernel,
            i,
            h,
            ffn,
            len,
            &layer.ffn_down,
            none,
            aq,
            q,
            out,
            post,
        );
    }
    if shape.pre_norm {
        let _timer = trace::time(Part::ResidualNorm);
        res.copy_from_slice(out);
    }
}

/// `out = norm(out + residual)` (or without the norm), as [`Post::ResidualNorm`] and
/// [`Post::Add`] do inside the GEMM's blocks.
#[inline(always)]
fn residual(out: &mut [f32], residual: &[f32], norm: Option<&LayerNorm<'_>>, h: usize) {
    let _timer = trace::time(Part::ResidualNorm);
    trace::work(Part::ResidualNorm, out.len(), out.len() * 12);
    add_in_place(out, residual);
    if let Some(norm) = norm {
        layer_norm_dyn(out, h, norm);
    }
}

#[inline(always)]
fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Mean of the rows of `x` (`len x H`) over the attended tokens.
#[inline(always)]
pub fn mean_pool<const H: usize>(x: &[f32], input: &BertInput<'_>, len: usize, out: &mut [f32]) {
    mean_pool_dyn(x, H, input, len, out);
}

/// [`mean_pool`] over rows of width `h` given as a value.
#[inline(always)]
pub fn mean_pool_dyn(x: &[f32], h: usize, input: &BertInput<'_>, len: usize, out: &mut [f32]) {
    let out = &mut out[..h];
    out.fill(0.0);
    let mut count = 0usize;
    for (i, row) in x[..len * h].chunks_exact(h).enumerate() {
        if input.attends(i) {
            count += 1;
            for (o, v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
    }
    let inv = 1.0 / count.max(1) as f32;
    for o in out {
        *o *= inv;
    }
}

/// Scales `v` to unit L2 norm (a zero vector stays zero), like `F.normalize`.
///
/// ```
/// let mut v = [3.0, 4.0];
/// dynq_runtime::ops::bert::l2_normalize(&mut v);
/// assert_eq!(v, [0.6, 0.8]);
/// ```
#[inline(always)]
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    let inv = (1.0 / norm.max(1e-12)) as f32;
    for x in v {
        *x *= inv;
    }
}
