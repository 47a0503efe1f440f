//! `dynq check`: validates a description against its weights (spec, tensors, preset
//! expansion, quantization) without generating code, and summarizes the model.

use std::fmt;
use std::path::Path;

use dynq_build::ir::{LayerPrecision, Linear, Model, Precision};
use dynq_build::quantize::{quantize_linear, table_error, ErrorStats};
use dynq_build::spec::{ActivationSpec, EmbeddingStorage, SpecFile, WeightGranularity};
use dynq_build::weights::{SourceDtype, Tensor, Weights};
use dynq_build::Result;

/// One linear layer of a [`Summary`].
#[derive(Debug, Clone)]
pub struct LayerSummary {
    /// The layer's tensor prefix (`encoder.layer.0.attention.output.dense`).
    pub name: String,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
    /// Activation after the layer.
    pub activation: ActivationSpec,
    /// How the INT8 build stores it.
    pub precision: LayerPrecision,
    /// Quantization error of its weights (`None` for layers kept in f32).
    pub stats: Option<ErrorStats>,
}

/// An embedding table of a [`Summary`] (a BERT's word embeddings).
#[derive(Debug, Clone)]
pub struct TableSummary {
    /// The table's name, as the layers are named: its tensor without `.weight`
    /// (`embeddings.word_embeddings`).
    pub name: String,
    /// Rows (the vocabulary).
    pub rows: usize,
    /// Row width (the hidden size).
    pub width: usize,
    /// How the INT8 build stores it (`[quantize] embeddings`).
    pub storage: EmbeddingStorage,
    /// The error of that storage against the checkpoint's values.
    pub stats: ErrorStats,
    /// Bytes in the INT8 build's blob.
    pub bytes: usize,
}

impl TableSummary {
    /// Summarizes an embedding table (`[rows, width]`) as `storage` stores it (a preset's
    /// [`ModelKind::table`]).
    pub(crate) fn new(table: &Tensor, storage: EmbeddingStorage) -> Self {
        let (rows, width) = (table.shape[0], table.shape[1]);
        let n = rows * width;
        let bytes = match storage {
            EmbeddingStorage::Int8 => n + 4 * rows,
            EmbeddingStorage::F16 => 2 * n,
            EmbeddingStorage::F32 if table.source == SourceDtype::F16 => 2 * n,
            EmbeddingStorage::F32 => 4 * n,
        };
        TableSummary {
            name: table
                .name
                .strip_suffix(".weight")
                .unwrap_or(&table.name)
                .to_string(),
            rows,
            width,
            storage,
            stats: table_error(&table.data, width, storage),
            bytes,
        }
    }

    /// `int8/row`, `f16` or `f32`.
    pub fn storage_name(&self) -> &'static str {
        match self.storage {
            EmbeddingStorage::Int8 => "int8/row",
            EmbeddingStorage::F16 => "f16",
            EmbeddingStorage::F32 => "f32",
        }
    }
}

/// What `dynq check` prints: the model's shape, layers, size and quantization error.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The model's name (`model.name`).
    pub name: String,
    /// The generated type's name.
    pub type_name: String,
    /// One line on the architecture (`MLP 64 -> 64 -> 10`, `BERT encoder: 6 layers, ...`).
    pub architecture: String,
    /// The linear layers, in order.
    pub layers: Vec<LayerSummary>,
    /// Parameters of every tensor the model uses.
    pub parameters: usize,
    /// Bytes of those parameters in f32.
    pub f32_bytes: usize,
    /// Bytes of the INT8 build's weights (packed int8, scales, column sums, the word table as
    /// `[quantize] embeddings` says, f32 rest), without section alignment.
    pub int8_bytes: usize,
    /// The word-embedding table of a BERT.
    pub embeddings: Option<TableSummary>,
}

/// Checks the description at `spec_path` against its weights, as a generation would, and
/// summarizes the model; generates no code and writes nothing.
///
/// ```no_run
/// let s = dynq_cli::summary::check("examples/digits/digits.toml".as_ref()).unwrap();
/// assert_eq!(s.parameters, 4810);
/// println!("{s}");
/// ```
pub fn check(spec_path: &Path) -> Result<Summary> {
    let spec = SpecFile::load(spec_path)?;
    let weights = Weights::open(&spec.weights_path())?;
    let kernels = dynq_build::resolve_kernels(&spec, &dynq_build::Options::default())?;
    let model = dynq_build::load_model(&spec, &weights, Precision::Int8, kernels)?;
    summarize(&model, &weights)
}

