//! The transformer encoder of every BERT-like family (BERT, RoBERTa, XLM-R, DistilBERT, MPNet,
//! ELECTRA): embeddings, post-norm layers, pooling and a classification head, as one driver.
//!
//! A family is data ([`Encoder`]: which pieces it has, their weights and options), not code:
//! position ids with or without RoBERTa's padding offset, token types or none, an embedding
//! projection (ELECTRA), a relative position bias added to every layer's scores (MPNet), the
//! FFN activation, and the head's activation (BERT and RoBERTa: tanh, DistilBERT: ReLU,
//! ELECTRA: GELU). Generated code calls [`forward`] with its sizes as constants; `dynq report`
//! calls the same function with sizes as values and an observer. One forward runs a ragged
//! batch: several sequences back to back, without padding ([`run_batch`]).

use crate::kernels::{Kernel, KernelSet};
use crate::ops::bert::EncoderDims;
use crate::ops::bert::{
    embed_dyn, encoder_layer_dyn, l2_normalize, layer_norm_dyn, mask_bias, mean_pool_dyn,
    ragged_scores_len, relative_position_bias, Dims, Embeddings, EncoderLayer, EncoderLinear,
    EncoderScratch, LayerNorm, LayerShape, LinearObserver, Ragged, KEY_ROW_PAD,
};
use crate::ops::{linear_dyn, ActQuant, QuantScratch};
use crate::quant::padded_k;
use crate::trace::{self, Op, Part};
use crate::types::{Activation, Linear};
use crate::KernelId;
use crate::{BertInput, BertOutput, Error, Workspace};

/// MPNet's relative position bias: one learned value per bucket and head.
#[derive(Debug, Clone, Copy)]
pub struct RelativeBias<'a> {
    /// `[num_buckets][heads]` (the `relative_attention_bias` embedding).
    pub table: &'a [f32],
    /// Buckets (`relative_attention_num_buckets`, 32 in MPNet).
    pub num_buckets: usize,
    /// Distance from which all positions share the last bucket (128 in MPNet).
    pub max_distance: usize,
}

/// A sequence-classification head: `out(norm(act(dense(pool(x)))))`, the norm only where
/// the family has one (ModernBERT).
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Which row the head reads: the first token's, or the mean over the mask.
    pub pooling: HeadPooling,
    /// BERT's pooler, RoBERTa's and ELECTRA's `classifier.dense`, DistilBERT's
    /// `pre_classifier`, ModernBERT's `head.dense`.
    pub dense: Linear<'a>,
    /// Its activation: tanh, ReLU or GELU by family.
    pub act: Activation,
    /// ModernBERT's `head.norm` after the activation.
    pub norm: Option<LayerNorm<'a>>,
    /// The layer that gives the logits.
    pub out: Linear<'a>,
}

/// The row a classification head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadPooling {
    /// The first token's (BERT-like families; ModernBERT's `classifier_pooling = "cls"`).
    First,
    /// The mean over the attended tokens (ModernBERT's `classifier_pooling = "mean"`).
    Mean,
}

/// An encoder's weights and the choices its family makes.
#[derive(Debug, Clone)]
pub struct Encoder<'a> {
    /// Word, position and token-type tables and their norm.
    pub embeddings: Embeddings<'a>,
    /// Width of the embedding tables (the hidden width unless there is a projection).
    pub embedding_width: usize,
    /// ELECTRA's `embeddings_project` (embedding width to hidden width), if present.
    pub projection: Option<Linear<'a>>,
    /// MPNet's relative position bias, if present.
    pub relative: Option<RelativeBias<'a>>,
    /// The layers, in order.
    pub layers: Vec<EncoderLayer<'a>>,
    /// How the layers are put together: FFN activation, pre- or post-norm, gated FFN.
    pub shape: LayerShape,
    /// The norm after the last layer (pre-norm encoders).
    pub final_norm: Option<LayerNorm<'a>>,
    /// What [`forward`] writes.
    pub output: BertOutput,
    /// L2-normalize pooled outputs.
    pub normalize: bool,
    /// Matryoshka truncation of pooled outputs: their first `dims` values, L2-normalized
    /// again (`None`: the whole hidden width).
    pub dims: Option<usize>,
    /// The classification head (required for [`BertOutput::Logits`]).
    pub head: Option<Head<'a>>,
    /// Vocabulary size: larger token ids are refused.
    pub vocab: usize,
    /// Token types (0 without a token-type table: only type 0 is accepted then).
    pub type_vocab: usize,
    /// Longest input accepted.
    pub max_seq_len: usize,
    /// The padding token id: ids that end with it are refused unless a mask comes with them
    /// (padding read as text gives a wrong result, not an error).
    pub pad_id: Option<u32>,
}

