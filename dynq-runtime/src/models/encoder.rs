//! The transformer encoder of every BERT-like family (BERT, RoBERTa, XLM-R, DistilBERT, MPNet,
//! ELECTRA): embeddings, post-norm layers, pooling and a classification head, as one driver.
//!
//! A family is data ([`Encoder`]: which pieces it has, their weights and options), not code:
//! position ids with or without RoBERTa's padding offset, token types or none, an embedding
//! projection (ELECTRA), a relative position bias added to every layer's scores (MPNet), the
//! FFN activation, and the head's activation (BERT and RoBERTa: tanh, DistilBERT: ReLU,
//! ELECTRA: GELU). Generated code calls [`forward`] with its sizes as constants; `dynq report`
//! calls the same function with sizes as values and an observer.

use crate::kernels::Kernel;
use crate::ops::bert::{
    embed_dyn, encoder_layer_dyn, l2_normalize, mask_bias, mean_pool_dyn, relative_position_bias,
    scores_len, Dims, Embeddings, EncoderLayer, EncoderLinear, EncoderScratch, LinearObserver,
};
use crate::ops::{linear_dyn, ActQuant, Activation, Linear, QuantScratch};
use crate::quant::padded_k;
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

/// A sequence-classification head on the first token: `out(act(dense(x[0])))`.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// BERT's pooler, RoBERTa's and ELECTRA's `classifier.dense`, DistilBERT's
    /// `pre_classifier`.
    pub dense: Linear<'a>,
    /// Its activation: tanh, ReLU or GELU by family.
    pub act: Activation,
    /// The layer that gives the logits.
    pub out: Linear<'a>,
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
    /// The FFN activation.
    pub act: Activation,
    /// What [`forward`] writes.
    pub output: BertOutput,
    /// L2-normalize pooled outputs.
    pub normalize: bool,
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

/// The `f32` buffers of [`forward`] for `len` tokens on `threads` threads, in the order it
/// carves them from the workspace: hidden states, Q K V, context, temporary, FFN, scores,
/// mask bias, relative position bias (MPNet) and unprojected embeddings (ELECTRA).
fn buffer_lens<D: Dims>(dims: D, e: &Encoder<'_>, len: usize, threads: usize) -> [usize; 9] {
    let (h, i) = (dims.hidden(), dims.intermediate());
    let rel = match e.relative {
        Some(_) => dims.heads() * (2 * len - 1),
        None => 0,
    };
    let emb = match e.projection {
        Some(_) => len * e.embedding_width,
        None => 0,
    };
    [
        len * h,
        len * 3 * h,
        len * h,
        len * h,
        len * i,
        scores_len(len, threads),
        len,
        rel,
        emb,
    ]
}

/// The `f32` values [`forward`] takes from the workspace for `len` tokens on `threads` threads.
pub fn scratch_len<D: Dims>(dims: D, e: &Encoder<'_>, len: usize, threads: usize) -> usize {
    buffer_lens(dims, e, len, threads).iter().sum()
}

/// The quantized values [`forward`] takes from the workspace for `len` tokens.
pub fn quant_len<D: Dims>(dims: D, e: &Encoder<'_>, len: usize) -> usize {
    let widest = padded_k(dims.hidden())
        .max(padded_k(dims.intermediate()))
        .max(padded_k(e.embedding_width));
    len * widest
}

/// Length of [`forward`]'s output for `len` tokens.
pub fn output_len<D: Dims>(dims: D, e: &Encoder<'_>, len: usize) -> usize {
    match (e.output, &e.head) {
        (BertOutput::LastHiddenState, _) => len * dims.hidden(),
        (BertOutput::Logits, Some(head)) => head.out.n(),
        _ => dims.hidden(),
    }
}

