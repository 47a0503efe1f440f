//! The TOML model description: parsing, defaults and validation that needs no weights.
//!
//! Every error carries the file, line and column of the key at fault.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};

/// A parsed model description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `[model]`: name, preset, weights.
    pub model: ModelSection,
    /// `[mlp]`: the layer list for `preset = "mlp"`.
    #[serde(default)]
    pub mlp: Option<Spanned<MlpSection>>,
    /// `[bert]`: options of `preset = "bert"`.
    #[serde(default)]
    pub bert: Option<Spanned<EncoderSection>>,
    /// `[encoder]`: options of `preset = "encoder"` (any BERT-like family).
    #[serde(default)]
    pub encoder: Option<Spanned<EncoderSection>>,
    /// `[lstm]`: the layer stack of `preset = "lstm"`.
    #[serde(default)]
    pub lstm: Option<Spanned<RnnSection>>,
    /// `[gru]`: the layer stack of `preset = "gru"`.
    #[serde(default)]
    pub gru: Option<Spanned<RnnSection>>,
    /// `[quantize]`: every key optional.
    #[serde(default)]
    pub quantize: QuantizeSection,
    /// `[target]`: which kernels to pack weights for.
    #[serde(default)]
    pub target: TargetSection,
}

/// `[model]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A Rust identifier in snake_case; names the generated items.
    pub name: Spanned<String>,
    /// Which architecture the description follows.
    pub preset: Spanned<Preset>,
    /// The safetensors file, relative to the TOML file.
    pub weights: Spanned<String>,
    /// A Hugging Face `config.json` with the hyper-parameters (required for `bert` and
    /// `encoder`).
    #[serde(default)]
    pub config: Option<Spanned<String>>,
}

/// The architectures dynq can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// A stack of linear layers with activations.
    Mlp,
    /// A BERT encoder (Hugging Face `BertModel` / `BertForSequenceClassification`): the
    /// `encoder` preset with `family = "bert"`.
    Bert,
    /// A transformer encoder of a BERT-like family (BERT, RoBERTa, XLM-R, DistilBERT, MPNet,
    /// ELECTRA), chosen by `[encoder] family` or the config's `model_type`.
    Encoder,
    /// PyTorch's `nn.LSTM`.
    Lstm,
    /// PyTorch's `nn.GRU`.
    Gru,
}

impl Preset {
    /// The name used in the TOML.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Mlp => "mlp",
            Preset::Bert => "bert",
            Preset::Encoder => "encoder",
            Preset::Lstm => "lstm",
            Preset::Gru => "gru",
        }
    }
}

/// `[lstm]` / `[gru]`: the arguments of PyTorch's `nn.LSTM` / `nn.GRU` constructors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RnnSection {
    /// Tensor-name prefix: tensors are `{prefix}weight_ih_l0`, `{prefix}weight_hh_l0`,
    /// `{prefix}bias_ih_l0`, `{prefix}bias_hh_l0`, and `*_reverse` for the backward direction.
    #[serde(default)]
    pub prefix: String,
    /// Features per time step.
    pub input_size: Spanned<usize>,
    /// Hidden state width (per direction).
    pub hidden_size: Spanned<usize>,
    /// Stacked layers (default 1).
    #[serde(default = "one")]
    pub num_layers: Spanned<usize>,
    /// Run a second direction right to left and concatenate (default false).
    #[serde(default)]
    pub bidirectional: bool,
    /// Whether the bias tensors exist (default true).
    #[serde(default = "yes")]
    pub bias: bool,
    /// Inputs and outputs are `[batch][steps][features]` (default false: `[steps][batch]`).
    #[serde(default)]
    pub batch_first: bool,
}

fn one() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}

/// `[encoder]` (and `[bert]`, the same keys).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSection {
    /// The family (`bert`, `roberta`, `xlm-roberta`, `distilbert`, `mpnet`, `electra`);
    /// default: the family of the config's `model_type`. Under `[bert]`, only `bert`.
    #[serde(default)]
    pub family: Option<Spanned<String>>,
    /// Tensor-name prefix, e.g. `bert.` for `BertFor*` checkpoints (`roberta.`,
    /// `distilbert.`, ... for the other families' `*For*` checkpoints).
    #[serde(default)]
    pub prefix: String,
    /// Longest input accepted; default and upper bound `max_position_embeddings`.
    #[serde(default)]
    pub max_seq_len: Option<Spanned<usize>>,
    /// What the model returns (default `mean_pooled`).
    #[serde(default)]
    pub output: Option<Spanned<BertOutputSpec>>,
    /// L2-normalize pooled outputs (`mean_pooled`, `cls`).
    #[serde(default)]
    pub normalize: bool,
    /// Matryoshka truncation of pooled outputs (`mean_pooled`, `cls`): keep the first `dims`
    /// values and L2-normalize them again. Default: the whole hidden width.
    #[serde(default)]
    pub dims: Option<Spanned<usize>>,
    /// A Hugging Face `tokenizer.json`, embedded in the generated code for text input.
    #[serde(default)]
    pub tokenizer: Option<Spanned<String>>,
}