/// The `f32` buffers of [`forward`] for the batch `seqs` on `threads` threads, in the order it
/// carves them from the workspace: hidden states, Q K V, context, temporary, FFN, scores,
/// mask bias, relative position bias (MPNet), unprojected embeddings (ELECTRA) and the head's
/// rows (pooled rows, then the dense layer's output; or one pooled vector before its
/// Matryoshka truncation).
fn buffer_lens<D: Dims>(dims: D, e: &Encoder<'_>, seqs: Ragged<'_>, threads: usize) -> [usize; 10] {
    let (h, i, t, b) = (
        dims.hidden(),
        dims.intermediate(),
        seqs.tokens(),
        seqs.count(),
    );
    let rel = match e.relative {
        Some(_) => seqs.relative_start(b, dims.heads()),
        None => 0,
    };
    let emb = match e.projection {
        Some(_) => t * e.embedding_width,
        None => 0,
    };
    let head = match (&e.head, e.output) {
        (Some(head), BertOutput::Logits) => b * (h + head.dense.n()),
        // A pooled vector before its truncation.
        (_, BertOutput::MeanPooled | BertOutput::Cls) if e.dims.is_some() => h,
        _ => 0,
    };
    let up = if e.shape.gated { 2 * i } else { i };
    [
        t * h,
        t * 3 * h,
        t * h,
        // Also the transposed keys of the longest sequence, rows padded (`key_stride`).
        (t + KEY_ROW_PAD) * h,
        t * up,
        ragged_scores_len(seqs, h, threads),
        t,
        rel,
        emb,
        head,
    ]
}

/// The `f32` values [`forward`] takes from the workspace for the batch `seqs` on `threads`
/// threads.
pub fn scratch_len<D: Dims>(dims: D, e: &Encoder<'_>, seqs: Ragged<'_>, threads: usize) -> usize {
    buffer_lens(dims, e, seqs, threads).iter().sum()
}

/// The quantized values [`forward`] takes from the workspace for `tokens` tokens.
pub fn quant_len<D: Dims>(dims: D, e: &Encoder<'_>, tokens: usize) -> usize {
    let widest = padded_k(dims.hidden())
        .max(padded_k(dims.intermediate()))
        .max(padded_k(e.embedding_width));
    tokens * widest
}

/// Values [`forward`] writes per sequence of `len` tokens: `len x hidden` for the last hidden
/// state, else the pooled vector (truncated to [`Encoder::dims`]) or the logits.
pub fn output_len<D: Dims>(dims: D, e: &Encoder<'_>, len: usize) -> usize {
    match (e.output, &e.head) {
        (BertOutput::LastHiddenState, _) => len * dims.hidden(),
        (BertOutput::Logits, Some(head)) => head.out.n(),
        _ => e.dims.unwrap_or(dims.hidden()),
    }
}

