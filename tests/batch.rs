//! Ragged batches of the encoder driver: a sequence's output is bit-identical alone and inside
//! any batch (random lengths from 1 to past the long-sequence threshold, random order and
//! position), at 1 and 2 threads, on every kernel this machine has, for INT8 and f32 weights
//! and every piece a family can select (token types, the position offset, the embedding
//! projection, the relative bias, pooled, CLS, last-hidden-state and logits outputs, and
//! ModernBERT's pieces: pre-norm layers, rotary positions, a sliding window, a gated FFN, a
//! final norm and a mean-pooled head with a norm); and the
//! linear layers' row count is the batch's total token count (no padding computed).

use dynq_runtime::kernels::{KernelSet, Scalar};
use dynq_runtime::models::encoder::{
    batch_output_len, forward, output_len, run_batch, Encoder, Head, HeadPooling, RelativeBias,
};
use dynq_runtime::ops::bert::{
    Embeddings, EncoderDims, EncoderLayer, EncoderLinear, LayerNorm, LayerShape, LinearObserver,
    Positions, Rotary, Table, SHORT_SEQUENCE,
};
use dynq_runtime::ops::ActQuant;
use dynq_runtime::{Activation, BertInput, BertOutput, Granularity, KernelId, Scheme, Workspace};
use proptest::prelude::*;

// The runtime's test helpers (a deterministic generator, f32 and packed INT8 matrices).
#[path = "../dynq-runtime/tests/common/mod.rs"]
mod common;
use common::{Matrix, Rng};

/// A random `n x k` layer with a bias, scaled for unit-variance outputs.
fn matrix(n: usize, k: usize, rng: &mut Rng) -> Matrix {
    let w = rng.vec(n * k, 1.0 / (k as f32).sqrt());
    Matrix::new(n, k, w, Some(rng.vec(n, 0.1)))
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn new(h: usize, rng: &mut Rng) -> Self {
        Norm {
            gamma: (0..h).map(|_| 1.0 + 0.1 * rng.next()).collect(),
            beta: rng.vec(h, 0.1),
        }
    }

    fn view(&self) -> LayerNorm<'_> {
        LayerNorm {
            gamma: &self.gamma,
            beta: &self.beta,
            eps: 1e-12,
        }
    }
}

struct Layer {
    qkv: Matrix,
    attn_out: Matrix,
    norm1: Option<Norm>,
    ffn_up: Matrix,
    ffn_down: Matrix,
    norm2: Norm,
}

/// The weights of a random encoder and the family choices it makes.
struct Model {
    dims: EncoderDims,
    embedding_width: usize,
    vocab: usize,
    max_len: usize,
    word: Vec<f32>,
    position: Vec<f32>,
    positions: Positions,
    token_type: Option<Vec<f32>>,
    emb_norm: Norm,
    projection: Option<Matrix>,
    relative: Option<Vec<f32>>,
    layers: Vec<Layer>,
    output: BertOutput,
    head: Option<(Matrix, Matrix)>,
    /// ModernBERT's pieces: the rotary table and the final norm.
    modern: Option<(Vec<f32>, Norm)>,
}

/// The sliding window of the modern encoders' second layer.
const WINDOW: usize = 5;

const BUCKETS: usize = 32;

