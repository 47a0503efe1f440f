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

/// How a ModernBERT classification head pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifierPooling {
    /// The first token (`"cls"`).
    Cls,
    /// The mean over the mask (`"mean"`).
    Mean,
}

/// The ModernBERT options beyond [`EncoderConfig`]'s: biases, the head, the attention kind of
/// each layer and their rotary bases. Every option that changes the computation is read and
/// checked; one dynq does not compute (a rotary scaling, a partial rotary factor, an unknown
/// pooling or activation) is refused with its key named.
#[derive(Debug, Clone)]
pub struct ModernBertOptions {
    /// `norm_bias`: the LayerNorms have a shift.
    pub norm_bias: bool,
    /// `attention_bias`: `Wqkv` and `Wo` have biases.
    pub attention_bias: bool,
    /// `mlp_bias`: `Wi` and `Wo` have biases.
    pub mlp_bias: bool,
    /// `classifier_bias`: the head's dense layer has a bias.
    pub classifier_bias: bool,
    /// `classifier_activation`.
    pub classifier_activation: String,
    /// `classifier_pooling`.
    pub classifier_pooling: ClassifierPooling,
    /// Per layer: `None` for global attention, `Some(w)` for a sliding window reaching `w`
    /// tokens each way (`local_attention / 2`).
    pub windows: Vec<Option<usize>>,
    /// RoPE base of the global layers.
    pub global_theta: f64,
    /// RoPE base of the local layers.
    pub local_theta: f64,
}

