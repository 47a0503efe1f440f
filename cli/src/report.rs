//! `dynq report`: where INT8 quantization loses accuracy, layer by layer, and which layers
//! most deserve `[quantize] keep_f32`.
//!
//! Without inputs it measures the weights alone. With inputs it runs the model twice through
//! `dynq-runtime`'s own ops (the code the generated forward calls), once in f32 and once as
//! the INT8 build would, over weights quantized and packed in memory, and compares every linear
//! layer's output two ways:
//!
//! * **cumulative**: the INT8 model's activation against the f32 model's at that layer, errors
//!   of all earlier layers included;
//! * **local**: the layer alone, its INT8 version fed the same f32 input as its f32 version.
//!
//! Layers are ranked for `keep_f32` by their local error: keeping one in f32 removes exactly
//! that error.

use std::fmt;
use std::path::Path;

use dynq_runtime as rt;
use dynq_runtime::models::encoder as rt_encoder;
use dynq_runtime::ops::bert::{EncoderDims, EncoderLayer, EncoderLinear, LinearObserver, Table};
use dynq_runtime::ops::{linear_dyn, ActQuant, QuantScratch};
use dynq_runtime::{BertInput, Kernel};

use crate::summary::TableSummary;
use dynq_build::ir::{Body, Encoder, LayerPrecision, Linear, Model, Norm, Positions, Precision};
use dynq_build::quantize::{channel_errors, quantize_linear, quantize_table};
use dynq_build::spec::{
    ActivationGranularity, ActivationSpec, BertOutputSpec, EmbeddingStorage, SchemeSpec, SpecFile,
};
use dynq_build::weights::Weights;
use dynq_build::{Error, Result};

/// How far an INT8 activation is from its f32 reference, over all values of all inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActError {
    /// `10 log10(sum ref^2 / sum (ref - int8)^2)`; infinite when they are equal.
    pub sqnr_db: f32,
    /// Cosine similarity of the two, all values as one vector.
    pub cosine: f32,
}

/// One linear layer of a [`Report`].
#[derive(Debug, Clone)]
pub struct LayerReport {
    /// The layer's name in the IR (`encoder.layer.0.attention.self.qkv`).
    pub name: String,
    /// A short name for tables (`L0 qkv`, `net.0`).
    pub label: String,
    /// What to write in `[quantize] keep_f32` to keep this layer in f32.
    pub keep_f32_key: String,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
    /// The description already keeps it in f32 (its numbers are what INT8 would cost).
    pub kept_f32: bool,
    /// Weight SQNR in dB.
    pub weight_sqnr_db: f32,
    /// Largest absolute weight error.
    pub weight_max_abs_error: f32,
    /// The output channels with the largest squared weight error, worst first (up to 3).
    pub worst_channels: Vec<usize>,
    /// The INT8 model's output of this layer against the f32 model's (with inputs).
    pub cumulative: Option<ActError>,
    /// This layer alone in INT8 against f32, on the f32 model's input (with inputs).
    pub local: Option<ActError>,
    /// One of the layers that most deserve `keep_f32`.
    pub flagged: bool,
}

/// A quantization report: per layer, weight error and (with inputs) activation error.
#[derive(Debug, Clone)]
pub struct Report {
    /// The model's name.
    pub model: String,
    /// What the model's output is (`logits`, `mean_pooled`, ...).
    pub output_kind: String,
    /// The linear layers, in order.
    pub layers: Vec<LayerReport>,
    /// Inputs measured (0 without `--inputs`).
    pub inputs: usize,
    /// The INT8 model's final output against the f32 model's.
    pub output: Option<ActError>,
    /// The input whose output is furthest from the f32 model's: its line index (from 0,
    /// blank lines not counted) and the cosine of the two outputs.
    pub worst_input: Option<(usize, f32)>,
    /// A BERT's word-embedding table: how the INT8 build stores it, and that storage's error.
    pub embeddings: Option<TableSummary>,
}