/// Output kinds of a BERT model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BertOutputSpec {
    /// Mean of the last hidden states over the attention mask.
    #[default]
    MeanPooled,
    /// The first token's last hidden state.
    Cls,
    /// Every last hidden state.
    LastHiddenState,
    /// The classification head's logits (BERT: pooler + classifier; RoBERTa, XLM-R, MPNet,
    /// ELECTRA: `classifier.dense` + `classifier.out_proj`; DistilBERT: `pre_classifier` +
    /// `classifier`).
    Logits,
}

impl BertOutputSpec {
    /// The TOML spelling: `mean_pooled`, `cls`, `last_hidden_state` or `logits`.
    pub fn name(self) -> &'static str {
        match self {
            BertOutputSpec::MeanPooled => "mean_pooled",
            BertOutputSpec::Cls => "cls",
            BertOutputSpec::LastHiddenState => "last_hidden_state",
            BertOutputSpec::Logits => "logits",
        }
    }
}

/// `[mlp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSection {
    /// Width of the input rows.
    pub input_size: Spanned<usize>,
    /// The layers, in order.
    pub layers: Spanned<Vec<Spanned<LayerSpec>>>,
}

/// One linear layer of an MLP.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a layer like { tensor = \"fc1\", activation = \"relu\" }"
)]
pub struct LayerSpec {
    /// Tensor prefix: the layer reads `<tensor>.weight` `[out, in]` and `<tensor>.bias` `[out]`.
    pub tensor: String,
    /// Activation after the layer.
    #[serde(default)]
    pub activation: ActivationSpec,
    /// Whether the layer has a bias tensor (default true).
    #[serde(default = "yes")]
    pub bias: bool,
}

fn yes() -> bool {
    true
}

/// Activation names accepted in the TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationSpec {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// Exact (erf) GELU.
    Gelu,
    /// Tanh-approximated GELU.
    GeluTanh,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
}

impl ActivationSpec {
    /// The name as the TOML spells it (`"relu"`, `"gelu_tanh"`, ...); `"no activation"` for none.
    pub fn name(self) -> &'static str {
        match self {
            ActivationSpec::None => "no activation",
            ActivationSpec::Relu => "relu",
            ActivationSpec::Gelu => "gelu",
            ActivationSpec::GeluTanh => "gelu_tanh",
            ActivationSpec::Tanh => "tanh",
            ActivationSpec::Sigmoid => "sigmoid",
        }
    }
}

/// Weight quantization granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum WeightGranularity {
    /// One scale per output channel.
    #[default]
    PerChannel,
    /// One scale for the whole matrix.
    PerTensor,
}

/// Activation quantization granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ActivationGranularity {
    /// One scale (and zero point) per row.
    #[default]
    PerToken,
    /// One scale (and zero point) per matrix.
    PerTensor,
}

/// Activation quantization scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SchemeSpec {
    /// int8, zero point 0.
    Symmetric,
    /// uint8 with a zero point: the default for every preset (skewed activations, such as
    /// GELU, ReLU and sigmoid outputs or inputs with an outlier feature, keep their range).
    #[default]
    Asymmetric,
}

/// How an INT8 build stores a BERT's word-embedding table (`[quantize] embeddings`).
///
/// The table is a lookup, not a GEMM operand: this is weight-only storage, dequantized row by
/// row when a token is embedded. f32 builds ignore it and keep the table unrounded.
///
/// ```
/// use dynq_build::spec::{EmbeddingStorage, SpecFile};
/// let toml = "[model]\nname = \"m\"\npreset = \"bert\"\nweights = \"m.safetensors\"\nconfig = \"config.json\"\n\n[bert]\n\n[quantize]\nembeddings = \"int8\"\n";
/// let spec = SpecFile::parse("m.toml".as_ref(), toml.into()).unwrap();
/// assert_eq!(spec.spec.quantize.embedding_storage(), EmbeddingStorage::Int8);
/// assert_eq!(EmbeddingStorage::default(), EmbeddingStorage::F16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingStorage {
    /// Symmetric INT8 with one f32 scale per row (absmax / 127): about a quarter of f32.
    Int8,
    /// f16, half of f32 (the default).
    #[default]
    F16,
    /// Unrounded: f32, or f16 when the checkpoint is f16 already (lossless).
    F32,
}

