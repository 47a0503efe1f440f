//! Encoder families as data: each BERT-like family is one [`Family`] row in [`FAMILIES`] (its
//! `model_type`s, config keys, tensor names and the pieces it selects). The encoder preset
//! reads a checkpoint through its family's row; nothing else in the build knows family names.

use crate::spec::ActivationSpec;

/// How a family numbers positions (the runtime's `Positions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionKind {
    /// `0, 1, 2, ...`.
    Absolute,
    /// RoBERTa's: from `pad_token_id + 1`, padding tokens at `pad_token_id`.
    AfterPadding,
    /// No position table: rotary embeddings in attention (ModernBERT).
    Rotary,
}

/// How a family's layers are built, and so how its checkpoint is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// BERT's: post-norm layers, separate Q, K, V, a plain FFN, learned positions.
    PostNorm,
    /// ModernBERT's: pre-norm layers, fused `Wqkv`, rotary positions, global and
    /// sliding-window layers, a gated FFN, a final norm, optional biases.
    ModernBert,
}

/// The config.json keys a family uses for each hyper-parameter.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKeys {
    /// Vocabulary size.
    pub vocab: &'static str,
    /// Hidden width.
    pub hidden: &'static str,
    /// Encoder layers.
    pub layers: &'static str,
    /// Attention heads.
    pub heads: &'static str,
    /// FFN width.
    pub intermediate: &'static str,
    /// FFN activation.
    pub act: &'static str,
    /// LayerNorm epsilon; `None`: fixed at [`Family::fixed_eps`].
    pub eps: Option<&'static str>,
    /// Position table rows.
    pub max_positions: &'static str,
    /// Token types; `None`: the family has none.
    pub type_vocab: Option<&'static str>,
    /// Embedding width when it may differ from the hidden width (ELECTRA).
    pub embedding_size: Option<&'static str>,
}

/// Tensor names below the model prefix; `{l}` stands for a layer index.
#[derive(Debug, Clone, Copy)]
pub struct TensorNames {
    /// Word embeddings `[vocab, width]`.
    pub word: &'static str,
    /// Position embeddings `[positions, width]`.
    pub position: &'static str,
    /// Token-type embeddings, for families with token types.
    pub token_type: Option<&'static str>,
    /// Embedding LayerNorm.
    pub emb_norm: &'static str,
    /// Embedding projection (ELECTRA), present when the embedding width differs.
    pub projection: Option<&'static str>,
    /// MPNet's relative attention bias `[buckets, heads]`.
    pub relative: Option<&'static str>,
    /// A layer's prefix, e.g. `encoder.layer.{l}`.
    pub layer: &'static str,
    /// Query, key and value projections, below the layer prefix (ModernBERT: one fused
    /// projection, named three times).
    pub qkv: [&'static str; 3],
    /// Attention output projection.
    pub attn_out: &'static str,
    /// LayerNorm after attention.
    pub norm1: &'static str,
    /// FFN up-projection.
    pub ffn_up: &'static str,
    /// FFN down-projection.
    pub ffn_down: &'static str,
    /// LayerNorm after the FFN.
    pub norm2: &'static str,
    /// Tensor-name beginnings (below the prefix) that belong to the encoder body: every tensor
    /// there must be read, so a checkpoint with pieces the family does not compute is refused.
    pub body: &'static [&'static str],
}

/// The sequence-classification head on the first token.
#[derive(Debug, Clone, Copy)]
pub struct HeadNames {
    /// The dense layer; `{prefix}` stands for the model prefix (BERT's pooler is inside it).
    pub dense: &'static str,
    /// Its activation.
    pub act: ActivationSpec,
    /// The output layer (outside the prefix).
    pub out: &'static str,
}

/// One BERT-like family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The `[encoder] family` spelling.
    pub name: &'static str,
    /// How it is written in prose.
    pub display: &'static str,
    /// config.json `model_type`s of this family.
    pub model_types: &'static [&'static str],
    /// The prefix of its `*For*` checkpoints (`roberta.`); the base model has none.
    pub prefix: &'static str,
    /// Config keys.
    pub keys: ConfigKeys,
    /// LayerNorm epsilon when the config does not carry one.
    pub fixed_eps: f64,
    /// Tensor names.
    pub tensors: TensorNames,
    /// Position numbering.
    pub positions: PositionKind,
    /// The classification head.
    pub head: HeadNames,
    /// How its layers are built.
    pub arch: Arch,
}

