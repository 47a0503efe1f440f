//! The model IR: ops over named tensors with constant shapes.
//!
//! Presets expand a TOML description into it; quantization, packing and code generation read it.

pub use crate::presets::ModelKind;
use crate::spec::{
    ActivationGranularity, ActivationSpec, BertOutputSpec, EmbeddingStorage, SchemeSpec,
    WeightGranularity,
};
use crate::weights::Tensor;

/// Numeric precision of a generated model or of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// INT8 weights, dynamically quantized activations (layers in `keep_f32` stay f32).
    #[default]
    Int8,
    /// Everything in f32: the unquantized reference of the same model.
    F32,
}

impl Precision {
    /// Parses `int8` or `f32`.
    ///
    /// ```
    /// use dynq_build::Precision;
    /// assert_eq!(Precision::from_name("f32"), Some(Precision::F32));
    /// assert_eq!(Precision::from_name("fp16"), None);
    /// ```
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "int8" => Some(Precision::Int8),
            "f32" => Some(Precision::F32),
            _ => None,
        }
    }

    /// `int8` or `f32`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            Precision::F32 => "f32",
        }
    }
}

/// How a layer's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPrecision {
    /// INT8 weights with the given granularity.
    Int8(WeightGranularity),
    /// f32 weights.
    F32,
}

/// A linear layer `y = act(x W^T + b)`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Tensor prefix in the weights file (`net.0`).
    pub name: String,
    /// Rust identifier derived from the name (`net_0`).
    pub ident: String,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
    /// Activation after the layer.
    pub activation: ActivationSpec,
    /// Storage precision.
    pub precision: LayerPrecision,
}

/// How activations are quantized before each integer GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActQuantSpec {
    /// Per token or per tensor.
    pub granularity: ActivationGranularity,
    /// Symmetric or asymmetric.
    pub scheme: SchemeSpec,
}

/// A whole model.
#[derive(Debug, Clone)]
pub struct Model {
    /// snake_case name (module name).
    pub name: String,
    /// CamelCase name (type name).
    pub type_name: String,
    /// The precision the model was generated for.
    pub precision: Precision,
    /// Activation quantization.
    pub act_quant: ActQuantSpec,
    /// Kernels to pack weights for and dispatch among.
    pub kernels: Vec<String>,
    /// The ops.
    pub body: Body,
}

/// The preset-specific part of a model: one variant per preset folder (`presets/mlp`,
/// `presets/encoder`, `presets/rnn`), each implementing [`ModelKind`], through which everything
/// after expansion reaches it ([`Body::kind`]).
#[derive(Debug, Clone)]
pub enum Body {
    /// A stack of linear layers.
    Mlp(Mlp),
    /// A transformer encoder (BERT and its relatives).
    Encoder(Box<Encoder>),
    /// An LSTM or GRU stack.
    Rnn(Box<Rnn>),
}

impl Body {
    /// The preset plug-in behind this body.
    pub fn kind(&self) -> &dyn ModelKind {
        match self {
            Body::Mlp(m) => m,
            Body::Encoder(e) => &**e,
            Body::Rnn(r) => &**r,
        }
    }
}

/// A stack of linear layers (`preset = "mlp"`).
#[derive(Debug, Clone)]
pub struct Mlp {
    /// Input width.
    pub input_size: usize,
    /// Layers in order.
    pub layers: Vec<Linear>,
}

/// The recurrent cell of an [`Rnn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// `nn.LSTM`: gates i, f, g, o.
    Lstm,
    /// `nn.GRU`: gates r, z, n.
    Gru,
}

impl Cell {
    /// Gate blocks per weight matrix.
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// One direction of a recurrent layer.
#[derive(Debug, Clone)]
pub struct RnnDirection {
    /// `W_ih` `[gates * hidden, in]` with `b_ih`.
    pub input: Linear,
    /// `W_hh` `[gates * hidden, hidden]` with `b_hh`.
    pub hidden: Linear,
}

/// An LSTM or GRU stack with PyTorch's semantics.
#[derive(Debug, Clone)]
pub struct Rnn {
    /// LSTM or GRU.
    pub cell: Cell,
    /// Features per step.
    pub input_size: usize,
    /// Hidden width per direction.
    pub hidden_size: usize,
    /// 1 or 2.
    pub directions: usize,
    /// `[batch][steps]` input and output layout.
    pub batch_first: bool,
    /// Per layer, the directions (forward first).
    pub layers: Vec<Vec<RnnDirection>>,
}

/// LayerNorm parameters.
#[derive(Debug, Clone)]
pub struct Norm {
    /// Scale, `[hidden]`.
    pub gamma: Tensor,
    /// Shift, `[hidden]`.
    pub beta: Tensor,
}

/// One encoder layer.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    /// Q, K, V fused: `[3 hidden, hidden]`.
    pub qkv: Linear,
    /// Attention output projection.
    pub attn_out: Linear,
    /// Post-norm: the LayerNorm after attention. Pre-norm: the attention input's, `None`
    /// where the layer has none (ModernBERT's first layer).
    pub norm1: Option<Norm>,
    /// FFN up-projection (with the activation; gated FFNs: `[2 intermediate, hidden]`, the
    /// activation applied to the first half times the second).
    pub ffn_up: Linear,
    /// FFN down-projection.
    pub ffn_down: Linear,
    /// Post-norm: the LayerNorm after the FFN. Pre-norm: the FFN input's.
    pub norm2: Norm,
    /// Index into [`Encoder::rotary`] of this layer's rotary table, if any.
    pub rotary: Option<usize>,
    /// Sliding-window attention: tokens attend to tokens at most this far away.
    pub window: Option<usize>,
}