impl EmbeddingStorage {
    /// The TOML spelling: `int8`, `f16` or `f32`.
    pub fn name(self) -> &'static str {
        match self {
            EmbeddingStorage::Int8 => "int8",
            EmbeddingStorage::F16 => "f16",
            EmbeddingStorage::F32 => "f32",
        }
    }
}

/// `[quantize]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeSection {
    /// Weight granularity.
    #[serde(default)]
    pub weights: WeightGranularity,
    /// Activation granularity.
    #[serde(default)]
    pub activations: ActivationGranularity,
    /// Activation scheme.
    #[serde(default)]
    pub scheme: SchemeSpec,
    /// Tensor names (or prefixes) of layers left in f32.
    #[serde(default)]
    pub keep_f32: Vec<Spanned<String>>,
    /// Storage of a BERT's word-embedding table in INT8 builds (default f16); see
    /// [`EmbeddingStorage`].
    #[serde(default)]
    pub embeddings: Option<Spanned<EmbeddingStorage>>,
}

impl QuantizeSection {
    /// `embeddings`, or its default ([`EmbeddingStorage::F16`]).
    pub fn embedding_storage(&self) -> EmbeddingStorage {
        self.embeddings
            .as_ref()
            .map_or_else(EmbeddingStorage::default, |e| *e.get_ref())
    }
}

/// `[target]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// Kernels to pack weights for; default: every kernel of the target architecture.
    #[serde(default)]
    pub kernels: Option<Vec<Spanned<String>>>,
    /// Where the weights go: in the binary (default) or in a file next to it.
    #[serde(default)]
    pub weights: Option<Spanned<WeightsStorage>>,
    /// Which forward an encoder runs: its own, inlined, or the runtime's shared one. Unset:
    /// inlined, but shared in `dynq build`'s standalone binaries.
    #[serde(default)]
    pub forward: Option<Spanned<ForwardKind>>,
}

/// `[target] forward`: where an encoder's forward is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ForwardKind {
    /// In the model's crate, with its sizes as constants, for each of its kernels (the
    /// default, but for `dynq build`): minutes of compile time per encoder, even a tiny one.
    #[default]
    Inlined,
    /// dynq-runtime's forward, compiled once with sizes as values (its `shared-forward`
    /// feature): the model's crate compiles no forward, so a base-size model builds in seconds.
    /// Encoders only.
    Shared,
}

impl ForwardKind {
    /// The TOML and command-line spelling: `inlined` or `shared`.
    pub fn name(self) -> &'static str {
        match self {
            ForwardKind::Inlined => "inlined",
            ForwardKind::Shared => "shared",
        }
    }

    /// Parses [`ForwardKind::name`]'s spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inlined" => Some(ForwardKind::Inlined),
            "shared" => Some(ForwardKind::Shared),
            _ => None,
        }
    }
}

/// `[target] weights`: where the generated code finds its weight blob.
///
/// ```
/// use dynq_build::spec::{SpecFile, WeightsStorage};
/// let toml = "[model]\nname = \"m\"\npreset = \"mlp\"\nweights = \"m.safetensors\"\n\n[mlp]\ninput_size = 4\nlayers = [{ tensor = \"fc\" }]\n\n[target]\nweights = \"file\"\n";
/// let spec = SpecFile::parse("m.toml".as_ref(), toml.into()).unwrap();
/// assert_eq!(spec.spec.target.weights.unwrap().into_inner(), WeightsStorage::File);
/// assert_eq!(WeightsStorage::default(), WeightsStorage::Embedded);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum WeightsStorage {
    /// Inside the binary, through `include_bytes!` (the default): one self-contained file.
    #[default]
    Embedded,
    /// In `<model>.blob` beside the binary, memory-mapped at first use and checked against the
    /// build's content hash. The compiler never reads the weights, so a 100 MB model builds in
    /// seconds, and the binary stays small.
    File,
}