/// Summarizes an expanded INT8 model, quantizing each INT8 layer for its error statistics.
pub fn summarize(model: &Model, weights: &Weights) -> Result<Summary> {
    let linears = model.linears();
    let bar = crate::progress::bar(linears.len(), "quantizing");
    let mut layers = Vec::with_capacity(linears.len());
    let mut int8_bytes = 0;
    for l in &linears {
        bar.inc(1);
        let stats = match l.precision {
            LayerPrecision::Int8(g) => Some(quantize_linear(l, g, weights.path())?.stats),
            LayerPrecision::F32 => None,
        };
        int8_bytes += stored_bytes(l);
        layers.push(LayerSummary {
            name: l.name.clone(),
            in_features: l.in_features,
            out_features: l.out_features,
            activation: l.activation,
            precision: l.precision,
            stats,
        });
    }
    bar.finish_and_clear();
    let linear_params: usize = linears
        .iter()
        .map(|l| l.weight.data.len() + l.bias.as_ref().map_or(0, |b| b.data.len()))
        .sum();
    let mut embeddings = None;
    let kind = model.body.kind();
    let small: usize = kind.small_tensors().iter().map(|t| t.data.len()).sum();
    let mut other_params = small;
    int8_bytes += 4 * small;
    if let Some((table, storage)) = kind.table() {
        let summary = TableSummary::new(table, storage);
        int8_bytes += summary.bytes;
        other_params += table.data.len();
        embeddings = Some(summary);
    }
    let architecture = kind.architecture();
    let parameters = linear_params + other_params;
    Ok(Summary {
        name: model.name.clone(),
        type_name: model.type_name.clone(),
        architecture,
        layers,
        parameters,
        f32_bytes: 4 * parameters,
        int8_bytes,
        embeddings,
    })
}

/// Bytes a linear layer takes in the INT8 build's blob.
fn stored_bytes(l: &Linear) -> usize {
    let n = l.out_features;
    let bias = l.bias.as_ref().map_or(0, |b| 4 * b.data.len());
    match l.precision {
        LayerPrecision::Int8(_) => {
            let n16 = n.div_ceil(dynq_build::pack::TILE_N) * dynq_build::pack::TILE_N;
            n16 * dynq_build::pack::padded_k(l.in_features) + 8 * n + bias
        }
        LayerPrecision::F32 if l.weight.source == SourceDtype::F16 => {
            2 * l.weight.data.len() + bias
        }
        LayerPrecision::F32 => 4 * l.weight.data.len() + bias,
    }
}

/// `int8 per channel`, `f32 (keep_f32)`.
pub(crate) fn storage_name(p: LayerPrecision) -> &'static str {
    match p {
        LayerPrecision::Int8(WeightGranularity::PerChannel) => "int8/channel",
        LayerPrecision::Int8(WeightGranularity::PerTensor) => "int8/tensor",
        LayerPrecision::F32 => "f32 (kept)",
    }
}

/// The TOML spelling of an activation.
pub(crate) fn activation_name(a: ActivationSpec) -> &'static str {
    match a {
        ActivationSpec::None => "none",
        a => a.name(),
    }
}

/// The width of a text column holding `cells`, between `min` and `max`.
pub(crate) fn column_width<'a>(
    cells: impl Iterator<Item = &'a str>,
    min: usize,
    max: usize,
) -> usize {
    cells.map(str::len).max().unwrap_or(min).clamp(min, max)
}

/// `45.6 dB`, or `exact` for an infinite SQNR (nothing was rounded).
fn db(sqnr_db: f32) -> String {
    if sqnr_db.is_infinite() {
        "exact".into()
    } else {
        format!("{sqnr_db:.1} dB")
    }
}

pub(crate) fn mib(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model `{}` ({}): ok", self.name, self.type_name)?;
        writeln!(f, "  {}", self.architecture)?;
        let names = self.layers.iter().map(|l| l.name.as_str());
        let table = self.embeddings.iter().map(|t| t.name.as_str());
        let width = column_width(names.chain(table), 5, usize::MAX);
        writeln!(
            f,
            "  {:<width$}  {:>13}  {:<10}  {:<12}  {:>11}",
            "layer", "in -> out", "activation", "storage", "weight SQNR"
        )?;
        if let Some(t) = &self.embeddings {
            writeln!(
                f,
                "  {:<width$}  {:>13}  {:<10}  {:<12}  {:>11}",
                t.name,
                format!("{} x {}", t.rows, t.width),
                "-",
                t.storage_name(),
                db(t.stats.sqnr_db)
            )?;
        }
        for l in &self.layers {
            let sqnr = l
                .stats
                .map_or_else(|| "-".to_string(), |s| format!("{:.1} dB", s.sqnr_db));
            writeln!(
                f,
                "  {:<width$}  {:>13}  {:<10}  {:<12}  {:>11}",
                l.name,
                format!("{} -> {}", l.in_features, l.out_features),
                activation_name(l.activation),
                storage_name(l.precision),
                sqnr
            )?;
        }
        writeln!(
            f,
            "  {} parameters: f32 {}, int8 {}",
            self.parameters,
            mib(self.f32_bytes),
            mib(self.int8_bytes)
        )
    }
}