/// Measures the model described at `spec_path`; with `inputs` (a JSON-lines file in the
/// standalone binaries' format: `{"input": [...]}` for `mlp`, `{"text": "..."}` or
/// `{"input_ids": [...]}` for `bert`) also its activations.
///
/// ```no_run
/// use std::path::Path;
/// let r = dynq_cli::report::report(Path::new("examples/digits/digits.toml"), None).unwrap();
/// assert_eq!(r.layers.len(), 2);
/// print!("{r}");
/// r.plot_svg(Path::new("digits-report.svg")).unwrap();
/// ```
pub fn report(spec_path: &Path, inputs: Option<&Path>) -> Result<Report> {
    let spec = SpecFile::load(spec_path)?;
    let weights = Weights::open(&spec.weights_path())?;
    let kernels = rt::KernelId::ALL
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    let model = dynq_build::load_model(&spec, &weights, Precision::Int8, kernels)?;
    let samples = match inputs {
        Some(path) => read_inputs(path, &model)?,
        None => Vec::new(),
    };

    let granularity = spec.spec.quantize.weights;
    let linears = model.linears();
    let bar = crate::progress::bar(linears.len(), "quantizing");
    let mut preps = Vec::with_capacity(linears.len());
    let mut layers = Vec::with_capacity(linears.len());
    for (l, (label, keep_f32_key)) in linears.iter().zip(model.body.kind().layer_labels()) {
        bar.inc(1);
        // Layers kept in f32 are quantized too: their numbers say what INT8 would cost.
        let q = quantize_linear(l, granularity, weights.path())?;
        let mut channels: Vec<(usize, f64)> = channel_errors(&l.weight.data, &q)
            .into_iter()
            .enumerate()
            .collect();
        channels.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        layers.push(LayerReport {
            name: l.name.clone(),
            label,
            keep_f32_key,
            in_features: l.in_features,
            out_features: l.out_features,
            kept_f32: l.precision == LayerPrecision::F32,
            weight_sqnr_db: q.stats.sqnr_db,
            weight_max_abs_error: q.stats.max_abs_error,
            worst_channels: channels.iter().take(3).map(|c| c.0).collect(),
            cumulative: None,
            local: None,
            flagged: false,
        });
        preps.push(Prepared {
            packed: dynq_build::pack::pack(&q, dynq_build::pack::Layout::Tile16x4),
            scales: q.scales,
            col_sums: q.col_sums,
            linear: l,
        });
    }
    bar.finish_and_clear();

    let mut output = None;
    let mut worst_input = None;
    if !samples.is_empty() {
        let job = Measure {
            model: &model,
            preps: &preps,
            samples: &samples,
        };
        let m = rt::dispatch(job, &rt::KernelId::ALL).map_err(|e| Error::Options(e.to_string()))?;
        for ((layer, cum), local) in layers.iter_mut().zip(&m.cumulative).zip(&m.local) {
            layer.cumulative = cum.finish();
            layer.local = local.finish();
        }
        output = m.output.finish();
        worst_input = m.worst;
    }
    flag(&mut layers);
    let kind = model.body.kind();
    let output_kind = kind.output_name().to_string();
    let embeddings = kind
        .table()
        .map(|(table, storage)| TableSummary::new(table, storage));
    Ok(Report {
        model: model.name.clone(),
        output_kind,
        layers,
        inputs: samples.len(),
        output,
        worst_input,
        embeddings,
    })
}

/// Flags the quantized layers with the lowest local SQNR (weight SQNR without inputs): one in
/// eight, at least one, and only those below the median.
fn flag(layers: &mut [LayerReport]) {
    let score = |l: &LayerReport| l.local.map_or(l.weight_sqnr_db, |a| a.sqnr_db);
    let mut order: Vec<usize> = (0..layers.len()).filter(|&i| !layers[i].kept_f32).collect();
    order.sort_by(|&a, &b| score(&layers[a]).total_cmp(&score(&layers[b])));
    let Some(&mid) = order.get(order.len() / 2) else {
        return;
    };
    let median = score(&layers[mid]);
    let count = order.len().div_ceil(8).max(1);
    for (rank, &i) in order.iter().take(count).enumerate() {
        if rank == 0 || score(&layers[i]) < median {
            layers[i].flagged = true;
        }
    }
}

/// A linear layer quantized and packed in memory, with its IR (and f32 weights).
struct Prepared<'a> {
    linear: &'a Linear,
    packed: Vec<i8>,
    scales: Vec<f32>,
    col_sums: Vec<i32>,
}

