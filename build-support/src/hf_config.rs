//! Hugging Face `config.json` for BERT-family checkpoints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The hyper-parameters dynq reads from a `BertConfig`; other keys are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// FFN width.
    pub intermediate_size: usize,
    /// FFN activation: `gelu`, `gelu_new`, `gelu_pytorch_tanh` or `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Positions the checkpoint has embeddings for.
    pub max_position_embeddings: usize,
    /// Token types.
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Only `absolute` is supported.
    #[serde(default = "default_position")]
    pub position_embedding_type: String,
    /// Class names of a sequence-classification head.
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", e))?;
        let bad = |message: String| Error::Weights {
            file: path.to_path_buf(),
            message,
        };
        let c: BertConfig = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a valid BERT config.json: {e}")))?;
        if c.hidden_size == 0
            || c.num_attention_heads == 0
            || !c.hidden_size.is_multiple_of(c.num_attention_heads)
        {
            return Err(bad(format!(
                "key `hidden_size`: expected a positive multiple of num_attention_heads ({}), found {}",
                c.num_attention_heads, c.hidden_size
            )));
        }
        if c.num_hidden_layers == 0 || c.intermediate_size == 0 || c.vocab_size == 0 {
            return Err(bad("keys `num_hidden_layers`, `intermediate_size`, `vocab_size`: expected positive values".into()));
        }
        if c.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "key `position_embedding_type`: expected \"absolute\", found {:?}",
                c.position_embedding_type
            )));
        }
        if !["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"].contains(&c.hidden_act.as_str()) {
            return Err(bad(format!(
                "key `hidden_act`: expected \"gelu\", \"gelu_new\", \"gelu_pytorch_tanh\" or \"relu\", found {:?}",
                c.hidden_act
            )));
        }
        Ok(c)
    }

    /// Class names in id order (empty without `id2label`).
    pub fn labels(&self, path: &Path) -> Result<Vec<String>> {
        let mut labels = vec![String::new(); self.id2label.len()];
        for (id, name) in &self.id2label {
            match id.parse::<usize>() {
                Ok(i) if i < labels.len() => labels[i] = name.clone(),
                _ => {
                    return Err(Error::Weights {
                        file: PathBuf::from(path),
                        message: format!(
                            "key `id2label`: expected ids 0..{}, found {id:?}",
                            labels.len()
                        ),
                    })
                }
            }
        }
        Ok(labels)
    }
}