/// Runs a ragged batch through the encoder: `inputs` back to back, no padding computed. The
/// linear layers run over all the batch's tokens (GEMM rows = total tokens), embeddings,
/// attention, pooling and the head per sequence. `out` receives each sequence's
/// [`output_len`] values in turn. Checks nothing (the caller checked each input against the
/// model's sizes, none empty, and `out`'s length); takes its scratch from `ws`; `observer`
/// sees every linear layer.
///
/// A sequence's output is bit-identical alone and in any batch, at any position, on any
/// thread count: each token's activations are quantized on their own and its integer sums are
/// exact, the f32 epilogues and norms work per row, and attention runs per sequence by a path
/// chosen by the sequence's own length ([`SHORT_SEQUENCE`](crate::ops::bert::SHORT_SEQUENCE)). (With per-tensor activation
/// scales a batch would share one scale: [`run_batch`] then runs the sequences one by one.)
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn forward<K: Kernel, D: Dims, O: LinearObserver>(
    kernel: K,
    dims: D,
    e: &Encoder<'_>,
    aq: ActQuant,
    inputs: &[BertInput<'_>],
    ws: &mut Workspace,
    out: &mut [f32],
    observer: &mut O,
) {
    // Lent by the workspace and given back at the end: no allocation once warm.
    let offsets = ws.take_offsets(inputs.iter().map(|i| i.input_ids.len()));
    let seqs = Ragged::new(&offsets);
    let (tokens, count) = (seqs.tokens(), seqs.count());
    let (h, heads, ew) = (dims.hidden(), dims.heads(), e.embedding_width);
    let lens = buffer_lens(dims, e, seqs, crate::threads::count());
    let buf = ws.buffers(lens.iter().sum(), quant_len(dims, e, tokens), tokens);
    let [x, qkv, ctx, tmp, ffn, scores, mask, rel, emb, head_rows] =
        crate::split_mut(buf.f32, lens);
    let mut quant = QuantScratch {
        quant: buf.quant,
        scales: buf.scales,
        zero_points: buf.zero_points,
    };
    trace::kernel(K::ID);
    let region = trace::region(Op::Embeddings);
    let timer = trace::time(Part::Lookup);
    // At least the word rows come from memory (the tables are far larger than the caches).
    trace::work(Part::Lookup, tokens * ew, tokens * ew * 4);
    for (s, input) in inputs.iter().enumerate() {
        let (start, len) = (seqs.start(s), seqs.len(s));
        match &e.projection {
            Some(_) => embed_dyn(
                &e.embeddings,
                input,
                ew,
                &mut emb[start * ew..(start + len) * ew],
            ),
            None => embed_dyn(
                &e.embeddings,
                input,
                h,
                &mut x[start * h..(start + len) * h],
            ),
        }
        mask_bias(input, len, &mut mask[start..start + len]);
        if let Some(r) = &e.relative {
            let at = seqs.relative_start(s, heads);
            let rel = &mut rel[at..at + heads * (2 * len - 1)];
            relative_position_bias(r.table, r.num_buckets, r.max_distance, heads, len, rel);
        }
    }
    drop((timer, region));
    if let Some(p) = &e.projection {
        let _region = trace::region(Op::Projection);
        let none = Activation::None;
        linear_dyn(kernel, ew, h, emb, tokens, p, none, aq, &mut quant, x);
        observer.linear(0, EncoderLinear::Projection, emb, x);
    }
    let mut s = EncoderScratch {
        qkv,
        ctx,
        tmp,
        ffn,
        scores,
        mask_bias: mask,
        relative: e.relative.is_some().then_some(&*rel),
        quant,
    };
    for (index, layer) in e.layers.iter().enumerate() {
        encoder_layer_dyn(
            kernel, dims, layer, index, e.shape, aq, seqs, x, &mut s, observer,
        );
    }
    if let Some(norm) = &e.final_norm {
        let _region = trace::region(Op::Pooling);
        let _timer = trace::time(Part::ResidualNorm);
        trace::work(Part::ResidualNorm, tokens * h, tokens * h * 8);
        layer_norm_dyn(x, h, norm);
    }
    let x = &*x;
    match e.output {
        BertOutput::LastHiddenState => {
            let _region = trace::region(Op::Pooling);
            let _timer = trace::time(Part::Pool);
            trace::work(Part::Pool, tokens * h, tokens * h * 8);
            out[..tokens * h].copy_from_slice(x);
        }
        BertOutput::MeanPooled | BertOutput::Cls => {
            let _region = trace::region(Op::Pooling);
            let _timer = trace::time(Part::Pool);
            trace::work(Part::Pool, tokens * h, tokens * h * 4);
            let width = e.dims.unwrap_or(h);
            let pooled = &mut head_rows[..];
            for (s, input) in inputs.iter().enumerate() {
                let (start, len) = (seqs.start(s), seqs.len(s));
                let rows = &x[start * h..(start + len) * h];
                let o = &mut out[s * width..(s + 1) * width];
                // Truncated outputs pool the whole width first (mean pooling reads it all).
                let p: &mut [f32] = if width == h { o } else { &mut pooled[..h] };
                match e.output {
                    BertOutput::MeanPooled => mean_pool_dyn(rows, h, input, len, p),
                    _ => p.copy_from_slice(&rows[..h]),
                }
                if width != h {
                    o.copy_from_slice(&pooled[..width]);
                    l2_normalize(o);
                } else if e.normalize {
                    l2_normalize(o);
                }
            }
        }
        BertOutput::Logits => {
            let head = e.head.as_ref().expect("a logits model has a head");
            let (dn, on) = (head.dense.n(), head.out.n());
            // The first token of each sequence, then the head over those rows (independent rows,
            // as in the layers).
            let (first, pooled) = head_rows.split_at_mut(count * h);
            let region = trace::region(Op::HeadDense);
            for (s, input) in inputs.iter().enumerate() {
                let (start, len) = (seqs.start(s), seqs.len(s));
                let row = &mut first[s * h..(s + 1) * h];
                match head.pooling {
                    HeadPooling::First => row.copy_from_slice(&x[start * h..(start + 1) * h]),
                    HeadPooling::Mean => {
                        mean_pool_dyn(&x[start * h..(start + len) * h], h, input, len, row)
                    }
                }
            }
            let q = &mut s.quant;
            let none = Activation::None;
            let pooled = &mut pooled[..count * dn];
            linear_dyn(
                kernel,
                h,
                dn,
                first,
                count,
                &head.dense,
                head.act,
                aq,
                q,
                pooled,
            );
            observer.linear(0, EncoderLinear::HeadDense, first, pooled);
            if let Some(norm) = &head.norm {
                let _timer = trace::time(Part::ResidualNorm);
                layer_norm_dyn(pooled, dn, norm);
            }
            drop(region);
            let _region = trace::region(Op::HeadOut);
            let out = &mut out[..count * on];
            linear_dyn(kernel, dn, on, pooled, count, &head.out, none, aq, q, out);
            observer.linear(0, EncoderLinear::HeadOut, pooled, out);
        }
    }
    ws.put_offsets(offsets);
}

/// Checks `input` against the model: ids, types and mask in range, the length, and no
/// trailing padding ids without a mask (what a padding tokenizer produces: read as text, it
/// would give a wrong result, not an error). Returns the length.
pub fn check(e: &Encoder<'_>, input: &BertInput<'_>) -> Result<usize, Error> {
    let len = input.check(e.vocab, e.type_vocab.max(1), e.max_seq_len)?;
    input.check_padding(e.pad_id)?;
    Ok(len)
}

/// Checks `input` against the model ([`check`]) and `out` against [`output_len`], then runs
/// [`forward`] on the best kernel of `kernels` (the kernels the model was generated for, the
/// only ones compiled: [`Job::KERNELS`](crate::Job::KERNELS)) with the workspace `ws`: what
/// generated code's `forward` does.
pub fn run<D: Dims + Send, S: KernelSet>(
    dims: D,
    kernels: S,
    e: &Encoder<'_>,
    aq: ActQuant,
    input: &BertInput<'_>,
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<(), Error> {
    let len = check(e, input)?;
    let expected = output_len(dims, e, len);
    if out.len() != expected {
        return Err(Error::OutputLength {
            expected,
            rows: 1,
            width: expected,
            found: out.len(),
        });
    }
    dispatch(dims, kernels, e, aq, std::slice::from_ref(input), ws, out)
}

/// [`run`] over a ragged batch: checks every input (an error names the input's index: see
/// [`Error::Item`]) and `out` (each input's [`output_len`] in turn, see [`batch_output_len`]),
/// then runs the whole batch as one [`forward`]. Each input's output is bit-identical to
/// [`run`] on it alone.
pub fn run_batch<D: Dims + Send, S: KernelSet>(
    dims: D,
    kernels: S,
    e: &Encoder<'_>,
    aq: ActQuant,
    inputs: &[BertInput<'_>],
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<(), Error> {
    for (index, input) in inputs.iter().enumerate() {
        check(e, input).map_err(|error| Error::item(index, error))?;
    }
    Error::check_batch_output(batch_output_len(dims, e, inputs), inputs.len(), out.len())?;
    if inputs.is_empty() {
        return Ok(());
    }
    if aq.granularity == crate::Granularity::PerTensor {
        // One activation scale per linear input: a batch would share it and change each
        // sequence's result, so each sequence runs alone.
        let mut rest = out;
        for input in inputs {
            let (o, more) = rest.split_at_mut(output_len(dims, e, input.input_ids.len()));
            dispatch(dims, kernels, e, aq, std::slice::from_ref(input), ws, o)?;
            rest = more;
        }
        return Ok(());
    }
    dispatch(dims, kernels, e, aq, inputs, ws, out)
}

/// Whether this build of the runtime carries [`run_shared`]'s precompiled forward (feature
/// `shared-forward`). Models generated with `[target] forward = "shared"` assert it at compile
/// time, so a missing feature is a compile error that says which feature to enable.
pub const SHARED_FORWARD: bool = cfg!(feature = "shared-forward");

/// The kernels a generated model lists, chosen among at run time: the kernel set of the shared
/// forward, which is compiled for every kernel of the target once, in this crate.
#[derive(Debug, Clone, Copy)]
pub struct Listed(pub &'static [KernelId]);

impl KernelSet for Listed {
    const KERNELS: &'static [KernelId] = &KernelId::ALL;
    fn enabled(&self) -> &[KernelId] {
        self.0
    }
}

/// [`run`] with the sizes as values, compiled once in this crate (feature `shared-forward`)
/// for every kernel of the target: what models generated with `[target] forward = "shared"`
/// call. Their crate then compiles no forward of its own, so a base-size model builds in
/// seconds; the price is the constant sizes' specialization (measured in docs/performance.md).
/// `kernels` are the model's (its weights' kernels), chosen among at run time. Without the
/// feature it returns an error (generated code checks [`SHARED_FORWARD`] at compile time).
pub fn run_shared(
    dims: EncoderDims,
    kernels: &'static [KernelId],
    e: &Encoder<'_>,
    aq: ActQuant,
    input: &BertInput<'_>,
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<(), Error> {
    // A cfg, not `if SHARED_FORWARD`: without the feature the forward must not be compiled.
    #[cfg(feature = "shared-forward")]
    return run(dims, Listed(kernels), e, aq, input, ws, out);
    #[cfg(not(feature = "shared-forward"))]
    {
        let _ = (dims, kernels, e, aq, input, ws, out);
        Err(no_shared_forward())
    }
}

/// [`run_batch`] as [`run_shared`] runs [`run`].
pub fn run_batch_shared(
    dims: EncoderDims,
    kernels: &'static [KernelId],
    e: &Encoder<'_>,
    aq: ActQuant,
    inputs: &[BertInput<'_>],
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<(), Error> {
    // A cfg, not `if SHARED_FORWARD`: without the feature the forward must not be compiled.
    #[cfg(feature = "shared-forward")]
    return run_batch(dims, Listed(kernels), e, aq, inputs, ws, out);
    #[cfg(not(feature = "shared-forward"))]
    {
        let _ = (dims, kernels, e, aq, inputs, ws, out);
        Err(no_shared_forward())
    }
}

#[cfg(not(feature = "shared-forward"))]
fn no_shared_forward() -> Error {
    Error::BuildMismatch(
        "this model was generated with `[target] forward = \"shared\"`, but dynq-runtime was \
         built without its `shared-forward` feature: enable it"
            .into(),
    )
}

/// One [`forward`] of `inputs` (already checked) on the first of `kernels` this CPU has.
fn dispatch<D: Dims + Send, S: KernelSet>(
    dims: D,
    kernels: S,
    e: &Encoder<'_>,
    aq: ActQuant,
    inputs: &[BertInput<'_>],
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<(), Error> {
    crate::threads::dispatch(
        Job {
            dims,
            kernels: std::marker::PhantomData::<S>,
            e,
            aq,
            inputs,
            ws,
            out,
        },
        kernels.enabled(),
    )
}

/// The values [`run_batch`] writes for `inputs`: each input's [`output_len`], summed.
pub fn batch_output_len<D: Dims>(dims: D, e: &Encoder<'_>, inputs: &[BertInput<'_>]) -> usize {
    inputs
        .iter()
        .map(|i| output_len(dims, e, i.input_ids.len()))
        .sum()
}

struct Job<'a, 'w, D, S> {
    dims: D,
    /// The kernels compiled ([`crate::Job::KERNELS`]).
    kernels: std::marker::PhantomData<S>,
    e: &'a Encoder<'w>,
    aq: ActQuant,
    inputs: &'a [BertInput<'a>],
    ws: &'a mut Workspace,
    out: &'a mut [f32],
}

impl<D: Dims + Send, S: KernelSet> crate::Job for Job<'_, '_, D, S> {
    type Output = ();
    const KERNELS: &'static [crate::KernelId] = S::KERNELS;

    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) {
        let Job {
            dims,
            kernels: _,
            e,
            aq,
            inputs,
            ws,
            out,
        } = self;
        forward(
            kernel,
            dims,
            e,
            aq,
            inputs,
            ws,
            out,
            &mut crate::ops::bert::NoObserver,
        );
    }
}