impl ModernBertOptions {
    /// Reads the ModernBERT options of the config.json at `path` for `layers` layers,
    /// in both spellings `transformers` writes (`global_attn_every_n_layers` and
    /// `*_rope_theta`, or `layer_types` and `rope_parameters`).
    pub fn load(path: &Path, layers: usize) -> Result<Self> {
        let v = read(path)?;
        let bad = |message: String| Error::Weights {
            file: path.to_path_buf(),
            message,
        };
        let flag = |key: &str, default: bool| -> Result<bool> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(x) => Err(bad(format!(
                    "key `{key}`: expected true or false, found {x}"
                ))),
            }
        };
        let text = |key: &str, default: &str| -> Result<String> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(default.to_string()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(x) => Err(bad(format!("key `{key}`: expected a string, found {x}"))),
            }
        };
        let number = |key: &str, x: &Value| -> Result<f64> {
            x.as_f64()
                .filter(|t| t.is_finite() && *t > 0.0)
                .ok_or_else(|| {
                    bad(format!(
                        "key `{key}`: expected a positive number, found {x}"
                    ))
                })
        };
        let classifier_activation = text("classifier_activation", "gelu")?;
        if !ACTIVATIONS.contains(&classifier_activation.as_str()) {
            return Err(bad(format!(
                "key `classifier_activation`: expected one of {}, found {classifier_activation:?}",
                ACTIVATIONS.map(|a| format!("{a:?}")).join(", ")
            )));
        }
        let classifier_pooling = match text("classifier_pooling", "cls")?.as_str() {
            "cls" => ClassifierPooling::Cls,
            "mean" => ClassifierPooling::Mean,
            other => {
                return Err(bad(format!(
                    "key `classifier_pooling`: expected \"cls\" or \"mean\", found {other:?}"
                )))
            }
        };
        let local_attention = match v.get("local_attention") {
            None | Some(Value::Null) => 128,
            Some(x) => x
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n >= 2)
                .ok_or_else(|| {
                    bad(format!(
                        "key `local_attention`: expected an integer of at least 2, found {x}"
                    ))
                })?,
        };
        let window = local_attention / 2;
        let globals: Vec<bool> = match v.get("layer_types") {
            None | Some(Value::Null) => {
                let every = match v.get("global_attn_every_n_layers") {
                    None | Some(Value::Null) => 3,
                    Some(x) => x
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|&n| n > 0)
                        .ok_or_else(|| {
                            bad(format!(
                                "key `global_attn_every_n_layers`: expected a positive integer, found {x}"
                            ))
                        })?,
                };
                (0..layers).map(|l| l % every == 0).collect()
            }
            Some(Value::Array(types)) => {
                if types.len() != layers {
                    return Err(bad(format!(
                        "key `layer_types`: expected {layers} entries (num_hidden_layers), found {}",
                        types.len()
                    )));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("full_attention") => Ok(true),
                        Some("sliding_attention") => Ok(false),
                        _ => Err(bad(format!(
                            "key `layer_types`: expected \"full_attention\" or \"sliding_attention\", found {t}"
                        ))),
                    })
                    .collect::<Result<_>>()?
            }
            Some(x) => {
                return Err(bad(format!(
                    "key `layer_types`: expected a list, found {x}"
                )))
            }
        };
        // Rotary bases: `rope_parameters` (per layer kind, or one for both), else the older
        // `global_rope_theta` / `local_rope_theta` (a null local base: the global one, as
        // the first ModernBERT code read it).
        let check_rope = |key: &str, p: &Value| -> Result<Option<f64>> {
            let Some(m) = p.as_object() else {
                return Err(bad(format!("key `{key}`: expected an object, found {p}")));
            };
            // The kind first: a scaled RoPE's other keys (its factor, ...) follow from it.
            for k in ["rope_type", "type"] {
                if let Some(x) = m.get(k).filter(|x| x.as_str() != Some("default")) {
                    return Err(bad(format!(
                        "key `{key}.{k}`: expected \"default\" (dynq computes plain RoPE, no scaling), found {x}"
                    )));
                }
            }
            for (k, x) in m {
                match k.as_str() {
                    "rope_type" | "type" | "rope_theta" => {}
                    "partial_rotary_factor" if x.as_f64() == Some(1.0) => {}
                    _ => {
                        return Err(bad(format!(
                            "key `{key}.{k}`: dynq computes plain RoPE over the whole head; this rotary option ({x}) is not computed"
                        )))
                    }
                }
            }
            m.get("rope_theta")
                .map(|x| number(&format!("{key}.rope_theta"), x))
                .transpose()
        };
        match v.get("rope_scaling") {
            None | Some(Value::Null) => {}
            Some(x) => {
                check_rope("rope_scaling", x)?;
            }
        }
        if let Some(x) = v.get("partial_rotary_factor").filter(|x| !x.is_null()) {
            if x.as_f64() != Some(1.0) {
                return Err(bad(format!(
                    "key `partial_rotary_factor`: expected 1 (rotary over the whole head), found {x}"
                )));
            }
        }
        let legacy = |key: &str, default: Option<f64>| -> Result<Option<f64>> {
            match v.get(key) {
                None => Ok(default),
                Some(Value::Null) => Ok(None),
                Some(x) => number(key, x).map(Some),
            }
        };
        let mut global_theta = legacy("global_rope_theta", Some(160_000.0))?;
        let mut local_theta = legacy("local_rope_theta", Some(10_000.0))?;
        if let Some(t) = v.get("rope_theta").filter(|x| !x.is_null()) {
            let t = number("rope_theta", t)?;
            (global_theta, local_theta) = (Some(t), Some(t));
        }
        match v.get("rope_parameters") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m))
                if m.contains_key("full_attention") || m.contains_key("sliding_attention") =>
            {
                for (k, p) in m {
                    let key = format!("rope_parameters.{k}");
                    let theta = check_rope(&key, p)?;
                    match k.as_str() {
                        "full_attention" => global_theta = theta.or(global_theta),
                        "sliding_attention" => local_theta = theta.or(local_theta),
                        _ => {
                            return Err(bad(format!(
                                "key `{key}`: expected the layer kinds \"full_attention\" and \"sliding_attention\""
                            )))
                        }
                    }
                }
            }
            Some(p) => {
                if let Some(t) = check_rope("rope_parameters", p)? {
                    (global_theta, local_theta) = (Some(t), Some(t));
                }
            }
        }
        let global_theta = global_theta.ok_or_else(|| {
            bad("key `global_rope_theta`: expected a positive number, found null".into())
        })?;
        if let Some(x) = v.get("head_dim").filter(|x| !x.is_null()) {
            let hidden = v.get("hidden_size").and_then(Value::as_u64);
            let heads = v.get("num_attention_heads").and_then(Value::as_u64);
            let d = hidden.zip(heads).map(|(h, n)| h / n.max(1));
            if x.as_u64() != d {
                return Err(bad(format!(
                    "key `head_dim`: expected hidden_size / num_attention_heads ({}), found {x}",
                    d.unwrap_or(0)
                )));
            }
        }
        Ok(ModernBertOptions {
            norm_bias: flag("norm_bias", false)?,
            attention_bias: flag("attention_bias", false)?,
            mlp_bias: flag("mlp_bias", false)?,
            classifier_bias: flag("classifier_bias", false)?,
            classifier_activation,
            classifier_pooling,
            windows: globals
                .into_iter()
                .map(|g| if g { None } else { Some(window) })
                .collect(),
            global_theta,
            local_theta: local_theta.unwrap_or(global_theta),
        })
    }
}
