//! Hugging Face `config.json` of BERT-like encoders, read through a family's key names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::presets::family::Family;

/// The FFN activations dynq computes exactly, by their config spelling.
pub const ACTIVATIONS: [&str; 4] = ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"];

/// The hyper-parameters dynq reads from an encoder's config.json; keys that do not change the
/// computation are ignored, keys that would (a decoder, cross-attention, relative position
/// embeddings of another kind) are refused.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// `model_type`, if the config has one.
    pub model_type: Option<String>,
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
    pub hidden_act: String,
    /// Position table rows.
    pub max_position_embeddings: usize,
    /// Token types (0 for families without them).
    pub type_vocab_size: usize,
    /// Embedding width (the hidden width unless the family projects).
    pub embedding_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// `pad_token_id` (RoBERTa-style positions start after it).
    pub pad_token_id: Option<u64>,
    /// Class names of a sequence-classification head.
    pub id2label: BTreeMap<String, String>,
    /// The family's key names, for messages.
    pub keys: crate::presets::family::ConfigKeys,
}

/// `model_type` and `architectures` of a config.json, for choosing the family.
pub fn model_type(path: &Path) -> Result<(Option<String>, Vec<String>)> {
    let v = read(path)?;
    let t = v
        .get("model_type")
        .and_then(Value::as_str)
        .map(String::from);
    let a = v
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok((t, a))
}

fn read(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::Weights {
        file: path.to_path_buf(),
        message: format!("not a valid config.json: {e}"),
    })?;
    if !v.is_object() {
        return Err(Error::Weights {
            file: path.to_path_buf(),
            message: "not a valid config.json: expected a JSON object".into(),
        });
    }
    Ok(v)
}

impl EncoderConfig {
    /// Reads and checks `config.json` with the key names of `family`.
    pub fn load(path: &Path, family: &Family) -> Result<Self> {
        let v = read(path)?;
        let bad = |message: String| Error::Weights {
            file: path.to_path_buf(),
            message,
        };
        let k = family.keys;
        let size = |key: &str| -> Result<usize> {
            match v.get(key) {
                Some(x) => x
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n <= crate::spec::MAX_SIZE)
                    .ok_or_else(|| {
                        bad(format!(
                            "key `{key}`: expected a non-negative integer up to {}, found {x}",
                            crate::spec::MAX_SIZE
                        ))
                    }),
                None => Err(bad(format!(
                    "key `{key}`: missing (a {} config.json has it)",
                    family.display
                ))),
            }
        };
        let text = |key: &str| -> Result<Option<String>> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(x) => Err(bad(format!("key `{key}`: expected a string, found {x}"))),
            }
        };
        let hidden_size = size(k.hidden)?;
        let num_attention_heads = size(k.heads)?;
        let c = EncoderConfig {
            model_type: text("model_type")?,
            vocab_size: size(k.vocab)?,
            hidden_size,
            num_hidden_layers: size(k.layers)?,
            num_attention_heads,
            intermediate_size: size(k.intermediate)?,
            hidden_act: text(k.act)?.unwrap_or_else(|| "gelu".into()),
            max_position_embeddings: size(k.max_positions)?,
            type_vocab_size: match k.type_vocab {
                Some(key) if v.get(key).is_some() => size(key)?,
                Some(_) => 2,
                None => 0,
            },
            embedding_size: match k.embedding_size {
                Some(key) if v.get(key).is_some() => size(key)?,
                _ => hidden_size,
            },
            layer_norm_eps: match k.eps.and_then(|key| v.get(key).map(|x| (key, x))) {
                Some((key, x)) => x
                    .as_f64()
                    .filter(|e| e.is_finite() && *e >= 0.0)
                    .ok_or_else(|| {
                        bad(format!(
                            "key `{key}`: expected a non-negative number, found {x}"
                        ))
                    })?,
                None => family.fixed_eps,
            },
            pad_token_id: v.get("pad_token_id").and_then(Value::as_u64),
            id2label: match v.get("id2label") {
                None | Some(Value::Null) => BTreeMap::new(),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(id, name)| match name.as_str() {
                        Some(n) => Ok((id.clone(), n.to_string())),
                        None => Err(bad(format!(
                            "key `id2label`: expected label names as strings, found {name}"
                        ))),
                    })
                    .collect::<Result<_>>()?,
                Some(x) => Err(bad(format!(
                    "key `id2label`: expected an object, found {x}"
                )))?,
            },
            keys: k,
        };
        if c.hidden_size == 0
            || c.num_attention_heads == 0
            || !c.hidden_size.is_multiple_of(c.num_attention_heads)
        {
            return Err(bad(format!(
                "key `{}`: expected a positive multiple of {} ({}), found {}",
                k.hidden, k.heads, c.num_attention_heads, c.hidden_size
            )));
        }
        for (key, n) in [
            (k.layers, c.num_hidden_layers),
            (k.intermediate, c.intermediate_size),
            (k.vocab, c.vocab_size),
            (k.max_positions, c.max_position_embeddings),
        ] {
            if n == 0 {
                return Err(bad(format!(
                    "key `{key}`: expected a positive value, found 0"
                )));
            }
        }
        if c.embedding_size == 0 {
            return Err(bad(format!(
                "key `{}`: expected a positive value, found 0",
                k.embedding_size.unwrap_or(k.hidden)
            )));
        }
        if !ACTIVATIONS.contains(&c.hidden_act.as_str()) {
            return Err(bad(format!(
                "key `{}`: expected one of {}, found {:?}",
                k.act,
                ACTIVATIONS.map(|a| format!("{a:?}")).join(", "),
                c.hidden_act
            )));
        }
        // Options that change what the model computes: refuse rather than run approximately.
        if let Some(p) = text("position_embedding_type")? {
            if p != "absolute" {
                return Err(bad(format!(
                    "key `position_embedding_type`: expected \"absolute\" (dynq computes learned absolute positions), found {p:?}"
                )));
            }
        }
        for key in ["is_decoder", "add_cross_attention"] {
            if v.get(key).and_then(Value::as_bool) == Some(true) {
                return Err(bad(format!(
                    "key `{key}`: expected false (dynq compiles encoders only), found true"
                )));
            }
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

    /// `vocab_size 10, hidden_size 4, ...` for messages about tensor shapes.
    pub fn note(&self) -> String {
        let k = self.keys;
        let mut s = format!(
            "{} {}, {} {}, {} {}, {} {}, {} {}",
            k.vocab,
            self.vocab_size,
            k.hidden,
            self.hidden_size,
            k.layers,
            self.num_hidden_layers,
            k.intermediate,
            self.intermediate_size,
            k.max_positions,
            self.max_position_embeddings
        );
        if let Some(t) = k.type_vocab {
            s += &format!(", {t} {}", self.type_vocab_size);
        }
        if let Some(e) = k.embedding_size {
            s += &format!(", {e} {}", self.embedding_size);
        }
        s
    }
}