impl Model {
    #[allow(clippy::too_many_arguments)]
    fn new(
        heads: usize,
        head_width: usize,
        offset: bool,
        types: bool,
        projection: bool,
        relative: bool,
        output: BertOutput,
        modern: bool,
        seed: u64,
    ) -> Self {
        let mut rng = Rng(seed);
        let h = heads * head_width;
        // ModernBERT has no position table, token types, projection or relative bias.
        let (offset, types, projection, relative) = if modern {
            (false, false, false, false)
        } else {
            (offset, types, projection, relative)
        };
        let dims = EncoderDims {
            hidden: h,
            heads,
            intermediate: 2 * h + 4,
        };
        let ew = if projection { h / 2 + 3 } else { h };
        let (vocab, max_len) = (40, SHORT_SEQUENCE + 20);
        let positions = if modern {
            Positions::None
        } else if offset {
            Positions::AfterPadding { padding_idx: 1 }
        } else {
            Positions::Absolute
        };
        let up = if modern { 2 } else { 1 } * dims.intermediate;
        let layers = (0..2)
            .map(|l| Layer {
                qkv: matrix(3 * h, h, &mut rng),
                attn_out: matrix(h, h, &mut rng),
                norm1: (!modern || l > 0).then(|| Norm::new(h, &mut rng)),
                ffn_up: matrix(up, h, &mut rng),
                ffn_down: matrix(h, dims.intermediate, &mut rng),
                norm2: Norm::new(h, &mut rng),
            })
            .collect();
        Model {
            dims,
            embedding_width: ew,
            vocab,
            max_len,
            word: rng.vec(vocab * ew, 1.0),
            position: rng.vec(positions.rows_needed(max_len) * ew, 0.5),
            positions,
            token_type: types.then(|| rng.vec(2 * ew, 0.5)),
            emb_norm: Norm::new(ew, &mut rng),
            projection: projection.then(|| matrix(h, ew, &mut rng)),
            relative: relative.then(|| rng.vec(BUCKETS * heads, 0.5)),
            layers,
            output,
            head: (output == BertOutput::Logits)
                .then(|| (matrix(h, h, &mut rng), matrix(3, h, &mut rng))),
            modern: modern.then(|| {
                // Angles position / 10^c: cos and sin of every head lane at every position.
                let half = head_width / 2;
                let mut table = Vec::new();
                for p in 0..max_len {
                    let angles: Vec<f32> =
                        (0..half).map(|c| p as f32 / 10f32.powi(c as i32)).collect();
                    table.extend(angles.iter().map(|a| a.cos()));
                    table.extend(angles.iter().map(|a| a.sin()));
                }
                (table, Norm::new(h, &mut rng))
            }),
        }
    }

    fn view(&self, int8: bool) -> Encoder<'_> {
        Encoder {
            embeddings: Embeddings {
                word: Table::F32(&self.word),
                position: &self.position,
                positions: self.positions,
                token_type: self.token_type.as_deref(),
                norm: self.emb_norm.view(),
            },
            embedding_width: self.embedding_width,
            projection: self.projection.as_ref().map(|p| p.view(int8)),
            relative: self.relative.as_deref().map(|table| RelativeBias {
                table,
                num_buckets: BUCKETS,
                max_distance: 128,
            }),
            layers: self
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| EncoderLayer {
                    qkv: l.qkv.view(int8),
                    attn_out: l.attn_out.view(int8),
                    norm1: l.norm1.as_ref().map(Norm::view),
                    ffn_up: l.ffn_up.view(int8),
                    ffn_down: l.ffn_down.view(int8),
                    norm2: l.norm2.view(),
                    rotary: self.modern.as_ref().map(|(table, _)| Rotary { table }),
                    window: (self.modern.is_some() && i == 1).then_some(WINDOW),
                })
                .collect(),
            shape: LayerShape {
                act: Activation::Gelu,
                pre_norm: self.modern.is_some(),
                gated: self.modern.is_some(),
            },
            final_norm: self.modern.as_ref().map(|(_, n)| n.view()),
            output: self.output,
            normalize: self.output == BertOutput::MeanPooled,
            dims: None,
            head: self.head.as_ref().map(|(dense, out)| Head {
                pooling: if self.modern.is_some() {
                    HeadPooling::Mean
                } else {
                    HeadPooling::First
                },
                dense: dense.view(int8),
                act: Activation::Tanh,
                norm: self.modern.as_ref().map(|(_, n)| n.view()),
                out: out.view(int8),
            }),
            vocab: self.vocab,
            type_vocab: if self.token_type.is_some() { 2 } else { 0 },
            max_seq_len: self.max_len,
            pad_id: None,
        }
    }
}

/// Records each linear layer's row count.
#[derive(Default)]
struct Rows(Vec<(EncoderLinear, usize)>);

impl LinearObserver for Rows {
    fn linear(&mut self, _: usize, which: EncoderLinear, _: &[f32], output: &[f32]) {
        self.0.push((which, output.len()));
    }
}

include!(concat!(env!("OUT_DIR"), "/native_kernels.rs"));

