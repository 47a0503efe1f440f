//! `preset = "mlp"`: a stack of linear layers.

mod codegen;

use std::collections::BTreeSet;

use super::{KeepF32, ModelKind};
use crate::codegen::{Layout, ModuleParts};
use crate::error::Result;
use crate::ir::{ident_for, Body, Linear, Mlp, Model};
use crate::spec::SpecFile;
use crate::weights::Weights;

pub(super) fn expand(spec: &SpecFile, weights: &Weights, keep: &KeepF32<'_>) -> Result<Body> {
    let s = &spec.spec;
    let mlp = s.mlp.as_ref().expect("validated by spec").get_ref();
    let input_size = *mlp.input_size.get_ref();
    let mut idents = BTreeSet::new();
    let mut width = input_size;
    let mut layers = Vec::new();
    for (i, layer) in mlp.layers.get_ref().iter().enumerate() {
        let l = layer.get_ref();
        let wname = format!("{}.weight", l.tensor);
        let shape = weights.shape(&wname);
        // The output width comes from the tensor; its input width must chain.
        let out = match shape.as_deref() {
            Some([out, _]) => *out,
            _ => 0,
        };
        let weight = weights.get(&wname, &[out.max(1), width]).map_err(|e| match shape {
            Some(ref sh) if sh.len() != 2 || sh[1] != width => crate::Error::Tensor {
                file: weights.path().to_path_buf(),
                tensor: wname.clone(),
                message: format!(
                    "expected shape [out, {width}] (layer {i} of [mlp] layers, fed by {}), found {sh:?}",
                    if i == 0 { "mlp.input_size".to_string() } else { format!("layer {}", i - 1) }
                ),
            },
            _ => e,
        })?;
        let bias = if l.bias {
            Some(weights.get(&format!("{}.bias", l.tensor), &[out]).map_err(|e| match e {
                crate::Error::Tensor { file, tensor, message } if message.starts_with("not found") => {
                    crate::Error::Tensor {
                        file,
                        tensor,
                        message: format!("{message} (set `bias = false` on layer {i} for a layer without bias)"),
                    }
                }
                e => e,
            })?)
        } else {
            None
        };
        let mut ident = ident_for(&l.tensor);
        if !idents.insert(ident.clone()) {
            ident = format!("{ident}_{i}");
            idents.insert(ident.clone());
        }
        layers.push(Linear {
            name: l.tensor.clone(),
            ident,
            in_features: width,
            out_features: out,
            weight,
            bias,
            activation: l.activation,
            precision: keep.precision_of(&[&l.tensor]),
        });
        width = out;
    }
    Ok(Body::Mlp(Mlp { input_size, layers }))
}

impl ModelKind for Mlp {
    fn linears(&self) -> Vec<&Linear> {
        self.layers.iter().collect()
    }

    fn module(&self, model: &Model, layout: &Layout) -> ModuleParts {
        codegen::module(model, layout, self)
    }

    fn serve_main(&self) -> &'static str {
        "dense_main"
    }

    fn architecture(&self) -> String {
        let widths: Vec<String> = std::iter::once(self.input_size)
            .chain(self.layers.iter().map(|l| l.out_features))
            .map(|w| w.to_string())
            .collect();
        format!("MLP {}", widths.join(" -> "))
    }
}
