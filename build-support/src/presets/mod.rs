//! Presets expand a TOML description and its weights into the IR.

mod encoder;
pub mod family;
mod mlp;
mod modernbert;
pub use modernbert::{rotary_inverse_frequencies, rotary_table};
mod rnn;

use std::cell::Cell;

use crate::error::Result;
use crate::ir::{ActQuantSpec, LayerPrecision, Model, Precision};
use crate::spec::{Preset, SpecFile};
use crate::weights::Weights;

/// Expands `spec` into a model IR, reading and checking every tensor it uses.
pub fn expand(
    spec: &SpecFile,
    weights: &Weights,
    precision: Precision,
    kernels: Vec<String>,
) -> Result<Model> {
    let s = &spec.spec;
    let name = s.model.name.get_ref().clone();
    let keep = KeepF32::new(spec, precision);
    let body = match s.model.preset.get_ref() {
        Preset::Mlp => mlp::expand(spec, weights, &keep)?,
        Preset::Bert | Preset::Encoder => encoder::expand(spec, weights, &keep, precision)?,
        Preset::Lstm | Preset::Gru => rnn::expand(spec, weights, &keep)?,
    };
    keep.check_all_used(spec, &body)?;
    Ok(Model {
        type_name: crate::ir::camel_case(&name),
        name,
        precision,
        act_quant: ActQuantSpec {
            granularity: s.quantize.activations,
            scheme: s.quantize.scheme,
        },
        kernels,
        body,
    })
}

/// Decides each layer's storage from `precision` and `[quantize] keep_f32`, remembering which
/// patterns matched so a typo is an error rather than a silently quantized layer.
pub(crate) struct KeepF32<'a> {
    spec: &'a SpecFile,
    precision: Precision,
    used: Vec<Cell<bool>>,
}

impl<'a> KeepF32<'a> {
    fn new(spec: &'a SpecFile, precision: Precision) -> Self {
        let used = spec
            .spec
            .quantize
            .keep_f32
            .iter()
            .map(|_| Cell::new(false))
            .collect();
        KeepF32 {
            spec,
            precision,
            used,
        }
    }

    /// The precision of a layer built from the given tensor prefixes (several when fused).
    pub(crate) fn precision_of(&self, prefixes: &[&str]) -> LayerPrecision {
        let mut kept = self.precision == Precision::F32;
        for (pattern, used) in self.spec.spec.quantize.keep_f32.iter().zip(&self.used) {
            let p = pattern.get_ref();
            if prefixes
                .iter()
                .any(|t| t == p || t.starts_with(&format!("{p}.")))
            {
                kept = true;
                used.set(true);
            }
        }
        if kept {
            LayerPrecision::F32
        } else {
            LayerPrecision::Int8(self.spec.spec.quantize.weights)
        }
    }

    fn check_all_used(&self, spec: &SpecFile, body: &crate::ir::Body) -> Result<()> {
        let Some(pos) = self.used.iter().position(|u| !u.get()) else {
            return Ok(());
        };
        let k = &spec.spec.quantize.keep_f32[pos];
        let model = Model {
            name: String::new(),
            type_name: String::new(),
            precision: self.precision,
            act_quant: ActQuantSpec {
                granularity: Default::default(),
                scheme: Default::default(),
            },
            kernels: Vec::new(),
            body: body.clone(),
        };
        let names: Vec<String> = model.linears().iter().map(|l| l.name.clone()).collect();
        let shown = if names.len() > 6 {
            format!("{}, ... ({} in all)", names[..6].join(", "), names.len())
        } else {
            names.join(", ")
        };
        Err(spec.error(
            k.span(),
            format!(
                "key `quantize.keep_f32`: {:?} matches no layer; layers are {shown}",
                k.get_ref()
            ),
        ))
    }
}