impl Prepared<'_> {
    fn f32(&self) -> rt::Linear<'_> {
        let l = self.linear;
        rt::Linear::F32(rt::F32Linear {
            n: l.out_features,
            k: l.in_features,
            weight: &l.weight.data,
            bias: l.bias.as_ref().map(|b| b.data.as_slice()),
        })
    }

    fn int8(&self) -> rt::Linear<'_> {
        let l = self.linear;
        rt::Linear::Int8(rt::QLinear {
            n: l.out_features,
            k: l.in_features,
            weight: &self.packed,
            scales: &self.scales,
            col_sums: &self.col_sums,
            bias: l.bias.as_ref().map(|b| b.data.as_slice()),
        })
    }

    /// The layer as the INT8 build stores it.
    fn in_model(&self) -> rt::Linear<'_> {
        match self.linear.precision {
            LayerPrecision::Int8(_) => self.int8(),
            LayerPrecision::F32 => self.f32(),
        }
    }

    fn activation(&self) -> rt::Activation {
        activation(self.linear.activation)
    }
}

fn activation(a: ActivationSpec) -> rt::Activation {
    match a {
        ActivationSpec::None => rt::Activation::None,
        ActivationSpec::Relu => rt::Activation::Relu,
        ActivationSpec::Gelu => rt::Activation::Gelu,
        ActivationSpec::GeluTanh => rt::Activation::GeluTanh,
        ActivationSpec::Tanh => rt::Activation::Tanh,
        ActivationSpec::Sigmoid => rt::Activation::Sigmoid,
    }
}

fn act_quant(model: &Model) -> ActQuant {
    ActQuant {
        granularity: match model.act_quant.granularity {
            ActivationGranularity::PerToken => rt::Granularity::PerToken,
            ActivationGranularity::PerTensor => rt::Granularity::PerTensor,
        },
        scheme: match model.act_quant.scheme {
            SchemeSpec::Symmetric => rt::Scheme::Symmetric,
            SchemeSpec::Asymmetric => rt::Scheme::Asymmetric,
        },
    }
}

/// One input line.
enum Sample {
    Dense(Vec<f32>),
    Sequence {
        ids: Vec<u32>,
        mask: Option<Vec<u32>>,
        types: Option<Vec<u32>>,
    },
}

fn read_inputs(path: &Path, model: &Model) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let at = |line: usize, message: String| Error::Input {
        file: path.to_path_buf(),
        line,
        message,
    };
    let tokenizer = match &model.body {
        Body::Encoder(b) => match &b.tokenizer {
            Some(json) => Some(
                rt::serve::TextTokenizer::new(json, b.max_seq_len)
                    .map_err(|e| Error::Options(format!("the model's tokenizer.json: {e}")))?,
            ),
            None => None,
        },
        Body::Mlp(_) | Body::Rnn(_) => None,
    };
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let sample = match &model.body {
            Body::Mlp(mlp) => Sample::Dense(
                rt::serve::parse_dense_line(line, mlp.input_size).map_err(|e| at(i + 1, e))?,
            ),
            Body::Rnn(_) => {
                return Err(Error::Options(format!(
                    "{}: --inputs: the layer-by-layer activation comparison supports the mlp and bert presets; for a recurrent model the report gives the weight errors (run it without --inputs)",
                    path.display()
                )))
            }
            Body::Encoder(b) => {
                let rt::serve::EncoderLine {
                    input_ids: ids,
                    attention_mask: mask,
                    token_type_ids: types,
                    ..
                } = rt::serve::parse_encoder_line(line, tokenizer.as_ref())
                    .map_err(|e| at(i + 1, e))?;
                let input = BertInput {
                    input_ids: &ids,
                    attention_mask: mask.as_deref(),
                    token_type_ids: types.as_deref(),
                };
                input
                    .check(b.vocab, b.type_vocab.max(1), b.max_seq_len)
                    .and_then(|_| input.check_padding(b.pad_id))
                    .map_err(|e| at(i + 1, e.to_string()))?;
                Sample::Sequence { ids, mask, types }
            }
        };
        samples.push(sample);
    }
    if samples.is_empty() {
        return Err(at(1, "no input lines".into()));
    }
    Ok(samples)
}

/// Running sums for one [`ActError`].
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    dot: f64,
    reference: f64,
    test: f64,
    noise: f64,
    values: usize,
}

impl Acc {
    fn add(&mut self, reference: &[f32], test: &[f32]) {
        for (&r, &t) in reference.iter().zip(test) {
            let (r, t) = (f64::from(r), f64::from(t));
            self.dot += r * t;
            self.reference += r * r;
            self.test += t * t;
            self.noise += (r - t) * (r - t);
        }
        self.values += reference.len();
    }

