//! Presets expand a TOML description and its weights into the IR.

mod mlp;

use crate::error::Result;
use crate::ir::{ActQuantSpec, Model, Precision};
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
    let body = match s.model.preset.get_ref() {
        Preset::Mlp => mlp::expand(spec, weights, precision)?,
    };
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