const BERT_KEYS: ConfigKeys = ConfigKeys {
    vocab: "vocab_size",
    hidden: "hidden_size",
    layers: "num_hidden_layers",
    heads: "num_attention_heads",
    intermediate: "intermediate_size",
    act: "hidden_act",
    eps: Some("layer_norm_eps"),
    max_positions: "max_position_embeddings",
    type_vocab: Some("type_vocab_size"),
    embedding_size: None,
};

const BERT_TENSORS: TensorNames = TensorNames {
    word: "embeddings.word_embeddings.weight",
    position: "embeddings.position_embeddings.weight",
    token_type: Some("embeddings.token_type_embeddings.weight"),
    emb_norm: "embeddings.LayerNorm",
    projection: None,
    relative: None,
    layer: "encoder.layer.{l}",
    qkv: [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
    ],
    attn_out: "attention.output.dense",
    norm1: "attention.output.LayerNorm",
    ffn_up: "intermediate.dense",
    ffn_down: "output.dense",
    norm2: "output.LayerNorm",
    body: &["embeddings.", "encoder."],
};

/// RoBERTa's and XLM-R's head (also MPNet's): dense, tanh, out_proj.
const ROBERTA_HEAD: HeadNames = HeadNames {
    dense: "classifier.dense",
    act: ActivationSpec::Tanh,
    out: "classifier.out_proj",
};

const ROBERTA: Family = Family {
    name: "roberta",
    display: "RoBERTa",
    model_types: &["roberta"],
    prefix: "roberta.",
    keys: BERT_KEYS,
    fixed_eps: 1e-12,
    tensors: BERT_TENSORS,
    positions: PositionKind::AfterPadding,
    head: ROBERTA_HEAD,
    arch: Arch::PostNorm,
};