    fn finish(&self) -> Option<ActError> {
        if self.values == 0 {
            return None;
        }
        let sqnr_db = if self.noise == 0.0 {
            f32::INFINITY
        } else {
            (10.0 * (self.reference / self.noise).log10()) as f32
        };
        let norms = (self.reference * self.test).sqrt();
        let cosine = if norms == 0.0 {
            1.0
        } else {
            (self.dot / norms) as f32
        };
        Some(ActError { sqnr_db, cosine })
    }
}

/// Activation quantization scratch, grown on demand.
#[derive(Default)]
struct Scratch {
    quant: Vec<i8>,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
}

impl Scratch {
    fn get(&mut self, rows: usize, k: usize) -> QuantScratch<'_> {
        let len = rows * rt::quant::padded_k(k);
        if self.quant.len() < len {
            self.quant.resize(len, 0);
        }
        if self.scales.len() < rows {
            self.scales.resize(rows, 0.0);
            self.zero_points.resize(rows, 0);
        }
        QuantScratch {
            quant: &mut self.quant,
            scales: &mut self.scales,
            zero_points: &mut self.zero_points,
        }
    }
}

/// Runs one layer on `rows` rows of `x` into a new vector.
fn run<K: Kernel>(
    kernel: K,
    w: &rt::Linear<'_>,
    act: rt::Activation,
    aq: ActQuant,
    x: &[f32],
    rows: usize,
    scratch: &mut Scratch,
) -> Vec<f32> {
    let mut out = vec![0.0; rows * w.n()];
    let mut s = scratch.get(rows, w.k());
    linear_dyn(kernel, w.k(), w.n(), x, rows, w, act, aq, &mut s, &mut out);
    out
}

/// Sums over all inputs, per linear layer and for the output.
struct Measured {
    cumulative: Vec<Acc>,
    local: Vec<Acc>,
    output: Acc,
    /// The lowest output cosine of one input, and which input.
    worst: Option<(usize, f32)>,
}

impl Measured {
    /// Adds one input's outputs (`f` from the f32 model, `q` from the INT8 model).
    fn add_output(&mut self, index: usize, f: &[f32], q: &[f32]) {
        self.output.add(f, q);
        let mut one = Acc::default();
        one.add(f, q);
        if let Some(e) = one.finish() {
            if self.worst.is_none_or(|(_, c)| e.cosine < c) {
                self.worst = Some((index, e.cosine));
            }
        }
    }
}

/// The whole measurement, run inside one kernel entry by [`rt::dispatch`].
struct Measure<'a> {
    model: &'a Model,
    preps: &'a [Prepared<'a>],
    samples: &'a [Sample],
}

impl rt::Job for Measure<'_> {
    type Output = Measured;

    fn run<K: Kernel>(self, kernel: K) -> Measured {
        let n = self.preps.len();
        let mut m = Measured {
            cumulative: vec![Acc::default(); n],
            local: vec![Acc::default(); n],
            output: Acc::default(),
            worst: None,
        };
        let aq = act_quant(self.model);
        let mut scratch = Scratch::default();
        let bar = crate::progress::bar(self.samples.len(), "measuring");
        match &self.model.body {
            Body::Mlp(_) => {
                for (index, sample) in self.samples.iter().enumerate() {
                    bar.inc(1);
                    let Sample::Dense(x) = sample else { continue };
                    let (f, q) = chain(kernel, self.preps, aq, x, x, 1, &mut m, 0, &mut scratch);
                    m.add_output(index, &f, &q);
                }
            }
            Body::Encoder(b) => {
                let table = WordTable::new(b);
                let encoder = EncoderViews::new(b, &table, self.preps);
                for (index, sample) in self.samples.iter().enumerate() {
                    bar.inc(1);
                    let Sample::Sequence { ids, mask, types } = sample else {
                        continue;
                    };
                    let input = BertInput {
                        input_ids: ids,
                        attention_mask: mask.as_deref(),
                        token_type_ids: types.as_deref(),
                    };
                    encoder.measure(kernel, aq, &input, index, self.preps, &mut m, &mut scratch);
                }
            }
            // `read_inputs` accepts no input for a recurrent model.
            Body::Rnn(_) => {}
        }
        bar.finish_and_clear();
        m
    }
}