/// Runs one sequence through the encoder: checks nothing (the caller checked `input` against
/// the model's sizes and `out` against [`output_len`]); takes its scratch from `ws`; `observer`
/// sees every linear layer.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn forward<K: Kernel, D: Dims, O: LinearObserver>(
    kernel: K,
    dims: D,
    e: &Encoder<'_>,
    aq: ActQuant,
    input: &BertInput<'_>,
    ws: &mut Workspace,
    out: &mut [f32],
    observer: &mut O,
) {
    let len = input.input_ids.len();
    let (h, heads) = (dims.hidden(), dims.heads());
    let lens = buffer_lens(dims, e, len, crate::kernels::threads());
    let buf = ws.buffers(lens.iter().sum(), quant_len(dims, e, len), len);
    let [x, qkv, ctx, tmp, ffn, scores, mask, rel, emb] = crate::split_mut(buf.f32, lens);
    let mut quant = QuantScratch {
        quant: buf.quant,
        scales: buf.scales,
        zero_points: buf.zero_points,
    };
    match &e.projection {
        Some(p) => {
            embed_dyn(&e.embeddings, input, e.embedding_width, emb);
            let none = Activation::None;
            linear_dyn(
                kernel,
                e.embedding_width,
                h,
                emb,
                len,
                p,
                none,
                aq,
                &mut quant,
                x,
            );
            observer.linear(0, EncoderLinear::Projection, emb, x);
        }
        None => embed_dyn(&e.embeddings, input, h, x),
    }
    mask_bias(input, len, mask);
    if let Some(r) = &e.relative {
        relative_position_bias(r.table, r.num_buckets, r.max_distance, heads, len, rel);
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
            kernel, dims, layer, index, e.act, aq, len, x, &mut s, observer,
        );
    }
    let x = &*x;
    match e.output {
        BertOutput::LastHiddenState => out[..len * h].copy_from_slice(x),
        BertOutput::MeanPooled => {
            mean_pool_dyn(x, h, input, len, out);
            if e.normalize {
                l2_normalize(&mut out[..h]);
            }
        }
        BertOutput::Cls => {
            out[..h].copy_from_slice(&x[..h]);
            if e.normalize {
                l2_normalize(&mut out[..h]);
            }
        }
        BertOutput::Logits => {
            let head = e.head.as_ref().expect("a logits model has a head");
            let pooled = &mut s.tmp[..head.dense.n()];
            let first = &x[..h];
            let q = &mut s.quant;
            let none = Activation::None;
            let (dn, on) = (head.dense.n(), head.out.n());
            linear_dyn(
                kernel,
                h,
                dn,
                first,
                1,
                &head.dense,
                head.act,
                aq,
                q,
                pooled,
            );
            observer.linear(0, EncoderLinear::HeadDense, first, pooled);
            let out = &mut out[..on];
            linear_dyn(kernel, dn, on, pooled, 1, &head.out, none, aq, q, out);
            observer.linear(0, EncoderLinear::HeadOut, pooled, out);
        }
    }
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
/// [`forward`] on the best kernel in `kernels` with the workspace `ws`: what generated code's
/// `forward` does.
pub fn run<D: Dims + Send>(
    dims: D,
    e: &Encoder<'_>,
    aq: ActQuant,
    kernels: &[crate::KernelId],
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
    crate::dispatch(
        Job {
            dims,
            e,
            aq,
            input,
            ws,
            out,
        },
        kernels,
    )
}

struct Job<'a, 'w, D> {
    dims: D,
    e: &'a Encoder<'w>,
    aq: ActQuant,
    input: &'a BertInput<'a>,
    ws: &'a mut Workspace,
    out: &'a mut [f32],
}

impl<D: Dims + Send> crate::Job for Job<'_, '_, D> {
    type Output = ();

    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) {
        let Job {
            dims,
            e,
            aq,
            input,
            ws,
            out,
        } = self;
        forward(
            kernel,
            dims,
            e,
            aq,
            input,
            ws,
            out,
            &mut crate::ops::bert::NoObserver,
        );
    }
}