impl WeightsStorage {
    /// The TOML and command-line spelling: `embedded` or `file`.
    pub fn name(self) -> &'static str {
        match self {
            WeightsStorage::Embedded => "embedded",
            WeightsStorage::File => "file",
        }
    }

    /// Parses [`WeightsStorage::name`]'s spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "embedded" => Some(WeightsStorage::Embedded),
            "file" => Some(WeightsStorage::File),
            _ => None,
        }
    }
}

/// A parsed description together with where it came from, for error messages.
#[derive(Debug, Clone)]
pub struct SpecFile {
    /// The TOML file.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// The parsed description.
    pub spec: Spec,
}

/// The largest `input_size`, `hidden_size` or `num_layers` a description may give (2^32).
pub const MAX_SIZE: usize = 1 << 32;

/// Kernel names accepted in `[target] kernels`.
pub const KERNEL_NAMES: [&str; 7] = [
    "scalar",
    "avx2",
    "amx",
    "avx512vnni",
    "avxvnni",
    "neon_dot",
    "neon_i8mm",
];

impl SpecFile {
    /// Reads and parses a TOML description.
    pub fn load(path: &Path) -> Result<Self> {
        let source =
            std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", e))?;
        Self::parse(path, source)
    }

    /// Parses TOML text; `path` is used for error messages and to resolve relative paths.
    ///
    /// ```
    /// use dynq_build::spec::SpecFile;
    /// let toml = "[model]\nname = \"m\"\npreset = \"mlp\"\nweights = \"m.safetensors\"\n\n[mlp]\ninput_size = 4\nlayers = [{ tensor = \"fc\" }]\n";
    /// let spec = SpecFile::parse("m.toml".as_ref(), toml.into()).unwrap();
    /// assert_eq!(spec.spec.model.name.get_ref(), "m");
    /// let bad = SpecFile::parse("m.toml".as_ref(), toml.replace("input_size", "inputs")).unwrap_err();
    /// assert!(bad.to_string().starts_with("m.toml:7:1: unknown field `inputs`"), "{bad}");
    /// ```
    pub fn parse(path: &Path, source: String) -> Result<Self> {
        let spec: Spec = match toml::from_str(&source) {
            Ok(s) => s,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let mut message = e.message().trim().to_string();
                if let Some(key) = key_before(&source, span.start) {
                    if !message.contains(&format!("`{key}`")) {
                        message = format!("key `{key}`: {message}");
                    }
                }
                return Err(error_at(path, &source, span, message));
            }
        };
        let file = SpecFile {
            path: path.to_path_buf(),
            source,
            spec,
        };
        file.validate()?;
        Ok(file)
    }

    /// An error located at `span` of this file.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Error {
        error_at(&self.path, &self.source, span, message.into())
    }

    /// The directory relative paths are resolved against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// A path from the TOML, resolved against the TOML file's directory.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.dir().join(relative)
    }

    /// The weights file, resolved against the TOML file's directory.
    pub fn weights_path(&self) -> PathBuf {
        self.dir().join(self.spec.model.weights.get_ref())
    }

    /// The `[encoder]` or `[bert]` section, whichever the description has.
    pub fn encoder_section(&self) -> Option<&Spanned<EncoderSection>> {
        self.spec.encoder.as_ref().or(self.spec.bert.as_ref())
    }

    fn validate(&self) -> Result<()> {
        let m = &self.spec.model;
        let name = m.name.get_ref();
        if !is_snake_identifier(name) {
            return Err(self.error(
                m.name.span(),
                format!("key `model.name`: expected a snake_case Rust identifier such as `digits`, found {name:?}"),
            ));
        }
        // A section for another preset is a mistake (a copied file, a typo in `preset`).
        let sections = [
            (
                "mlp",
                Preset::Mlp,
                self.spec.mlp.as_ref().map(Spanned::span),
            ),
            (
                "bert",
                Preset::Bert,
                self.spec.bert.as_ref().map(Spanned::span),
            ),
            (
                "encoder",
                Preset::Encoder,
                self.spec.encoder.as_ref().map(Spanned::span),
            ),
            (
                "lstm",
                Preset::Lstm,
                self.spec.lstm.as_ref().map(Spanned::span),
            ),
            (
                "gru",
                Preset::Gru,
                self.spec.gru.as_ref().map(Spanned::span),
            ),
        ];
        for (section, preset, span) in sections {
            if let Some(span) = span {
                if preset != *m.preset.get_ref() {
                    return Err(self.error(
                        span,
                        format!(
                            "section [{section}] is for preset \"{section}\", but `model.preset` is \"{}\"",
                            m.preset.get_ref().name()
                        ),
                    ));
                }
            }
        }
        match m.preset.get_ref() {
            Preset::Lstm | Preset::Gru => {
                let preset = m.preset.get_ref().name();
                let section = match m.preset.get_ref() {
                    Preset::Lstm => &self.spec.lstm,
                    _ => &self.spec.gru,
                };
                let Some(rnn) = section else {
                    return Err(self.error(
                        m.preset.span(),
                        format!("key `model.preset`: preset \"{preset}\" needs an [{preset}] section with `input_size` and `hidden_size`"),
                    ));
                };
                let rnn = rnn.get_ref();
                for (key, v) in [
                    ("input_size", &rnn.input_size),
                    ("hidden_size", &rnn.hidden_size),
                    ("num_layers", &rnn.num_layers),
                ] {
                    if *v.get_ref() == 0 {
                        return Err(self.error(
                            v.span(),
                            format!("key `{preset}.{key}`: expected a positive number, found 0"),
                        ));
                    }
                    // Gate rows are 4 x hidden_size: keep every product of sizes far from
                    // overflow (a real tensor dimension is never near this).
                    if *v.get_ref() > MAX_SIZE {
                        return Err(self.error(
                            v.span(),
                            format!(
                                "key `{preset}.{key}`: expected at most {MAX_SIZE}, found {}",
                                v.get_ref()
                            ),
                        ));
                    }
                }
            }
            Preset::Mlp => {
                let Some(mlp) = &self.spec.mlp else {
                    return Err(self.error(
                        m.preset.span(),
                        "key `model.preset`: preset \"mlp\" needs an [mlp] section with `input_size` and `layers`",
                    ));
                };
                let mlp = mlp.get_ref();
                if *mlp.input_size.get_ref() == 0 {
                    return Err(self.error(
                        mlp.input_size.span(),
                        "key `mlp.input_size`: expected a positive width, found 0",
                    ));
                }
                if mlp.layers.get_ref().is_empty() {
                    return Err(self.error(
                        mlp.layers.span(),
                        "key `mlp.layers`: expected at least one layer, found none",
                    ));
                }
                for layer in mlp.layers.get_ref() {
                    if layer.get_ref().tensor.is_empty() {
                        return Err(self.error(
                            layer.span(),
                            "key `mlp.layers.tensor`: expected a tensor name prefix, found \"\"",
                        ));
                    }
                }
            }
            Preset::Bert | Preset::Encoder => {
                let preset = m.preset.get_ref().name();
                if self.encoder_section().is_none() {
                    return Err(self.error(
                        m.preset.span(),
                        format!("key `model.preset`: preset \"{preset}\" needs a [{preset}] section (it may be empty)"),
                    ));
                }
                if m.config.is_none() {
                    return Err(self.error(
                        m.preset.span(),
                        format!("key `model.config`: preset \"{preset}\" needs `config = \"config.json\"` (the checkpoint's Hugging Face config)"),
                    ));
                }
            }
        }
        if let Some(e) = &self.spec.quantize.embeddings {
            if !matches!(m.preset.get_ref(), Preset::Bert | Preset::Encoder) {
                return Err(self.error(
                    e.span(),
                    format!(
                        "key `quantize.embeddings`: preset \"{}\" has no embedding table (only \"bert\" and \"encoder\" have one); remove the key",
                        m.preset.get_ref().name()
                    ),
                ));
            }
        }
        if let Some(f) = &self.spec.target.forward {
            if *f.get_ref() == ForwardKind::Shared
                && !matches!(m.preset.get_ref(), Preset::Bert | Preset::Encoder)
            {
                return Err(self.error(
                    f.span(),
                    format!(
                        "key `target.forward`: expected \"inlined\" for preset \"{}\", found \"shared\" (the shared forward is for encoders: \"bert\" and \"encoder\")",
                        m.preset.get_ref().name()
                    ),
                ));
            }
        }
        if let Some(kernels) = &self.spec.target.kernels {
            for k in kernels {
                if !KERNEL_NAMES.contains(&k.get_ref().as_str()) {
                    return Err(self.error(
                        k.span(),
                        format!(
                            "key `target.kernels`: unknown kernel {:?}, expected one of {}",
                            k.get_ref(),
                            KERNEL_NAMES.join(", ")
                        ),
                    ));
                }
            }
            if kernels.is_empty() {
                return Err(self.error(
                    0..0,
                    "key `target.kernels`: expected at least one kernel, found none",
                ));
            }
        }
        Ok(())
    }
}