/// Runs a chain of linear layers (an MLP, or BERT's pooler and classifier) from `xf` in f32
/// and `xq` as the INT8 build does, adding to the sums of layers `first..`; returns both
/// outputs.
#[allow(clippy::too_many_arguments)]
fn chain<K: Kernel>(
    kernel: K,
    preps: &[Prepared<'_>],
    aq: ActQuant,
    xf: &[f32],
    xq: &[f32],
    rows: usize,
    m: &mut Measured,
    first: usize,
    scratch: &mut Scratch,
) -> (Vec<f32>, Vec<f32>) {
    let (mut xf, mut xq) = (xf.to_vec(), xq.to_vec());
    for (i, p) in preps.iter().enumerate() {
        let act = p.activation();
        let f = run(kernel, &p.f32(), act, aq, &xf, rows, scratch);
        let local = run(kernel, &p.int8(), act, aq, &xf, rows, scratch);
        let q = run(kernel, &p.in_model(), act, aq, &xq, rows, scratch);
        m.local[first + i].add(&f, &local);
        m.cumulative[first + i].add(&f, &q);
        (xf, xq) = (f, q);
    }
    (xf, xq)
}

/// The word table as the INT8 build stores it (`[quantize] embeddings`).
enum WordTable {
    /// The checkpoint's values (`f32`: unrounded).
    Unrounded,
    F16(Vec<u16>),
    I8 {
        rows: Vec<i8>,
        scales: Vec<f32>,
    },
}

impl WordTable {
    fn new(ir: &Encoder) -> Self {
        match ir.word_storage {
            EmbeddingStorage::F32 => WordTable::Unrounded,
            EmbeddingStorage::F16 => WordTable::F16(
                ir.word
                    .data
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_bits())
                    .collect(),
            ),
            EmbeddingStorage::Int8 => {
                let q = quantize_table(&ir.word.data, ir.vocab, ir.embedding_width);
                WordTable::I8 {
                    rows: q.q,
                    scales: q.scales,
                }
            }
        }
    }
}

/// An encoder as the runtime's driver takes it, in f32 and as the INT8 build stores it.
struct EncoderViews<'a> {
    ir: &'a Encoder,
    f32: rt_encoder::Encoder<'a>,
    int8: rt_encoder::Encoder<'a>,
}

fn layer_norm<'a>(n: &'a Norm, eps: f32) -> rt::ops::bert::LayerNorm<'a> {
    rt::ops::bert::LayerNorm {
        gamma: &n.gamma.data,
        beta: &n.beta.data,
        eps,
    }
}