/// The kernels this machine runs compiled in ([`NATIVE`], as the test models are generated
/// with `kernels = "native"`), the ones in the slice enabled: one job type (one copy of the
/// forward per kernel) for every test, as generated code's kernel set is one type.
#[derive(Debug, Clone, Copy)]
struct Pick(&'static [KernelId]);

impl KernelSet for Pick {
    const KERNELS: &'static [KernelId] = NATIVE;
    fn enabled(&self) -> &[KernelId] {
        self.0
    }
}

/// `run_batch`, generated code's entry point, on `threads` threads with the kernel `id` (one of
/// [`NATIVE`]).
fn run_on(
    id: KernelId,
    threads: usize,
    m: &Model,
    e: &Encoder<'_>,
    aq: ActQuant,
    inputs: &[BertInput<'_>],
) -> Vec<f32> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let kernels = Pick(std::slice::from_ref(
        NATIVE.iter().find(|&&k| k == id).unwrap(),
    ));
    pool.install(|| {
        let mut out = vec![f32::NAN; batch_output_len(m.dims, e, inputs)];
        run_batch(
            m.dims,
            kernels,
            e,
            aq,
            inputs,
            &mut Workspace::new(),
            &mut out,
        )
        .unwrap();
        out
    })
}

fn outputs() -> impl Strategy<Value = BertOutput> {
    prop::sample::select(vec![
        BertOutput::MeanPooled,
        BertOutput::Cls,
        BertOutput::LastHiddenState,
        BertOutput::Logits,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]

    #[test]
    fn a_sequence_gives_the_same_bits_alone_and_in_any_batch(
        heads in 1usize..=3,
        head_width in prop::sample::select(vec![8usize, 12]),
        offset in any::<bool>(),
        types in any::<bool>(),
        projection in any::<bool>(),
        relative in any::<bool>(),
        modern in any::<bool>(),
        output in outputs(),
        int8 in any::<bool>(),
        asymmetric in any::<bool>(),
        lens in prop::collection::vec(
            prop_oneof![4 => 1usize..SHORT_SEQUENCE, 1 => SHORT_SEQUENCE..SHORT_SEQUENCE + 20],
            1..7,
        ),
        masked in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let m = Model::new(heads, head_width, offset, types, projection, relative, output, modern, seed);
        let e = m.view(int8);
        let aq = ActQuant {
            granularity: Granularity::PerToken,
            scheme: if asymmetric { Scheme::Asymmetric } else { Scheme::Symmetric },
        };
        let mut rng = Rng(seed ^ 0x9e37_79b9);
        let ids: Vec<Vec<u32>> = lens
            .iter()
            .map(|&l| (0..l).map(|_| 2 + ((rng.next() + 1.0) * 18.0) as u32).collect())
            .collect();
        let type_ids: Vec<Vec<u32>> =
            lens.iter().map(|&l| (0..l).map(|i| u32::from(types && !modern && i * 2 >= l)).collect()).collect();
        // Some padding at the end of the longer sequences, with its mask.
        let masks: Vec<Vec<u32>> =
            lens.iter().map(|&l| (0..l).map(|i| u32::from(!masked || l < 4 || i + 2 < l)).collect()).collect();
        let inputs: Vec<BertInput<'_>> = (0..lens.len())
            .map(|s| BertInput {
                input_ids: &ids[s],
                attention_mask: masked.then_some(&masks[s][..]),
                token_type_ids: Some(&type_ids[s]),
            })
            .collect();
        let width = |s: usize| output_len(m.dims, &e, lens[s]);
        // Every kernel this machine runs, scalar first. Through `run_batch`, as generated code
        // runs (the residual add and norm fused into the GEMMs); the tests below instantiate
        // the same forward.
        for &kernel in NATIVE {
            let alone: Vec<Vec<f32>> = inputs
                .iter()
                .map(|i| run_on(kernel, 1, &m, &e, aq, std::slice::from_ref(i)))
                .collect();
            for (s, a) in alone.iter().enumerate() {
                prop_assert_eq!(a.len(), width(s));
                prop_assert!(a.iter().all(|v| v.is_finite()), "{:?} sequence {}", kernel, s);
            }
            // The batch in a shuffled order, on 1 and 2 threads.
            let mut order: Vec<usize> = (0..inputs.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, ((rng.next() + 1.0) * 0.5 * (i + 1) as f32) as usize % (i + 1));
            }
            let batch: Vec<BertInput<'_>> = order.iter().map(|&s| inputs[s]).collect();
            for threads in [1, 2] {
                let out = run_on(kernel, threads, &m, &e, aq, &batch);
                let mut at = 0;
                for &s in &order {
                    let got = &out[at..at + width(s)];
                    at += width(s);
                    prop_assert!(
                        got.iter().map(|v| v.to_bits()).eq(alone[s].iter().map(|v| v.to_bits())),
                        "{:?}, {} threads: sequence {} of {} tokens differs in the batch {:?}",
                        kernel, threads, s, lens[s], lens
                    );
                }
                prop_assert_eq!(at, out.len());
            }
        }
        // No padding computed: every linear layer of the encoder runs over the batch's total
        // tokens, the head over one row per sequence.
        // (On the scalar kernel directly: one instantiation of the forward, not one per kernel.)
        let mut rows = Rows::default();
        let tokens: usize = lens.iter().sum();
        let mut out = vec![f32::NAN; batch_output_len(m.dims, &e, &inputs)];
        forward(Scalar::new(), m.dims, &e, aq, &inputs, &mut Workspace::new(), &mut out, &mut rows);
        let h = m.dims.hidden;
        for (which, values) in rows.0 {
            let width = match which {
                EncoderLinear::Qkv => 3 * h,
                EncoderLinear::FfnUp => m.dims.intermediate,
                EncoderLinear::HeadOut => 3,
                _ => h,
            };
            let expected = match which {
                EncoderLinear::HeadDense | EncoderLinear::HeadOut => lens.len(),
                _ => tokens,
            };
            prop_assert_eq!(values, expected * width, "{:?}", which);
        }
    }
}

/// Per-tensor activation scales would couple a batch's sequences (one scale for all their
/// tokens), so `run_batch`, what generated code calls, runs such a model's inputs one by one:
/// the promise holds for it too, at 1 and 2 threads, symmetric and asymmetric.
#[test]
fn per_tensor_scales_keep_the_batch_promise() {
    let m = Model::new(
        2,
        8,
        true,
        true,
        false,
        false,
        BertOutput::MeanPooled,
        false,
        7,
    );
    let e = m.view(true);
    let lens = [3usize, 17, SHORT_SEQUENCE + 6, 9, 1];
    let mut rng = Rng(11);
    let ids: Vec<Vec<u32>> = lens
        .iter()
        .map(|&l| {
            (0..l)
                .map(|_| 2 + ((rng.next() + 1.0) * 18.0) as u32)
                .collect()
        })
        .collect();
    let inputs: Vec<BertInput<'_>> = ids.iter().map(|i| BertInput::new(i)).collect();
    let reversed: Vec<BertInput<'_>> = inputs.iter().rev().copied().collect();
    let width = |s: usize| output_len(m.dims, &e, lens[s]);
    for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
        let aq = ActQuant {
            granularity: Granularity::PerTensor,
            scheme,
        };
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let run = |batch: &[BertInput<'_>]| {
                    let mut out = vec![f32::NAN; batch_output_len(m.dims, &e, batch)];
                    run_batch(
                        m.dims,
                        Pick(NATIVE),
                        &e,
                        aq,
                        batch,
                        &mut Workspace::new(),
                        &mut out,
                    )
                    .unwrap();
                    out
                };
                let alone: Vec<Vec<f32>> = inputs
                    .iter()
                    .map(|i| run(std::slice::from_ref(i)))
                    .collect();
                let out = run(&reversed);
                let mut at = 0;
                for s in (0..lens.len()).rev() {
                    let got = &out[at..at + width(s)];
                    at += width(s);
                    assert!(
                        got.iter()
                            .map(|v| v.to_bits())
                            .eq(alone[s].iter().map(|v| v.to_bits())),
                        "{scheme:?}, {threads} threads: sequence {s} differs in the batch"
                    );
                }
            });
        }
    }
}

/// A batch's output slice of the wrong length is refused with the total the inputs need (their
/// lengths differ with `last_hidden_state`, so no "rows x width" is claimed).
#[test]
fn a_wrong_batch_output_length_names_the_total() {
    let m = Model::new(
        2,
        8,
        false,
        false,
        false,
        false,
        BertOutput::LastHiddenState,
        false,
        3,
    );
    let e = m.view(true);
    let ids: [&[u32]; 2] = [&[2, 3, 4], &[5, 6]];
    let inputs: Vec<BertInput<'_>> = ids.iter().map(|i| BertInput::new(i)).collect();
    let aq = ActQuant {
        granularity: Granularity::PerToken,
        scheme: Scheme::Symmetric,
    };
    let expected = batch_output_len(m.dims, &e, &inputs);
    assert_eq!(expected, 5 * m.dims.hidden);
    let mut out = vec![0.0; expected - 1];
    let err = run_batch(
        m.dims,
        Pick(NATIVE),
        &e,
        aq,
        &inputs,
        &mut Workspace::new(),
        &mut out,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "output length: expected {expected} values (the outputs of 2 inputs, summed), found {}",
            expected - 1
        )
    );
}