impl SpecFile {
    /// Whether `s` is a valid `model.name`: a snake_case identifier usable as a module name.
    ///
    /// ```
    /// use dynq_build::spec::SpecFile;
    /// assert!(SpecFile::is_model_name("minilm_l6"));
    /// assert!(!SpecFile::is_model_name("MiniLM") && !SpecFile::is_model_name("type"));
    /// ```
    pub fn is_model_name(s: &str) -> bool {
        is_snake_identifier(s)
    }
}

/// Whether `s` is a snake_case identifier usable as a Rust module name.
fn is_snake_identifier(s: &str) -> bool {
    const KEYWORDS: [&str; 40] = [
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
        "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
        "where", "while", "async", "await", "dyn", "abstract", "gen", "try",
    ];
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !KEYWORDS.contains(&s)
}

/// The key whose value starts at `offset` (`activation` in `{ activation = "swish" }`), for
/// serde's messages about values, which do not name the key.
fn key_before(source: &str, offset: usize) -> Option<&str> {
    let line_start = source[..offset.min(source.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let before = source[line_start..offset.min(source.len())].trim_end();
    let before = before.strip_suffix('=')?.trim_end();
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let key = &before[start..];
    (!key.is_empty()).then_some(key)
}

fn error_at(path: &Path, source: &str, span: Range<usize>, message: String) -> Error {
    let start = span.start.min(source.len());
    let before = &source[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Error::Spec {
        file: path.to_path_buf(),
        line,
        column,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"[model]
name = "digits"
preset = "mlp"
weights = "digits.safetensors"

[mlp]
input_size = 64
layers = [
  { tensor = "net.0", activation = "relu" },
  { tensor = "net.2" },
]
"#;

    fn parse(s: &str) -> Result<SpecFile> {
        SpecFile::parse(Path::new("dir/digits.toml"), s.to_string())
    }

    #[test]
    fn defaults_apply() {
        let f = parse(GOOD).unwrap();
        let q = &f.spec.quantize;
        assert_eq!(q.weights, WeightGranularity::PerChannel);
        assert_eq!(q.activations, ActivationGranularity::PerToken);
        assert_eq!(q.scheme, SchemeSpec::Asymmetric);
        assert!(q.keep_f32.is_empty());
        assert_eq!(q.embedding_storage(), EmbeddingStorage::F16);
        assert_eq!(f.weights_path(), Path::new("dir/digits.safetensors"));
        let layers = f.spec.mlp.as_ref().unwrap().get_ref().layers.get_ref();
        assert_eq!(layers[1].get_ref().activation, ActivationSpec::None);
        assert!(layers[1].get_ref().bias);
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let e = parse(&GOOD.replace("input_size = 64", "input_size = = 64")).unwrap_err();
        assert!(e.to_string().starts_with("dir/digits.toml:7:14: "), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = parse(&GOOD.replace("[mlp]", "[mlp]\nhidden = 3")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dir/digits.toml:7:1: unknown field `hidden`, expected `input_size` or `layers`"
        );
    }

    #[test]
    fn unknown_activation_is_an_error() {
        let e = parse(&GOOD.replace("\"relu\"", "\"swish\"")).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("dir/digits.toml:9:"), "{s}");
        assert!(s.contains("unknown variant `swish`"), "{s}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let e = parse(&GOOD.replace("input_size = 64", "input_size = \"64\"")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("dir/digits.toml:7:14: key `input_size`: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn missing_section_is_an_error() {
        let cut = GOOD.split("[mlp]").next().unwrap();
        let e = parse(cut).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dir/digits.toml:3:10: key `model.preset`: preset \"mlp\" needs an [mlp] section with `input_size` and `layers`"
        );
    }

    #[test]
    fn bad_name_is_an_error() {
        let e = parse(&GOOD.replace("\"digits\"", "\"Digits-2\"")).unwrap_err();
        assert!(
            e.to_string()
                .contains("key `model.name`: expected a snake_case Rust identifier"),
            "{e}"
        );
        assert!(parse(&GOOD.replace("\"digits\"", "\"type\"")).is_err());
    }

    #[test]
    fn unknown_kernel_is_an_error() {
        let e = parse(&format!("{GOOD}\n[target]\nkernels = [\"sse9\"]\n")).unwrap_err();
        assert!(e.to_string().contains("unknown kernel \"sse9\""), "{e}");
    }
}