impl<'a> EncoderViews<'a> {
    fn new(ir: &'a Encoder, word_table: &'a WordTable, preps: &'a [Prepared<'a>]) -> Self {
        // `preps` is in `Model::linears` order: projection, 4 per layer, head dense and out.
        let projection = usize::from(ir.projection.is_some());
        let view = |int8: bool| -> rt_encoder::Encoder<'a> {
            let lin = |p: &'a Prepared<'a>| if int8 { p.in_model() } else { p.f32() };
            let layers = ir
                .layers
                .iter()
                .zip(preps[projection..].chunks_exact(4))
                .map(|(l, p)| EncoderLayer {
                    qkv: lin(&p[0]),
                    attn_out: lin(&p[1]),
                    norm1: l.norm1.as_ref().map(|n| layer_norm(n, ir.eps)),
                    ffn_up: lin(&p[2]),
                    ffn_down: lin(&p[3]),
                    norm2: layer_norm(&l.norm2, ir.eps),
                    rotary: l.rotary.map(|t| rt::ops::bert::Rotary {
                        table: &ir.rotary[t].table.data,
                    }),
                    window: l.window,
                })
                .collect();
            let head_at = projection + 4 * ir.layers.len();
            rt_encoder::Encoder {
                embeddings: rt::ops::bert::Embeddings {
                    word: match (int8, word_table) {
                        (false, _) | (true, WordTable::Unrounded) => Table::F32(&ir.word.data),
                        (true, WordTable::F16(w)) => Table::F16(w),
                        (true, WordTable::I8 { rows, scales }) => Table::I8 { rows, scales },
                    },
                    position: ir.position.as_ref().map_or(&[][..], |p| &p.data),
                    positions: match ir.positions {
                        Positions::None => rt::ops::bert::Positions::None,
                        Positions::Absolute => rt::ops::bert::Positions::Absolute,
                        Positions::AfterPadding(p) => {
                            rt::ops::bert::Positions::AfterPadding { padding_idx: p }
                        }
                    },
                    token_type: ir.token_type.as_ref().map(|t| t.data.as_slice()),
                    norm: layer_norm(&ir.emb_norm, ir.eps),
                },
                embedding_width: ir.embedding_width,
                projection: ir.projection.as_ref().map(|_| lin(&preps[0])),
                relative: ir.relative.as_ref().map(|r| rt_encoder::RelativeBias {
                    table: &r.table.data,
                    num_buckets: r.num_buckets,
                    max_distance: r.max_distance,
                }),
                layers,
                shape: rt::ops::bert::LayerShape {
                    act: activation(ir.act),
                    pre_norm: ir.pre_norm,
                    gated: ir.gated,
                },
                final_norm: ir.final_norm.as_ref().map(|n| layer_norm(n, ir.eps)),
                dims: ir.dims,
                output: match ir.output {
                    BertOutputSpec::MeanPooled => rt::BertOutput::MeanPooled,
                    BertOutputSpec::Cls => rt::BertOutput::Cls,
                    BertOutputSpec::LastHiddenState => rt::BertOutput::LastHiddenState,
                    BertOutputSpec::Logits => rt::BertOutput::Logits,
                },
                normalize: ir.normalize,
                head: ir.head.as_ref().map(|h| rt_encoder::Head {
                    pooling: if h.mean {
                        rt_encoder::HeadPooling::Mean
                    } else {
                        rt_encoder::HeadPooling::First
                    },
                    dense: lin(&preps[head_at]),
                    act: activation(h.dense.activation),
                    norm: h.norm.as_ref().map(|n| layer_norm(n, ir.eps)),
                    out: lin(&preps[head_at + 1]),
                }),
                vocab: ir.vocab,
                type_vocab: ir.type_vocab,
                max_seq_len: ir.max_seq_len,
                pad_id: ir.pad_id,
            }
        };
        EncoderViews {
            ir,
            f32: view(false),
            int8: view(true),
        }
    }

    /// Adds one sequence to the sums: the f32 model (each linear also alone in INT8), then
    /// the INT8 model, each through the runtime's encoder driver; then the model's output.
    #[allow(clippy::too_many_arguments)]
    fn measure<K: Kernel>(
        &self,
        kernel: K,
        aq: ActQuant,
        input: &BertInput<'_>,
        index: usize,
        preps: &[Prepared<'_>],
        m: &mut Measured,
        scratch: &mut Scratch,
    ) {
        let b = self.ir;
        let dims = EncoderDims {
            hidden: b.hidden,
            heads: b.heads,
            intermediate: b.intermediate,
        };
        let len = input.input_ids.len();
        let n = rt_encoder::output_len(dims, &self.f32, len);
        let mut observer = Observer {
            kernel,
            aq,
            preps,
            projection: usize::from(b.projection.is_some()),
            layers: b.layers.len(),
            int8_pass: false,
            reference: vec![Vec::new(); preps.len()],
            m: &mut *m,
            scratch: &mut *scratch,
        };
        let mut ws = rt::Workspace::new();
        let mut f = vec![0.0; n];
        rt_encoder::forward(
            kernel,
            dims,
            &self.f32,
            aq,
            std::slice::from_ref(input),
            &mut ws,
            &mut f,
            &mut observer,
        );
        observer.int8_pass = true;
        let mut q = vec![0.0; n];
        rt_encoder::forward(
            kernel,
            dims,
            &self.int8,
            aq,
            std::slice::from_ref(input),
            &mut ws,
            &mut q,
            &mut observer,
        );
        m.add_output(index, &f, &q);
    }
}

/// Sees each encoder linear: in the f32 pass it keeps the output as the reference and runs
/// the layer alone in INT8 on the same input (local error); in the INT8 pass it compares the
/// INT8 model's output with the reference (cumulative error).
struct Observer<'a, 'm, K> {
    kernel: K,
    aq: ActQuant,
    preps: &'a [Prepared<'a>],
    /// 1 with an embedding projection (the first linear), else 0.
    projection: usize,
    layers: usize,
    int8_pass: bool,
    reference: Vec<Vec<f32>>,
    m: &'m mut Measured,
    scratch: &'m mut Scratch,
}