/// A rotary position table: `[positions, head_dim]`, per position the cosines then the sines
/// of `position * inv_freq`.
#[derive(Debug, Clone)]
pub struct RotaryTable {
    /// The RoPE base.
    pub theta: f64,
    /// The table (its name says which layers use it).
    pub table: Tensor,
}

/// How position ids are assigned (the runtime's `Positions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// `0, 1, 2, ...`.
    Absolute,
    /// RoBERTa's numbering after the padding id.
    AfterPadding(u32),
    /// No position table: rotary positions in attention.
    None,
}

/// MPNet's relative position bias.
#[derive(Debug, Clone)]
pub struct RelativeBias {
    /// `[num_buckets, heads]`.
    pub table: Tensor,
    /// Rows of the table used by the bucketing (32 in MPNet).
    pub num_buckets: usize,
    /// Distance from which every position shares the last bucket (128 in MPNet).
    pub max_distance: usize,
}

/// A classification head: `out(norm(dense(pool(x))))`.
#[derive(Debug, Clone)]
pub struct Head {
    /// Mean pooling over the mask instead of the first token (ModernBERT's
    /// `classifier_pooling = "mean"`).
    pub mean: bool,
    /// The dense layer, its activation included.
    pub dense: Linear,
    /// A LayerNorm after the activation (ModernBERT).
    pub norm: Option<Norm>,
    /// The output layer.
    pub out: Linear,
}

/// A transformer encoder of a BERT-like family, with constant sizes.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// The family's name (`bert`, `roberta`, ...).
    pub family: &'static str,
    /// The family as written in prose (`RoBERTa`).
    pub family_display: &'static str,
    /// Vocabulary size.
    pub vocab: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Width of the embedding tables (differs from `hidden` with a projection).
    pub embedding_width: usize,
    /// Attention heads.
    pub heads: usize,
    /// FFN width.
    pub intermediate: usize,
    /// Token types (0: none).
    pub type_vocab: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// FFN activation.
    pub act: ActivationSpec,
    /// Pre-norm layers with a final norm (ModernBERT) instead of post-norm (BERT).
    pub pre_norm: bool,
    /// Gated FFN (GeGLU): `act(input) * gate` from the up-projection's two halves.
    pub gated: bool,
    /// Longest input accepted.
    pub max_seq_len: usize,
    /// The padding token id (`pad_token_id`), when the config names one in the vocabulary:
    /// token ids that end with it and come without a mask are refused.
    pub pad_id: Option<u32>,
    /// What the model returns.
    pub output: BertOutputSpec,
    /// L2-normalize pooled outputs.
    pub normalize: bool,
    /// `[vocab, embedding_width]`.
    pub word: Tensor,
    /// How the build stores `word`: `[quantize] embeddings` in INT8 builds,
    /// [`EmbeddingStorage::F32`] (unrounded) in f32 builds.
    pub word_storage: EmbeddingStorage,
    /// Position numbering.
    pub positions: Positions,
    /// `[rows, embedding_width]`: the rows `max_seq_len` tokens can reach (none for
    /// [`Positions::None`]).
    pub position: Option<Tensor>,
    /// `[type_vocab, embedding_width]`, for families with token types.
    pub token_type: Option<Tensor>,
    /// Embedding LayerNorm.
    pub emb_norm: Norm,
    /// Embedding projection (ELECTRA).
    pub projection: Option<Linear>,
    /// Relative position bias (MPNet).
    pub relative: Option<RelativeBias>,
    /// Encoder layers.
    pub layers: Vec<EncoderLayer>,
    /// Rotary tables the layers refer to (ModernBERT: global and local).
    pub rotary: Vec<RotaryTable>,
    /// The norm after the last layer (pre-norm encoders).
    pub final_norm: Option<Norm>,
    /// Matryoshka truncation of pooled outputs (`[encoder] dims`), renormalized.
    pub dims: Option<usize>,
    /// Classification head, for `logits`.
    pub head: Option<Head>,
    /// Class names, in id order.
    pub labels: Vec<String>,
    /// The `tokenizer.json` text, embedded in the generated code.
    pub tokenizer: Option<String>,
}

impl Model {
    /// Every linear layer, in blob order.
    pub fn linears(&self) -> Vec<&Linear> {
        self.body.kind().linears()
    }
}

/// `digits_v2` -> `DigitsV2`.
///
/// ```
/// assert_eq!(dynq_build::ir::camel_case("all_minilm_l6"), "AllMinilmL6");
/// ```
pub fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map_or(String::new(), |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect()
}

/// A Rust identifier for a tensor prefix: `encoder.layer.0` -> `encoder_layer_0`.
///
/// ```
/// assert_eq!(dynq_build::ir::ident_for("net.0"), "net_0");
/// assert_eq!(dynq_build::ir::ident_for("0.Fc"), "t_0_fc");
/// ```
pub fn ident_for(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert_str(0, "t_");
    }
    s
}
