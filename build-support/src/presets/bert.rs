//! `preset = "bert"`: Hugging Face BERT checkpoints (`BertModel`, `BertForSequenceClassification`).

use super::KeepF32;
use crate::error::{Error, Result};
use crate::hf_config::BertConfig;
use crate::ir::{ident_for, Bert, BertLayer, Body, Linear, Norm, Precision};
use crate::spec::{ActivationSpec, BertOutputSpec, EmbeddingStorage, SpecFile};
use crate::weights::{Tensor, Weights};

/// Reads tensors under the configured prefix and explains shape errors with the config.
struct Reader<'a> {
    weights: &'a Weights,
    prefix: &'a str,
    config_note: String,
}

impl Reader<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get_exact(&format!("{}{name}", self.prefix), shape)
    }

    fn get_exact(&self, full: &str, shape: &[usize]) -> Result<Tensor> {
        self.weights.get(full, shape).map_err(|e| match e {
            Error::Tensor {
                file,
                tensor,
                message,
            } if message.starts_with("expected shape") || message.starts_with("not found") => {
                Error::Tensor {
                    file,
                    tensor,
                    message: format!("{message} ({})", self.config_note),
                }
            }
            e => e,
        })
    }

    fn norm(&self, name: &str, h: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.get(&format!("{name}.weight"), &[h])?,
            beta: self.get(&format!("{name}.bias"), &[h])?,
        })
    }

    fn linear(
        &self,
        keep: &KeepF32<'_>,
        name: &str,
        k: usize,
        n: usize,
        act: ActivationSpec,
    ) -> Result<Linear> {
        let full = format!("{}{name}", self.prefix);
        self.linear_exact(keep, &full, k, n, act)
    }

    fn linear_exact(
        &self,
        keep: &KeepF32<'_>,
        full: &str,
        k: usize,
        n: usize,
        act: ActivationSpec,
    ) -> Result<Linear> {
        Ok(Linear {
            name: full.to_string(),
            ident: ident_for(full),
            in_features: k,
            out_features: n,
            weight: self.get_exact(&format!("{full}.weight"), &[n, k])?,
            bias: Some(self.get_exact(&format!("{full}.bias"), &[n])?),
            activation: act,
            precision: keep.precision_of(&[full]),
        })
    }
}

/// Q, K and V of one layer as one `[3h, h]` linear layer.
fn fused_qkv(r: &Reader<'_>, keep: &KeepF32<'_>, layer: &str, h: usize) -> Result<Linear> {
    let parts =
        ["query", "key", "value"].map(|p| format!("{}{layer}.attention.self.{p}", r.prefix));
    let mut weight = Vec::with_capacity(3 * h * h);
    let mut bias = Vec::with_capacity(3 * h);
    let mut sources = Vec::new();
    for p in &parts {
        let w = r.get_exact(&format!("{p}.weight"), &[h, h])?;
        let b = r.get_exact(&format!("{p}.bias"), &[h])?;
        sources.push(w.source);
        weight.extend(w.data);
        bias.extend(b.data);
    }
    let name = format!("{}{layer}.attention.self.qkv", r.prefix);
    let source = sources[0];
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    Ok(Linear {
        ident: ident_for(&name),
        in_features: h,
        out_features: 3 * h,
        weight: Tensor {
            name: format!(
                "{}{layer}.attention.self.{{query,key,value}}.weight",
                r.prefix
            ),
            source,
            shape: vec![3 * h, h],
            data: weight,
        },
        bias: Some(Tensor {
            name: format!(
                "{}{layer}.attention.self.{{query,key,value}}.bias",
                r.prefix
            ),
            source,
            shape: vec![3 * h],
            data: bias,
        }),
        activation: ActivationSpec::None,
        precision: keep.precision_of(&refs),
        name,
    })
}