impl<K: Kernel> LinearObserver for Observer<'_, '_, K> {
    fn linear(&mut self, layer: usize, which: EncoderLinear, input: &[f32], output: &[f32]) {
        let in_layer = |slot: usize| self.projection + 4 * layer + slot;
        let head = self.projection + 4 * self.layers;
        let i = match which {
            EncoderLinear::Projection => 0,
            EncoderLinear::Qkv => in_layer(0),
            EncoderLinear::AttnOut => in_layer(1),
            EncoderLinear::FfnUp => in_layer(2),
            EncoderLinear::FfnDown => in_layer(3),
            EncoderLinear::HeadDense => head,
            EncoderLinear::HeadOut => head + 1,
        };
        if self.int8_pass {
            self.m.cumulative[i].add(&self.reference[i], output);
            return;
        }
        let p = &self.preps[i];
        let w = p.int8();
        let rows = input.len() / w.k().max(1);
        let alone = run(
            self.kernel,
            &w,
            p.activation(),
            self.aq,
            input,
            rows,
            self.scratch,
        );
        self.m.local[i].add(output, &alone);
        self.reference[i] = output.to_vec();
    }
}

fn db(v: f32) -> String {
    if v.is_infinite() {
        "exact".into()
    } else {
        format!("{v:.1}")
    }
}

impl Report {
    /// The layers flagged for `keep_f32`, worst first.
    pub fn flagged(&self) -> Vec<&LayerReport> {
        let score = |l: &LayerReport| l.local.map_or(l.weight_sqnr_db, |a| a.sqnr_db);
        let mut v: Vec<&LayerReport> = self.layers.iter().filter(|l| l.flagged).collect();
        v.sort_by(|a, b| score(a).total_cmp(&score(b)));
        v
    }

    /// Draws the per-layer SQNR (weights; with inputs also cumulative and local activations)
    /// as an SVG at `path`, written whole or not at all.
    pub fn plot_svg(&self, path: &Path) -> Result<()> {
        let mut svg = String::new();
        self.draw(&mut svg).map_err(|e| {
            Error::Options(format!("{}: cannot draw the plot: {e}", path.display()))
        })?;
        dynq_build::write_if_changed(path, svg.as_bytes())
    }

    fn draw(&self, svg: &mut String) -> std::result::Result<(), Box<dyn std::error::Error + '_>> {
        use plotters::prelude::*;
        use plotters::style::text_anchor::{HPos, Pos, VPos};