/// Every family dynq compiles, in the order error messages list them.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "bert",
        display: "BERT",
        model_types: &["bert"],
        prefix: "bert.",
        keys: BERT_KEYS,
        fixed_eps: 1e-12,
        tensors: BERT_TENSORS,
        positions: PositionKind::Absolute,
        head: HeadNames {
            dense: "{prefix}pooler.dense",
            act: ActivationSpec::Tanh,
            out: "classifier",
        },
        arch: Arch::PostNorm,
    },
    ROBERTA,
    Family {
        name: "xlm-roberta",
        display: "XLM-RoBERTa",
        model_types: &["xlm-roberta"],
        ..ROBERTA
    },
    Family {
        name: "distilbert",
        display: "DistilBERT",
        model_types: &["distilbert"],
        prefix: "distilbert.",
        keys: ConfigKeys {
            vocab: "vocab_size",
            hidden: "dim",
            layers: "n_layers",
            heads: "n_heads",
            intermediate: "hidden_dim",
            act: "activation",
            eps: None,
            max_positions: "max_position_embeddings",
            type_vocab: None,
            embedding_size: None,
        },
        // transformers' DistilBERT hard-codes its LayerNorms' epsilon.
        fixed_eps: 1e-12,
        tensors: TensorNames {
            word: "embeddings.word_embeddings.weight",
            position: "embeddings.position_embeddings.weight",
            token_type: None,
            emb_norm: "embeddings.LayerNorm",
            projection: None,
            relative: None,
            layer: "transformer.layer.{l}",
            qkv: ["attention.q_lin", "attention.k_lin", "attention.v_lin"],
            attn_out: "attention.out_lin",
            norm1: "sa_layer_norm",
            ffn_up: "ffn.lin1",
            ffn_down: "ffn.lin2",
            norm2: "output_layer_norm",
            body: &["embeddings.", "transformer."],
        },
        positions: PositionKind::Absolute,
        head: HeadNames {
            dense: "pre_classifier",
            act: ActivationSpec::Relu,
            out: "classifier",
        },
        arch: Arch::PostNorm,
    },
    Family {
        name: "mpnet",
        display: "MPNet",
        model_types: &["mpnet"],
        prefix: "mpnet.",
        keys: ConfigKeys {
            type_vocab: None,
            ..BERT_KEYS
        },
        fixed_eps: 1e-12,
        tensors: TensorNames {
            token_type: None,
            relative: Some("encoder.relative_attention_bias.weight"),
            qkv: ["attention.attn.q", "attention.attn.k", "attention.attn.v"],
            attn_out: "attention.attn.o",
            norm1: "attention.LayerNorm",
            ..BERT_TENSORS
        },
        positions: PositionKind::AfterPadding,
        head: ROBERTA_HEAD,
        arch: Arch::PostNorm,
    },
    Family {
        name: "electra",
        display: "ELECTRA",
        model_types: &["electra"],
        prefix: "electra.",
        keys: ConfigKeys {
            embedding_size: Some("embedding_size"),
            ..BERT_KEYS
        },
        fixed_eps: 1e-12,
        tensors: TensorNames {
            projection: Some("embeddings_project"),
            body: &["embeddings.", "encoder.", "embeddings_project."],
            ..BERT_TENSORS
        },
        positions: PositionKind::Absolute,
        // transformers' ElectraClassificationHead uses GELU (not the config's hidden_act).
        head: HeadNames {
            dense: "classifier.dense",
            act: ActivationSpec::Gelu,
            out: "classifier.out_proj",
        },
        arch: Arch::PostNorm,
    },
    Family {
        name: "modernbert",
        display: "ModernBERT",
        model_types: &["modernbert"],
        prefix: "model.",
        keys: ConfigKeys {
            vocab: "vocab_size",
            hidden: "hidden_size",
            layers: "num_hidden_layers",
            heads: "num_attention_heads",
            intermediate: "intermediate_size",
            act: "hidden_activation",
            eps: Some("norm_eps"),
            max_positions: "max_position_embeddings",
            type_vocab: None,
            embedding_size: None,
        },
        fixed_eps: 1e-5,
        tensors: TensorNames {
            word: "embeddings.tok_embeddings.weight",
            position: "",
            token_type: None,
            emb_norm: "embeddings.norm",
            projection: None,
            relative: None,
            layer: "layers.{l}",
            qkv: ["attn.Wqkv", "attn.Wqkv", "attn.Wqkv"],
            attn_out: "attn.Wo",
            norm1: "attn_norm",
            ffn_up: "mlp.Wi",
            ffn_down: "mlp.Wo",
            norm2: "mlp_norm",
            body: &["embeddings.", "layers.", "final_norm."],
        },
        positions: PositionKind::Rotary,
        // `classifier_activation` in the config (GELU by default); the head's pooling
        // (`classifier_pooling`) and norm come from the config too.
        head: HeadNames {
            dense: "head.dense",
            act: ActivationSpec::Gelu,
            out: "classifier",
        },
        arch: Arch::ModernBert,
    },
];

/// The family named `name` in a TOML.
pub fn by_name(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// The family of a config.json `model_type`.
pub fn by_model_type(model_type: &str) -> Option<&'static Family> {
    FAMILIES
        .iter()
        .find(|f| f.model_types.contains(&model_type))
}

/// `"bert", "roberta", ...` for error messages.
pub fn names() -> String {
    FAMILIES
        .iter()
        .map(|f| format!("{:?}", f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The supported `model_type`s, for error messages.
pub fn model_types() -> String {
    FAMILIES
        .iter()
        .flat_map(|f| f.model_types)
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Family {
    /// A layer's tensor prefix below the model prefix.
    pub fn layer(&self, l: usize) -> String {
        self.tensors.layer.replace("{l}", &l.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_are_unique() {
        for (i, f) in FAMILIES.iter().enumerate() {
            for g in &FAMILIES[i + 1..] {
                assert_ne!(f.name, g.name);
                assert!(f.model_types.iter().all(|t| !g.model_types.contains(t)));
            }
            assert_eq!(by_name(f.name).map(|g| g.name), Some(f.name));
        }
        assert_eq!(
            by_model_type("xlm-roberta").map(|f| f.name),
            Some("xlm-roberta")
        );
        assert!(by_model_type("gpt2").is_none());
    }
}
