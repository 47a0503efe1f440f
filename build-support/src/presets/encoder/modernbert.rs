//! ModernBERT checkpoints (`ModernBertModel`, `ModernBertForSequenceClassification`), read as
//! `transformers`' modeling file computes them: token embeddings and their norm (no
//! positions), pre-norm layers (the first without an attention norm), a fused `Wqkv`, rotary
//! positions with one base for the global layers and one for the sliding-window layers, a
//! GeGLU FFN (`Wi` gives input and gate), a final norm, and the head
//! `classifier(norm(act(dense(pool(x)))))`. Biases and norm shifts exist only where the
//! config says so; a missing shift is stored as zeros.

use std::path::Path;

use super::family::Family;
use super::{
    check_all_read, output_dims, pad_id, read_out_layer, read_tokenizer, word_storage, Reader,
};
use crate::error::{Error, Result};
use crate::hf_config::{ClassifierPooling, EncoderConfig, ModernBertOptions};
use crate::ir::{
    Body, Encoder, EncoderLayer, Head, Linear, Norm, Positions, Precision, RotaryTable,
};
use crate::presets::KeepF32;
use crate::spec::{ActivationSpec, BertOutputSpec, SpecFile};
use crate::weights::{SourceDtype, Tensor};

/// The activation of a config spelling (checked against `hf_config::ACTIVATIONS`).
fn activation(name: &str) -> ActivationSpec {
    match name {
        "gelu" => ActivationSpec::Gelu,
        "relu" => ActivationSpec::Relu,
        _ => ActivationSpec::GeluTanh,
    }
}

/// RoPE's inverse frequencies for heads of width `d`, as `transformers` computes them in
/// f32: `1 / theta^(2c / d)` for `c < d / 2`, the exponent rounded to f32 and the power
/// correctly rounded.
pub fn rotary_inverse_frequencies(theta: f64, d: usize) -> Vec<f32> {
    (0..d / 2)
        .map(|c| {
            let exponent = (2 * c) as f32 / d as f32;
            let p = (theta as f32 as f64).powf(f64::from(exponent)) as f32;
            1.0f32 / p
        })
        .collect()
}

/// The rotary table of base `theta` for heads of width `d` and positions `0..positions`, as
/// `transformers` computes it in f32: `inv_freq[c] = 1 / theta^(2c / d)`, the angle
/// `position * inv_freq[c]` rounded to f32, its cosine and sine (here correctly rounded from
/// f64). Per position: the `d / 2` cosines, then the `d / 2` sines.
pub fn rotary_table(theta: f64, d: usize, positions: usize) -> Vec<f32> {
    let inv_freq = rotary_inverse_frequencies(theta, d);
    let mut t = Vec::with_capacity(positions * d);
    for pos in 0..positions {
        let angles: Vec<f32> = inv_freq.iter().map(|&f| pos as f32 * f).collect();
        t.extend(angles.iter().map(|&a| f64::from(a).cos() as f32));
        t.extend(angles.iter().map(|&a| f64::from(a).sin() as f32));
    }
    t
}

impl Reader<'_> {
    /// A LayerNorm with its shift, or zeros for the shift where the config has none.
    fn norm_maybe_bias(&self, name: &str, h: usize, bias: bool) -> Result<Norm> {
        if bias {
            return self.norm(name, h);
        }
        let gamma = self.get(&format!("{name}.weight"), &[h])?;
        let beta = Tensor {
            name: format!("{}{name}.bias=0", self.prefix),
            source: SourceDtype::F32,
            shape: vec![h],
            data: vec![0.0; h],
        };
        Ok(Norm { gamma, beta })
    }

    /// A linear layer below the prefix, with a bias only where `bias`.
    fn linear_maybe_bias(
        &self,
        keep: &KeepF32<'_>,
        name: &str,
        k: usize,
        n: usize,
        bias: bool,
    ) -> Result<Linear> {
        let full = format!("{}{name}", self.prefix);
        self.linear_with_bias(keep, &full, k, n, ActivationSpec::None, bias)
    }
}