        let n = self.layers.len() as i32;
        let series: Vec<(&str, RGBColor, Vec<f32>)> = [
            (
                "weights",
                BLUE,
                self.layers
                    .iter()
                    .map(|l| Some(l.weight_sqnr_db))
                    .collect::<Vec<_>>(),
            ),
            (
                "activations, INT8 model vs f32 model (cumulative)",
                RED,
                self.layers
                    .iter()
                    .map(|l| l.cumulative.map(|a| a.sqnr_db))
                    .collect(),
            ),
            (
                "activations, the layer alone on the f32 input (local)",
                RGBColor(0, 140, 0),
                self.layers
                    .iter()
                    .map(|l| l.local.map(|a| a.sqnr_db))
                    .collect(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, color, v)| {
            v.into_iter()
                .collect::<Option<Vec<f32>>>()
                .map(|v| (name, color, v))
        })
        .collect();
        let finite = series
            .iter()
            .flat_map(|s| s.2.iter().copied())
            .filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (lo, hi) = if lo.is_finite() {
            (lo, hi)
        } else {
            (0.0, 60.0)
        };
        // Room below the lowest point for the legend.
        let (lo, hi) = (
            (lo / 5.0).floor() * 5.0 - 15.0,
            (hi / 5.0).ceil() * 5.0 + 5.0,
        );

        let root = SVGBackend::with_string(svg, (1000, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let caption = match self.inputs {
            0 => format!("{}: weight quantization error per layer", self.model),
            k => format!(
                "{}: INT8 quantization error per layer ({k} inputs)",
                self.model
            ),
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(95)
            .y_label_area_size(60)
            .build_cartesian_2d(-1..n, lo..hi)?;
        // Layer names run down from their ticks (the mesh would center rotated labels on the axis).
        chart
            .configure_mesh()
            .x_labels(self.layers.len() + 2)
            .x_label_formatter(&|_| String::new())
            .y_desc("SQNR, dB (higher is better)")
            .disable_x_mesh()
            .draw()?;
        let label_style = TextStyle::from(
            ("sans-serif", 13)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, l) in self.layers.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as i32, lo));
            root.draw(&Text::new(
                l.label.clone(),
                (x, y + 10),
                label_style.clone(),
            ))?;
        }
        for (name, color, values) in &series {
            let color = *color;
            chart
                .draw_series(
                    LineSeries::new(
                        values
                            .iter()
                            .enumerate()
                            .filter(|(_, v)| v.is_finite())
                            .map(|(i, &v)| (i as i32, v)),
                        color.stroke_width(2),
                    )
                    .point_size(3),
                )?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        let flagged_at = |l: &LayerReport| l.local.map_or(l.weight_sqnr_db, |a| a.sqnr_db);
        chart
            .draw_series(
                self.layers
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.flagged)
                    .map(|(i, l)| Circle::new((i as i32, flagged_at(l)), 8, BLACK.stroke_width(2))),
            )?
            .label("flagged: keep_f32 candidate")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

impl fmt::Display for Report {
    /// The table, at most 100 columns wide for labels up to 12 characters.
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut table = String::new();
        self.table(&mut table)?;
        for line in table.lines() {
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

impl Report {
    fn table(&self, f: &mut String) -> fmt::Result {
        use std::fmt::Write;
        let w = crate::summary::column_width(self.layers.iter().map(|l| l.label.as_str()), 5, 30);
        let acts = self.inputs > 0;
        write!(
            f,
            "{:<w$} {:>11} {:>8} {:>8} {:<14}",
            "layer", "in -> out", "w dB", "w maxerr", "worst ch"
        )?;
        if acts {
            write!(
                f,
                " {:>7} {:>8} {:>8} {:>9}",
                "act dB", "act cos", "local dB", "local cos"
            )?;
        }
        writeln!(f)?;
        for l in &self.layers {
            let worst: Vec<String> = l.worst_channels.iter().map(|c| c.to_string()).collect();
            write!(
                f,
                "{:<w$} {:>11} {:>8} {:>8.1e} {:<14}",
                l.label,
                format!("{} -> {}", l.in_features, l.out_features),
                db(l.weight_sqnr_db),
                l.weight_max_abs_error,
                worst.join(",")
            )?;
            if acts {
                let (c, lo) = (l.cumulative, l.local);
                write!(
                    f,
                    " {:>7} {:>8.5} {:>8} {:>9.5}",
                    c.map_or("-".into(), |a| db(a.sqnr_db)),
                    c.map_or(f32::NAN, |a| a.cosine),
                    lo.map_or("-".into(), |a| db(a.sqnr_db)),
                    lo.map_or(f32::NAN, |a| a.cosine),
                )?;
            }
            let mark = match (l.flagged, l.kept_f32) {
                (true, _) => " <",
                (_, true) => " (f32)",
                _ => "",
            };
            writeln!(f, "{mark}")?;
        }
        if let Some(t) = &self.embeddings {
            write!(
                f,
                "word embeddings {} x {} stored {}: ",
                t.rows,
                t.width,
                t.storage_name()
            )?;
            if t.stats.sqnr_db.is_infinite() {
                writeln!(f, "exact")?;
            } else {
                writeln!(
                    f,
                    "SQNR {} dB, max abs error {:.1e}",
                    db(t.stats.sqnr_db),
                    t.stats.max_abs_error
                )?;
            }
        }
        if let Some(o) = self.output {
            writeln!(
                f,
                "{} over {} inputs: SQNR {} dB, cosine {:.5}",
                self.output_kind,
                self.inputs,
                db(o.sqnr_db),
                o.cosine
            )?;
            if let Some((i, c)) = self.worst_input {
                writeln!(f, "  lowest cosine of one input: {c:.5} (input {})", i + 1)?;
            }
        }
        let flagged = self.flagged();
        if flagged.is_empty() {
            return writeln!(f, "every layer is already kept in f32");
        }
        let by = if acts {
            "local SQNR"
        } else {
            "weight SQNR (run with --inputs to rank by activations)"
        };
        let names: Vec<&str> = flagged.iter().map(|l| l.label.as_str()).collect();
        writeln!(
            f,
            "< keep_f32 candidates, lowest {by}: {}",
            names.join(", ")
        )?;
        let keys: Vec<String> = flagged
            .iter()
            .map(|l| format!("{:?}", l.keep_f32_key))
            .collect();
        let one_line = format!("  [quantize] keep_f32 = [{}]", keys.join(", "));
        if one_line.len() <= 100 {
            return writeln!(f, "{one_line}");
        }
        writeln!(f, "  [quantize] keep_f32 = [")?;
        for k in &keys {
            writeln!(f, "    {k},")?;
        }
        writeln!(f, "  ]")
    }
}
