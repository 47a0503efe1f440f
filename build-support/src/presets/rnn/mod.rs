//! `preset = "lstm"` and `preset = "gru"`: PyTorch's `nn.LSTM` / `nn.GRU` state dicts.
//!
//! Tensors per layer `l` and direction: `{prefix}weight_ih_l{l}` `[G, in]`,
//! `{prefix}weight_hh_l{l}` `[G, hidden]`, `{prefix}bias_ih_l{l}` and `{prefix}bias_hh_l{l}`
//! `[G]`, with `_reverse` appended for the backward direction; `G` is 4 (LSTM) or 3 (GRU) times
//! `hidden_size`, and `in` is `input_size` for layer 0 and `directions * hidden_size` after.
//! Tensors the TOML does not account for (a layer past `num_layers`, a reverse direction of a
//! unidirectional model, biases of a `bias = false` model) are errors: ignoring them would
//! silently compute a different network.

mod codegen;

use super::{KeepF32, ModelKind};
use crate::codegen::{Layout, ModuleParts};
use crate::error::{Error, Result};
use crate::ir::{ident_for, Body, Cell, Linear, Model, Rnn, RnnDirection};
use crate::spec::{ActivationSpec, Preset, RnnSection, SpecFile};
use crate::weights::Weights;

pub(super) fn expand(spec: &SpecFile, weights: &Weights, keep: &KeepF32<'_>) -> Result<Body> {
    let s = &spec.spec;
    let (cell, section) = match s.model.preset.get_ref() {
        Preset::Lstm => (Cell::Lstm, &s.lstm),
        _ => (Cell::Gru, &s.gru),
    };
    let preset = s.model.preset.get_ref().name();
    let r: &RnnSection = section.as_ref().expect("validated by spec").get_ref();
    let (input_size, hidden) = (*r.input_size.get_ref(), *r.hidden_size.get_ref());
    let layers = *r.num_layers.get_ref();
    let directions = if r.bidirectional { 2 } else { 1 };
    let gates = cell.gates() * hidden;
    let p = &r.prefix;
    let gate_names = match cell {
        Cell::Lstm => "4 gates (i, f, g, o)",
        Cell::Gru => "3 gates (r, z, n)",
    };

    let unexpected = |name: String, why: String| -> Result<()> {
        if weights.contains(&name) {
            Err(Error::Tensor {
                file: weights.path().to_path_buf(),
                tensor: name,
                message: format!(
                    "present in the file, but {why} in [{preset}] of {}; the model would ignore it",
                    spec.path.display()
                ),
            })
        } else {
            Ok(())
        }
    };
    unexpected(
        format!("{p}weight_ih_l{layers}"),
        format!("num_layers = {layers}"),
    )?;
    if directions == 1 {
        unexpected(
            format!("{p}weight_ih_l0_reverse"),
            "bidirectional = false".into(),
        )?;
    }
    if !r.bias {
        unexpected(format!("{p}bias_ih_l0"), "bias = false".into())?;
    }

    // Not `with_capacity(layers)`: `num_layers` comes from the TOML; a missing layer stops the
    // loop long before a huge count could matter.
    let mut out = Vec::new();
    for l in 0..layers {
        let k = if l == 0 {
            input_size
        } else {
            directions * hidden
        };
        let mut dirs = Vec::with_capacity(directions);
        for d in 0..directions {
            let suffix = if d == 0 {
                format!("l{l}")
            } else {
                format!("l{l}_reverse")
            };
            let why = format!(
                "layer {l}{} of [{preset}] (num_layers = {layers}{})",
                if d == 1 { ", reverse direction" } else { "" },
                if d == 1 { ", bidirectional = true" } else { "" }
            );
            let matrix = |kind: &str, k: usize, k_from: &str| -> Result<Linear> {
                let wname = format!("{p}weight_{kind}_{suffix}");
                let weight = weights.get(&wname, &[gates, k]).map_err(|e| match e {
                    Error::Tensor {
                        file,
                        tensor,
                        message,
                    } => {
                        let detail = if message.starts_with("expected shape") {
                            let found = weights.shape(&tensor).unwrap_or_default();
                            let other = match (cell, found.first()) {
                                (Cell::Lstm, Some(&g)) if g == 3 * hidden => {
                                    "; 3 x hidden_size rows is a GRU: is `preset` right?"
                                }
                                (Cell::Gru, Some(&g)) if g == 4 * hidden => {
                                    "; 4 x hidden_size rows is an LSTM: is `preset` right?"
                                }
                                _ => "",
                            };
                            format!(
                                "expected shape [{gates}, {k}] ({gate_names} x hidden_size {hidden} by {k_from}), found {found:?}{other}"
                            )
                        } else {
                            format!("{message} (needed for {why})")
                        };
                        Error::Tensor {
                            file,
                            tensor,
                            message: detail,
                        }
                    }
                    e => e,
                })?;
                let bias = if r.bias {
                    let bname = format!("{p}bias_{kind}_{suffix}");
                    Some(weights.get(&bname, &[gates]).map_err(|e| match e {
                        Error::Tensor {
                            file,
                            tensor,
                            message,
                        } if message.starts_with("not found") => Error::Tensor {
                            file,
                            tensor,
                            message: format!(
                                "{message} (needed for {why}; set `bias = false` in [{preset}] for a model without biases)"
                            ),
                        },
                        e => e,
                    })?)
                } else {
                    None
                };
                let name = format!("{p}weight_{kind}_{suffix}");
                Ok(Linear {
                    ident: ident_for(&name),
                    precision: keep.precision_of(&[&name]),
                    name,
                    in_features: k,
                    out_features: gates,
                    weight,
                    bias,
                    activation: ActivationSpec::None,
                })
            };
            let k_from = if l == 0 {
                "input_size".to_string()
            } else {
                format!("{directions} x hidden_size (the output of layer {})", l - 1)
            };
            dirs.push(RnnDirection {
                input: matrix("ih", k, &k_from)?,
                hidden: matrix("hh", hidden, "hidden_size")?,
            });
        }
        out.push(dirs);
    }
    Ok(Body::Rnn(Box::new(Rnn {
        cell,
        input_size,
        hidden_size: hidden,
        directions,
        batch_first: r.batch_first,
        layers: out,
    })))
}

impl ModelKind for Rnn {
    fn linears(&self) -> Vec<&Linear> {
        self.layers
            .iter()
            .flatten()
            .flat_map(|d| [&d.input, &d.hidden])
            .collect()
    }

    /// `rnn.weight_hh_l0_reverse` -> `hh_l0_reverse`; kept by its weight tensor's name.
    fn layer_labels(&self) -> Vec<(String, String)> {
        self.linears()
            .iter()
            .map(|l| {
                let short = l
                    .name
                    .rsplit_once("weight_")
                    .map_or(l.name.as_str(), |p| p.1);
                (short.to_string(), l.name.clone())
            })
            .collect()
    }

    fn module(&self, model: &Model, layout: &Layout) -> ModuleParts {
        codegen::module(model, layout, self)
    }

    fn serve_main(&self) -> &'static str {
        "recurrent_main"
    }

    fn architecture(&self) -> String {
        format!(
            "{}: {} layer{}, {}, input {}, hidden {}, batch_first {}",
            match self.cell {
                Cell::Lstm => "LSTM",
                Cell::Gru => "GRU",
            },
            self.layers.len(),
            if self.layers.len() == 1 { "" } else { "s" },
            if self.directions == 2 {
                "bidirectional"
            } else {
                "unidirectional"
            },
            self.input_size,
            self.hidden_size,
            self.batch_first
        )
    }
}