pub(super) fn expand(
    spec: &SpecFile,
    weights: &Weights,
    keep: &KeepF32<'_>,
    precision: Precision,
) -> Result<Body> {
    let s = &spec.spec;
    let section = s.bert.as_ref().expect("validated by spec").get_ref();
    let config_rel = s.model.config.as_ref().expect("validated by spec");
    let config_path = spec.resolve(config_rel.get_ref());
    let c = BertConfig::load(&config_path)?;
    let prefix = section.prefix.as_str();

    let word_name = format!("{prefix}embeddings.word_embeddings.weight");
    if !weights.contains(&word_name) {
        let hint = ["bert.", "model.", "roberta.", ""].into_iter().find(|p| {
            *p != prefix && weights.contains(&format!("{p}embeddings.word_embeddings.weight"))
        });
        if let Some(p) = hint {
            return Err(spec.error(
                config_rel.span(),
                format!(
                    "key `bert.prefix`: {} has no `{word_name}` but has `{p}embeddings.word_embeddings.weight`: set prefix = {p:?}",
                    weights.path().display()
                ),
            ));
        }
    }

    let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let max_seq_len = match &section.max_seq_len {
        Some(m) if *m.get_ref() == 0 || *m.get_ref() > c.max_position_embeddings => {
            return Err(spec.error(
                m.span(),
                format!(
                    "key `bert.max_seq_len`: expected 1 to max_position_embeddings ({}) of {}, found {}",
                    c.max_position_embeddings,
                    config_path.display(),
                    m.get_ref()
                ),
            ))
        }
        Some(m) => *m.get_ref(),
        None => c.max_position_embeddings,
    };
    let act = match c.hidden_act.as_str() {
        "gelu" => ActivationSpec::Gelu,
        "relu" => ActivationSpec::Relu,
        _ => ActivationSpec::GeluTanh,
    };
    let r = Reader {
        weights,
        prefix,
        config_note: format!(
            "as {} says: vocab_size {v}, hidden_size {h}, num_hidden_layers {}, intermediate_size {i}, max_position_embeddings {}, type_vocab_size {}",
            config_path.display(),
            c.num_hidden_layers,
            c.max_position_embeddings,
            c.type_vocab_size
        ),
    };

    let word = r.get("embeddings.word_embeddings.weight", &[v, h])?;
    let mut position = r.get(
        "embeddings.position_embeddings.weight",
        &[c.max_position_embeddings, h],
    )?;
    position.data.truncate(max_seq_len * h);
    position.shape = vec![max_seq_len, h];
    let token_type = r.get(
        "embeddings.token_type_embeddings.weight",
        &[c.type_vocab_size, h],
    )?;
    let emb_norm = r.norm("embeddings.LayerNorm", h)?;

    // Not `with_capacity`: num_hidden_layers comes from config.json, unchecked until a layer's
    // tensors are missing.
    let mut layers = Vec::new();
    for l in 0..c.num_hidden_layers {
        let base = format!("encoder.layer.{l}");
        layers.push(BertLayer {
            qkv: fused_qkv(&r, keep, &base, h)?,
            attn_out: r.linear(
                keep,
                &format!("{base}.attention.output.dense"),
                h,
                h,
                ActivationSpec::None,
            )?,
            norm1: r.norm(&format!("{base}.attention.output.LayerNorm"), h)?,
            ffn_up: r.linear(keep, &format!("{base}.intermediate.dense"), h, i, act)?,
            ffn_down: r.linear(
                keep,
                &format!("{base}.output.dense"),
                i,
                h,
                ActivationSpec::None,
            )?,
            norm2: r.norm(&format!("{base}.output.LayerNorm"), h)?,
        });
    }
    if weights.contains(&format!(
        "{prefix}encoder.layer.{}.attention.self.query.weight",
        c.num_hidden_layers
    )) {
        return Err(Error::Weights {
            file: weights.path().to_path_buf(),
            message: format!(
                "has more encoder layers than num_hidden_layers = {} in {}",
                c.num_hidden_layers,
                config_path.display()
            ),
        });
    }

    let output = section
        .output
        .as_ref()
        .map_or(BertOutputSpec::MeanPooled, |o| *o.get_ref());
    let (pooler, classifier, labels) = if output == BertOutputSpec::Logits {
        let pooler = r.linear(keep, "pooler.dense", h, h, ActivationSpec::Tanh)?;
        let shape = weights.shape("classifier.weight");
        let n = match shape.as_deref() {
            Some([n, _]) => *n,
            _ => c.id2label.len().max(1),
        };
        let classifier = r.linear_exact(keep, "classifier", h, n, ActivationSpec::None)?;
        let mut labels = c.labels(&config_path)?;
        if labels.is_empty() {
            labels = (0..n).map(|i| format!("LABEL_{i}")).collect();
        }
        if labels.len() != n {
            return Err(Error::Tensor {
                file: weights.path().to_path_buf(),
                tensor: "classifier.weight".into(),
                message: format!(
                    "{n} classes, but id2label in {} names {}",
                    config_path.display(),
                    labels.len()
                ),
            });
        }
        (Some(pooler), Some(classifier), labels)
    } else {
        (None, None, Vec::new())
    };

    let tokenizer = match &section.tokenizer {
        Some(t) => {
            let path = spec.resolve(t.get_ref());
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(&path, "cannot read tokenizer", e))?;
            if !text.trim_start().starts_with('{') {
                return Err(Error::Weights {
                    file: path,
                    message: "not a Hugging Face tokenizer.json (expected a JSON object)".into(),
                });
            }
            Some(text)
        }
        None => None,
    };

    Ok(Body::Bert(Box::new(Bert {
        vocab: v,
        hidden: h,
        heads: c.num_attention_heads,
        intermediate: i,
        type_vocab: c.type_vocab_size,
        eps: c.layer_norm_eps as f32,
        act,
        max_seq_len,
        output,
        normalize: section.normalize,
        word,
        // An f32 build is the unquantized reference: `embeddings` applies to INT8 builds only.
        word_storage: match precision {
            Precision::Int8 => s.quantize.embedding_storage(),
            Precision::F32 => EmbeddingStorage::F32,
        },
        position,
        token_type,
        emb_norm,
        layers,
        pooler,
        classifier,
        labels,
        tokenizer,
    })))
}