pub(super) fn expand(
    spec: &SpecFile,
    weights: &crate::weights::Weights,
    keep: &KeepF32<'_>,
    precision: Precision,
    f: &'static Family,
    c: &EncoderConfig,
    config_path: &Path,
) -> Result<Body> {
    let s = &spec.spec;
    let preset = s.model.preset.get_ref().name();
    let section = spec.encoder_section().expect("validated by spec").get_ref();
    let prefix = section.prefix.as_str();
    let o = ModernBertOptions::load(config_path, c.num_hidden_layers)?;
    let (h, i, v, heads) = (
        c.hidden_size,
        c.intermediate_size,
        c.vocab_size,
        c.num_attention_heads,
    );
    let d = h / heads;
    if d % 2 != 0 {
        return Err(Error::Weights {
            file: config_path.to_path_buf(),
            message: format!(
                "key `{}`: rotary positions need an even head width, found {h} / {heads} = {d}",
                c.keys.hidden
            ),
        });
    }
    let reach = c.max_position_embeddings;
    let max_seq_len = match &section.max_seq_len {
        Some(m) if *m.get_ref() == 0 || *m.get_ref() > reach => {
            return Err(spec.error(
                m.span(),
                format!(
                    "key `{preset}.max_seq_len`: expected 1 to {} ({reach}) of {}, found {}",
                    c.keys.max_positions,
                    config_path.display(),
                    m.get_ref()
                ),
            ));
        }
        Some(m) => *m.get_ref(),
        None => reach,
    };
    let r = Reader::new(weights, prefix, config_path, c);
    let t = f.tensors;
    let word = r.get(t.word, &[v, h])?;
    let emb_norm = r.norm_maybe_bias(t.emb_norm, h, o.norm_bias)?;

    // One table per rotary base in use, named after the layer kind.
    let mut rotary: Vec<RotaryTable> = Vec::new();
    let mut table_for = |theta: f64, kind: &str| -> usize {
        if let Some(at) = rotary.iter().position(|t| t.theta == theta) {
            return at;
        }
        rotary.push(RotaryTable {
            theta,
            table: Tensor {
                name: format!("rotary.{kind}.theta={theta}"),
                source: SourceDtype::F32,
                shape: vec![max_seq_len, d],
                data: rotary_table(theta, d, max_seq_len),
            },
        });
        rotary.len() - 1
    };
    let act = activation(&c.hidden_act);
    let mut layers = Vec::new();
    for (l, &window) in o.windows.iter().enumerate() {
        let base = f.layer(l);
        let theta = match window {
            None => table_for(o.global_theta, "global"),
            Some(_) => table_for(o.local_theta, "local"),
        };
        let norm1 = if l == 0 {
            None
        } else {
            Some(r.norm_maybe_bias(&format!("{base}.{}", t.norm1), h, o.norm_bias)?)
        };
        let qkv = r.linear_maybe_bias(
            keep,
            &format!("{base}.{}", t.qkv[0]),
            h,
            3 * h,
            o.attention_bias,
        )?;
        let attn_out = r.linear_maybe_bias(
            keep,
            &format!("{base}.{}", t.attn_out),
            h,
            h,
            o.attention_bias,
        )?;
        let norm2 = r.norm_maybe_bias(&format!("{base}.{}", t.norm2), h, o.norm_bias)?;
        let ffn_up =
            r.linear_maybe_bias(keep, &format!("{base}.{}", t.ffn_up), h, 2 * i, o.mlp_bias)?;
        let ffn_down =
            r.linear_maybe_bias(keep, &format!("{base}.{}", t.ffn_down), i, h, o.mlp_bias)?;
        layers.push(EncoderLayer {
            qkv,
            attn_out,
            norm1,
            ffn_up,
            ffn_down,
            norm2,
            rotary: Some(theta),
            window,
        });
    }
    r.no_layer_past(f, c, config_path)?;
    let final_norm = r.norm_maybe_bias("final_norm", h, o.norm_bias)?;
    // Layer 0 has no attention norm: one in the checkpoint is a piece this code does not
    // compute.
    if weights.contains(&format!("{prefix}{}.{}.weight", f.layer(0), t.norm1)) {
        return Err(Error::Tensor {
            file: weights.path().to_path_buf(),
            tensor: format!("{prefix}{}.{}.weight", f.layer(0), t.norm1),
            message: "ModernBERT's first layer has no attention norm (its input is the embedding norm's output): is this checkpoint of another family?".into(),
        });
    }

    let output = section
        .output
        .as_ref()
        .map_or(BertOutputSpec::MeanPooled, |o| *o.get_ref());
    let (head, labels) = if output == BertOutputSpec::Logits {
        let mut dense = r.linear_with_bias(
            keep,
            f.head.dense,
            h,
            h,
            ActivationSpec::None,
            o.classifier_bias,
        )?;
        dense.activation = activation(&o.classifier_activation);
        let norm = r.norm_maybe_bias_exact("head.norm", h, o.norm_bias)?;
        let (out, labels) = read_out_layer(&r, keep, f, c, config_path, h)?;
        (
            Some(Head {
                mean: o.classifier_pooling == ClassifierPooling::Mean,
                dense,
                norm: Some(norm),
                out,
            }),
            labels,
        )
    } else {
        (None, Vec::new())
    };
    check_all_read(&r, f, c, config_path)?;
    let tokenizer = read_tokenizer(spec)?;
    Ok(Body::Encoder(Box::new(Encoder {
        family: f.name,
        family_display: f.display,
        vocab: v,
        hidden: h,
        embedding_width: h,
        heads,
        intermediate: i,
        type_vocab: 0,
        eps: c.layer_norm_eps as f32,
        act,
        pre_norm: true,
        gated: true,
        max_seq_len,
        pad_id: pad_id(c, v),
        output,
        normalize: section.normalize,
        word,
        word_storage: word_storage(s, precision),
        positions: Positions::None,
        position: None,
        token_type: None,
        emb_norm,
        projection: None,
        relative: None,
        layers,
        rotary,
        final_norm: Some(final_norm),
        dims: output_dims(spec, output, h)?,
        head,
        labels,
        tokenizer,
    })))
}

impl Reader<'_> {
    /// [`Reader::norm_maybe_bias`] for a norm named in full (outside the prefix).
    fn norm_maybe_bias_exact(&self, full: &str, h: usize, bias: bool) -> Result<Norm> {
        let gamma = self.get_exact(&format!("{full}.weight"), &[h])?;
        let beta = if bias {
            self.get_exact(&format!("{full}.bias"), &[h])?
        } else {
            Tensor {
                name: format!("{full}.bias=0"),
                source: SourceDtype::F32,
                shape: vec![h],
                data: vec![0.0; h],
            }
        };
        Ok(Norm { gamma, beta })
    }
}

#[cfg(test)]
mod tests {
    use super::rotary_table;

    #[test]
    fn rotary_table_starts_at_angle_zero_and_uses_the_base() {
        let t = rotary_table(10_000.0, 4, 3);
        assert_eq!(&t[..4], &[1.0, 1.0, 0.0, 0.0]);
        // Position 1: inv_freq = [1, 1 / 100].
        assert_eq!(t[4], 1f64.cos() as f32);
        assert_eq!(t[5], 0.01f64.cos() as f32);
        assert_eq!(t[6], 1f64.sin() as f32);
    }
}
