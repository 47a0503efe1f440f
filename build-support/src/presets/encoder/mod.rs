//! `preset = "encoder"` (and `preset = "bert"`): Hugging Face checkpoints of the BERT-like
//! families in [`family::FAMILIES`], read through their family's table.

mod codegen;
pub mod family;
pub(super) mod modernbert;

use std::cell::RefCell;
use std::collections::BTreeSet;

use super::{KeepF32, ModelKind};
use crate::codegen::{Layout, ModuleParts};
use crate::error::{Error, Result};
use crate::hf_config::EncoderConfig;
use crate::ir::{
    ident_for, Body, Encoder, EncoderLayer, Head, Linear, Model, Norm, Positions, Precision,
    RelativeBias,
};
use crate::spec::{ActivationSpec, BertOutputSpec, EmbeddingStorage, Preset, SpecFile};
use crate::weights::{Tensor, Weights};
use family::{Arch, Family, PositionKind};

/// MPNet buckets relative positions with 32 buckets whatever its config says
/// (`MPNetEncoder.compute_position_bias` is called with the default), up to distance 128.
const MPNET_BUCKETS: usize = 32;
const MPNET_MAX_DISTANCE: usize = 128;

/// Reads tensors under the configured prefix, remembers what it read, and explains shape
/// errors with the config.
pub(super) struct Reader<'a> {
    pub(super) weights: &'a Weights,
    pub(super) prefix: &'a str,
    pub(super) config_note: String,
    pub(super) read: RefCell<BTreeSet<String>>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(
        weights: &'a Weights,
        prefix: &'a str,
        config_path: &std::path::Path,
        c: &EncoderConfig,
    ) -> Self {
        Reader {
            weights,
            prefix,
            config_note: format!("as {} says: {}", config_path.display(), c.note()),
            read: RefCell::new(BTreeSet::new()),
        }
    }

    /// A checkpoint with a layer past the config's count computes another network: an error.
    pub(super) fn no_layer_past(
        &self,
        f: &Family,
        c: &EncoderConfig,
        config_path: &std::path::Path,
    ) -> Result<()> {
        let next_layer = format!("{}{}.", self.prefix, f.layer(c.num_hidden_layers));
        if self
            .weights
            .names()
            .iter()
            .any(|n| n.starts_with(&next_layer))
        {
            return Err(Error::Weights {
                file: self.weights.path().to_path_buf(),
                message: format!(
                    "has more encoder layers than {} = {} in {}",
                    c.keys.layers,
                    c.num_hidden_layers,
                    config_path.display()
                ),
            });
        }
        Ok(())
    }

    pub(super) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get_exact(&format!("{}{name}", self.prefix), shape)
    }

    pub(super) fn get_exact(&self, full: &str, shape: &[usize]) -> Result<Tensor> {
        self.read.borrow_mut().insert(full.to_string());
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

    pub(super) fn norm(&self, name: &str, h: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.get(&format!("{name}.weight"), &[h])?,
            beta: self.get(&format!("{name}.bias"), &[h])?,
        })
    }

    /// A linear layer named in full (`{prefix}` already replaced).
    pub(super) fn linear_exact(
        &self,
        keep: &KeepF32<'_>,
        full: &str,
        k: usize,
        n: usize,
        act: ActivationSpec,
    ) -> Result<Linear> {
        self.linear_with_bias(keep, full, k, n, act, true)
    }

    /// [`Self::linear_exact`] with a bias only where `bias` (ModernBERT's optional biases).
    pub(super) fn linear_with_bias(
        &self,
        keep: &KeepF32<'_>,
        full: &str,
        k: usize,
        n: usize,
        act: ActivationSpec,
        bias: bool,
    ) -> Result<Linear> {
        Ok(Linear {
            name: full.to_string(),
            ident: ident_for(full),
            in_features: k,
            out_features: n,
            weight: self.get_exact(&format!("{full}.weight"), &[n, k])?,
            bias: if bias {
                Some(self.get_exact(&format!("{full}.bias"), &[n])?)
            } else {
                None
            },
            activation: act,
            precision: keep.precision_of(&[full]),
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
        self.linear_exact(keep, &format!("{}{name}", self.prefix), k, n, act)
    }

    /// Q, K and V of one layer as one `[3h, h]` linear layer.
    fn fused_qkv(&self, keep: &KeepF32<'_>, f: &Family, layer: &str, h: usize) -> Result<Linear> {
        let parts = f.tensors.qkv.map(|p| format!("{}{layer}.{p}", self.prefix));
        let mut weight = Vec::with_capacity(3 * h * h);
        let mut bias = Vec::with_capacity(3 * h);
        let mut sources = Vec::new();
        for p in &parts {
            let w = self.get_exact(&format!("{p}.weight"), &[h, h])?;
            let b = self.get_exact(&format!("{p}.bias"), &[h])?;
            sources.push(w.source);
            weight.extend(w.data);
            bias.extend(b.data);
        }
        // `encoder.layer.0.attention.self.{query,key,value}`: the common part and the three.
        let common = common_prefix(&parts);
        let alternatives: Vec<&str> = parts.iter().map(|p| &p[common.len()..]).collect();
        let joined = format!("{common}{{{}}}", alternatives.join(","));
        let name = format!("{common}qkv");
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(Linear {
            ident: ident_for(&name),
            in_features: h,
            out_features: 3 * h,
            weight: Tensor {
                name: format!("{joined}.weight"),
                source: sources[0],
                shape: vec![3 * h, h],
                data: weight,
            },
            bias: Some(Tensor {
                name: format!("{joined}.bias"),
                source: sources[0],
                shape: vec![3 * h],
                data: bias,
            }),
            activation: ActivationSpec::None,
            precision: keep.precision_of(&refs),
            name,
        })
    }
}

/// The longest common prefix of the names, cut after a `.`.
fn common_prefix(names: &[String]) -> String {
    let first = &names[0];
    let mut n = first.len();
    for other in &names[1..] {
        n = n.min(
            first
                .bytes()
                .zip(other.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    match first[..n].rfind('.') {
        Some(dot) => first[..=dot].to_string(),
        None => String::new(),
    }
}

/// Picks the family: `[encoder] family`, else the config's `model_type`; under `[bert]`,
/// BERT. A `model_type` of another family is refused.
fn choose_family(spec: &SpecFile, config_path: &std::path::Path) -> Result<&'static Family> {
    let s = &spec.spec;
    let section = spec.encoder_section().expect("validated by spec");
    let (model_type, _) = crate::hf_config::model_type(config_path)?;
    let stated = match (&section.get_ref().family, s.model.preset.get_ref()) {
        (Some(name), preset) => {
            let f = family::by_name(name.get_ref()).ok_or_else(|| {
                spec.error(
                    name.span(),
                    format!(
                        "key `{}.family`: unknown family {:?}, expected one of {}",
                        preset.name(),
                        name.get_ref(),
                        family::names()
                    ),
                )
            })?;
            if *preset == Preset::Bert && f.name != "bert" {
                return Err(spec.error(
                    name.span(),
                    format!(
                        "key `bert.family`: preset \"bert\" is family \"bert\"; for {:?} write preset = \"encoder\" and an [encoder] section",
                        f.name
                    ),
                ));
            }
            Some(f)
        }
        (None, Preset::Bert) => family::by_name("bert"),
        (None, _) => None,
    };
    let from_config = match &model_type {
        Some(t) => Some(family::by_model_type(t).ok_or_else(|| Error::Weights {
            file: config_path.to_path_buf(),
            message: format!(
                "key `model_type`: {t:?} is not a family dynq compiles; supported model types: {}",
                family::model_types()
            ),
        })?),
        None => None,
    };
    match (stated, from_config) {
        (Some(f), Some(c)) if f.name != c.name => Err(Error::Weights {
            file: config_path.to_path_buf(),
            message: format!(
                "key `model_type`: {:?} is the {} family, but the description says family {:?}; a {} checkpoint read as {} would compute something else: {}",
                model_type.as_deref().unwrap_or_default(),
                c.display,
                f.name,
                c.display,
                f.display,
                if *s.model.preset.get_ref() == Preset::Bert {
                    format!("write preset = \"encoder\" and an [encoder] section with family = {:?}", c.name)
                } else {
                    format!("set family = {:?}", c.name)
                }
            ),
        }),
        (Some(f), _) | (None, Some(f)) => Ok(f),
        (None, None) => Err(spec.error(
            section.span(),
            format!(
                "key `encoder.family`: {} has no `model_type`; name the family, one of {}",
                config_path.display(),
                family::names()
            ),
        )),
    }
}

/// A checkpoint without the family's word table under `prefix` but with it under another
/// prefix: the error names the prefix to set.
pub(super) fn prefix_hint(
    spec: &SpecFile,
    weights: &Weights,
    f: &Family,
    prefix: &str,
) -> Result<()> {
    let s = &spec.spec;
    let preset = s.model.preset.get_ref().name();
    let config_rel = s.model.config.as_ref().expect("validated by spec");
    let word_name = format!("{prefix}{}", f.tensors.word);
    if !weights.contains(&word_name) {
        let hint = [f.prefix, ""]
            .into_iter()
            .find(|p| *p != prefix && weights.contains(&format!("{p}{}", f.tensors.word)));
        if let Some(p) = hint {
            return Err(spec.error(
                config_rel.span(),
                format!(
                    "key `{preset}.prefix`: {} has no `{word_name}` but has `{p}{}`: set prefix = {p:?}",
                    weights.path().display(),
                    f.tensors.word
                ),
            ));
        }
    }

    Ok(())
}

/// The head's output layer (`f.head.out`, `h` inputs) and its class names: `id2label`, or
/// `LABEL_i` without one.
pub(super) fn read_out_layer(
    r: &Reader<'_>,
    keep: &KeepF32<'_>,
    f: &Family,
    c: &EncoderConfig,
    config_path: &std::path::Path,
    h: usize,
) -> Result<(crate::ir::Linear, Vec<String>)> {
    let weights = r.weights;
    let out_weight = format!("{}.weight", f.head.out);
    let n = match weights.shape(&out_weight).as_deref() {
        Some([n, _]) => *n,
        _ => c.id2label.len().max(1),
    };
    let out = r.linear_exact(keep, f.head.out, h, n, ActivationSpec::None)?;
    let mut labels = c.labels(config_path)?;
    if labels.is_empty() {
        labels = (0..n).map(|i| format!("LABEL_{i}")).collect();
    }
    if labels.len() != n {
        return Err(Error::Tensor {
            file: weights.path().to_path_buf(),
            tensor: out_weight,
            message: format!(
                "{n} classes, but id2label in {} names {}",
                config_path.display(),
                labels.len()
            ),
        });
    }
    Ok((out, labels))
}

/// Every tensor of the encoder body must have been read: a piece this family does not
/// compute (a relative bias in a BERT, a second token-type table, ...) means the checkpoint
/// is not what the family describes.
pub(super) fn check_all_read(
    r: &Reader<'_>,
    f: &Family,
    c: &EncoderConfig,
    config_path: &std::path::Path,
) -> Result<()> {
    let (weights, prefix, t) = (r.weights, r.prefix, f.tensors);
    let (e, h) = (c.embedding_size, c.hidden_size);
    let read = r.read.borrow();
    let extra: Vec<String> = weights
        .names()
        .into_iter()
        .filter(|n| {
            n.strip_prefix(prefix).is_some_and(|rest| {
                t.body.iter().any(|b| rest.starts_with(b))
                    && !rest.ends_with("position_ids")
                    && !rest.ends_with("token_type_ids")
            }) && !read.contains(n)
        })
        .collect();
    if let Some(first) = extra.first() {
        let why = if e == h && f.tensors.projection.is_some_and(|p| first.contains(p)) {
            format!(
                "; {} has a projection only when {} differs from {}",
                f.display,
                c.keys.embedding_size.unwrap_or("embedding_size"),
                c.keys.hidden
            )
        } else {
            String::new()
        };
        return Err(Error::Tensor {
            file: weights.path().to_path_buf(),
            tensor: first.clone(),
            message: format!(
                "not part of the {} encoder as {} describes it ({} such tensor{}){why}: is this checkpoint of another family?",
                f.display,
                config_path.display(),
                extra.len(),
                if extra.len() == 1 { "" } else { "s" }
            ),
        });
    }

    Ok(())
}

/// The `tokenizer.json` of `[encoder] tokenizer`, checked to be one.
pub(super) fn read_tokenizer(spec: &SpecFile) -> Result<Option<String>> {
    let section = spec.encoder_section().expect("validated by spec").get_ref();
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
    Ok(tokenizer)
}

pub(super) fn expand(
    spec: &SpecFile,
    weights: &Weights,
    keep: &KeepF32<'_>,
    precision: Precision,
) -> Result<Body> {
    let s = &spec.spec;
    let preset = s.model.preset.get_ref().name();
    let section = spec.encoder_section().expect("validated by spec").get_ref();
    let config_rel = s.model.config.as_ref().expect("validated by spec");
    let config_path = spec.resolve(config_rel.get_ref());
    let f = choose_family(spec, &config_path)?;
    let c = EncoderConfig::load(&config_path, f)?;
    let prefix = section.prefix.as_str();
    prefix_hint(spec, weights, f, prefix)?;
    if f.arch == Arch::ModernBert {
        return modernbert::expand(spec, weights, keep, precision, f, &c, &config_path);
    }

    let (h, i, v, e) = (
        c.hidden_size,
        c.intermediate_size,
        c.vocab_size,
        c.embedding_size,
    );
    let positions = match f.positions {
        PositionKind::Absolute => Positions::Absolute,
        PositionKind::Rotary => Positions::None,
        PositionKind::AfterPadding => {
            let pad = c.pad_token_id.ok_or_else(|| Error::Weights {
                file: config_path.clone(),
                message: format!(
                    "key `pad_token_id`: missing; {} numbers positions after the padding id",
                    f.display
                ),
            })?;
            let pad = u32::try_from(pad)
                .ok()
                .filter(|&p| (p as usize) < c.max_position_embeddings)
                .ok_or_else(|| Error::Weights {
                    file: config_path.clone(),
                    message: format!(
                        "key `pad_token_id`: expected less than {} ({}), found {pad}",
                        c.keys.max_positions, c.max_position_embeddings
                    ),
                })?;
            Positions::AfterPadding(pad)
        }
    };
    // The longest input the position table allows.
    let reach = match positions {
        Positions::Absolute | Positions::None => c.max_position_embeddings,
        Positions::AfterPadding(pad) => c.max_position_embeddings - pad as usize - 1,
    };
    let max_seq_len = match &section.max_seq_len {
        Some(m) if *m.get_ref() == 0 || *m.get_ref() > reach => {
            let what = match positions {
                Positions::Absolute | Positions::None => format!("{} ({reach})", c.keys.max_positions),
                Positions::AfterPadding(pad) => format!(
                    "{} - pad_token_id - 1 ({} - {pad} - 1 = {reach}: {} positions start after the padding id)",
                    c.keys.max_positions, c.max_position_embeddings, f.display
                ),
            };
            return Err(spec.error(
                m.span(),
                format!(
                    "key `{preset}.max_seq_len`: expected 1 to {what} of {}, found {}",
                    config_path.display(),
                    m.get_ref()
                ),
            ));
        }
        Some(m) => *m.get_ref(),
        None => reach,
    };
    if reach == 0 {
        return Err(Error::Weights {
            file: config_path.clone(),
            message: format!(
                "key `{}`: {} leaves no position for a token",
                c.keys.max_positions, c.max_position_embeddings
            ),
        });
    }
    let act = match c.hidden_act.as_str() {
        "gelu" => ActivationSpec::Gelu,
        "relu" => ActivationSpec::Relu,
        _ => ActivationSpec::GeluTanh,
    };
    let r = Reader::new(weights, prefix, &config_path, &c);

    let word = r.get(f.tensors.word, &[v, e])?;
    let mut position = r.get(f.tensors.position, &[c.max_position_embeddings, e])?;
    let rows = match positions {
        Positions::None => 0,
        Positions::Absolute => max_seq_len,
        Positions::AfterPadding(pad) => pad as usize + 1 + max_seq_len,
    };
    position.data.truncate(rows * e);
    position.shape = vec![rows, e];
    let token_type = match f.tensors.token_type {
        Some(name) if c.type_vocab_size > 0 => Some(r.get(name, &[c.type_vocab_size, e])?),
        _ => None,
    };
    let emb_norm = r.norm(f.tensors.emb_norm, e)?;
    let projection = match f.tensors.projection {
        Some(name) if e != h => Some(r.linear(keep, name, e, h, ActivationSpec::None)?),
        _ => None,
    };
    let relative = match f.tensors.relative {
        Some(name) => {
            let rows = weights
                .shape(&format!("{prefix}{name}"))
                .and_then(|s| s.first().copied())
                .unwrap_or(MPNET_BUCKETS);
            if rows < MPNET_BUCKETS {
                return Err(Error::Tensor {
                    file: weights.path().to_path_buf(),
                    tensor: format!("{prefix}{name}"),
                    message: format!(
                        "expected at least {MPNET_BUCKETS} buckets (rows), found {rows}: {} buckets relative positions 32 ways",
                        f.display
                    ),
                });
            }
            let table = r.get(name, &[rows, c.num_attention_heads])?;
            Some(RelativeBias {
                table,
                num_buckets: MPNET_BUCKETS,
                max_distance: MPNET_MAX_DISTANCE,
            })
        }
        None => None,
    };

    // Not `with_capacity`: the layer count comes from config.json, unchecked until a layer's
    // tensors are missing.
    let mut layers = Vec::new();
    let t = f.tensors;
    for l in 0..c.num_hidden_layers {
        let base = f.layer(l);
        let none = ActivationSpec::None;
        layers.push(EncoderLayer {
            qkv: r.fused_qkv(keep, f, &base, h)?,
            attn_out: r.linear(keep, &format!("{base}.{}", t.attn_out), h, h, none)?,
            norm1: Some(r.norm(&format!("{base}.{}", t.norm1), h)?),
            ffn_up: r.linear(keep, &format!("{base}.{}", t.ffn_up), h, i, act)?,
            ffn_down: r.linear(keep, &format!("{base}.{}", t.ffn_down), i, h, none)?,
            norm2: r.norm(&format!("{base}.{}", t.norm2), h)?,
            rotary: None,
            window: None,
        });
    }
    r.no_layer_past(f, &c, &config_path)?;

    let output = section
        .output
        .as_ref()
        .map_or(BertOutputSpec::MeanPooled, |o| *o.get_ref());
    let (head, labels) = if output == BertOutputSpec::Logits {
        let dense = f.head.dense.replace("{prefix}", prefix);
        let dense = r.linear_exact(keep, &dense, h, h, f.head.act)?;
        let (out, labels) = read_out_layer(&r, keep, f, &c, &config_path, h)?;
        (
            Some(Head {
                mean: false,
                dense,
                norm: None,
                out,
            }),
            labels,
        )
    } else {
        (None, Vec::new())
    };

    check_all_read(&r, f, &c, &config_path)?;
    let tokenizer = read_tokenizer(spec)?;

    Ok(Body::Encoder(Box::new(Encoder {
        family: f.name,
        family_display: f.display,
        vocab: v,
        hidden: h,
        embedding_width: e,
        heads: c.num_attention_heads,
        intermediate: i,
        type_vocab: token_type.as_ref().map_or(0, |_| c.type_vocab_size),
        eps: c.layer_norm_eps as f32,
        act,
        pre_norm: false,
        gated: false,
        max_seq_len,
        pad_id: pad_id(&c, v),
        output,
        normalize: section.normalize,
        word,
        word_storage: word_storage(s, precision),
        positions,
        position: Some(position),
        token_type,
        emb_norm,
        projection,
        relative,
        layers,
        rotary: Vec::new(),
        final_norm: None,
        dims: output_dims(spec, output, h)?,
        head,
        labels,
        tokenizer,
    })))
}

/// The padding id the runtime masks, when the config names one inside the vocabulary of `v`.
pub(super) fn pad_id(c: &EncoderConfig, v: usize) -> Option<u32> {
    c.pad_token_id
        .filter(|&p| p < v as u64)
        .and_then(|p| u32::try_from(p).ok())
}

/// How the word table is stored. An f32 build is the unquantized reference: `embeddings`
/// applies to INT8 builds only.
pub(super) fn word_storage(s: &crate::spec::Spec, precision: Precision) -> EmbeddingStorage {
    match precision {
        Precision::Int8 => s.quantize.embedding_storage(),
        Precision::F32 => EmbeddingStorage::F32,
    }
}

/// `[encoder] dims`: at most the hidden width, for pooled outputs only.
pub(super) fn output_dims(
    spec: &SpecFile,
    output: BertOutputSpec,
    hidden: usize,
) -> Result<Option<usize>> {
    let preset = spec.spec.model.preset.get_ref().name();
    let section = spec.encoder_section().expect("validated by spec").get_ref();
    let Some(d) = &section.dims else {
        return Ok(None);
    };
    if !matches!(output, BertOutputSpec::MeanPooled | BertOutputSpec::Cls) {
        return Err(spec.error(
            d.span(),
            format!(
                "key `{preset}.dims`: truncates pooled outputs; expected output = \"mean_pooled\" or \"cls\", found {:?}",
                output.name()
            ),
        ));
    }
    if *d.get_ref() == 0 || *d.get_ref() > hidden {
        return Err(spec.error(
            d.span(),
            format!(
                "key `{preset}.dims`: expected 1 to the hidden width ({hidden}), found {}",
                d.get_ref()
            ),
        ));
    }
    Ok((*d.get_ref() < hidden).then_some(*d.get_ref()))
}

impl ModelKind for Encoder {
    fn linears(&self) -> Vec<&Linear> {
        let mut v: Vec<&Linear> = self.projection.iter().collect();
        v.extend(
            self.layers
                .iter()
                .flat_map(|l| [&l.qkv, &l.attn_out, &l.ffn_up, &l.ffn_down]),
        );
        v.extend(self.head.iter().flat_map(|h| [&h.dense, &h.out]));
        v
    }

    fn layer_labels(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if let Some(p) = &self.projection {
            v.push(("projection".to_string(), p.name.clone()));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            // The fused Q, K, V layer is kept by the prefix of its three tensors.
            let qkv = layer.qkv.name.trim_end_matches(".qkv").to_string();
            v.push((format!("L{i} qkv"), qkv));
            for (what, l) in [
                ("attn_out", &layer.attn_out),
                ("ffn_up", &layer.ffn_up),
                ("ffn_down", &layer.ffn_down),
            ] {
                v.push((format!("L{i} {what}"), l.name.clone()));
            }
        }
        if let Some(h) = &self.head {
            let short = if h.dense.name.contains("pooler") {
                "pooler".to_string()
            } else {
                h.dense.name.clone()
            };
            v.push((short, h.dense.name.clone()));
            v.push((h.out.name.clone(), h.out.name.clone()));
        }
        v
    }

    fn table(&self) -> Option<(&Tensor, EmbeddingStorage)> {
        Some((&self.word, self.word_storage))
    }

    /// Positions, token types, relative bias, rotary tables, then every norm's scale and
    /// shift.
    fn small_tensors(&self) -> Vec<&Tensor> {
        let norms = std::iter::once(&self.emb_norm)
            .chain(
                self.layers
                    .iter()
                    .flat_map(|l| l.norm1.iter().chain(std::iter::once(&l.norm2))),
            )
            .chain(&self.final_norm)
            .chain(self.head.iter().flat_map(|h| &h.norm));
        self.position
            .iter()
            .chain(&self.token_type)
            .chain(self.relative.iter().map(|r| &r.table))
            .chain(self.rotary.iter().map(|r| &r.table))
            .chain(norms.flat_map(|n| [&n.gamma, &n.beta]))
            .collect()
    }

    fn module(&self, model: &Model, layout: &Layout) -> ModuleParts {
        codegen::module(model, layout, self)
    }

    fn tokenizer(&self) -> Option<&str> {
        self.tokenizer.as_deref()
    }

    fn shared_forward(&self) -> bool {
        true
    }

    fn serve_main(&self) -> &'static str {
        "encoder_main"
    }

    fn architecture(&self) -> String {
        format!(
            "{} encoder: {} layers, hidden {}, {} heads, FFN {}, vocab {}, max_seq_len {}, output {}{}",
            self.family_display,
            self.layers.len(),
            self.hidden,
            self.heads,
            self.intermediate,
            self.vocab,
            self.max_seq_len,
            self.output.name(),
            if self.normalize { ", L2-normalized" } else { "" }
        )
    }

    fn output_name(&self) -> &'static str {
        self.output.name()
    }
}
