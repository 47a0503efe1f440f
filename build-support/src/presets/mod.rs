//! Presets: one plug-in per model kind, each in its own folder (`mlp`, `encoder`, `rnn`).
//!
//! A plug-in is two things: an `expand` function that reads its TOML section and the weights
//! into its IR body (registered in [`expand`]'s one `match` on the `preset` key), and the
//! [`ModelKind`] trait on that body, the only way the rest of dynq reaches a model kind after
//! expansion: what the blob stores ([`ModelKind::linears`], [`ModelKind::table`],
//! [`ModelKind::small_tensors`]), the generated module's own fields and public API
//! ([`ModelKind::module`], wrapped in [`crate::codegen`]'s one skeleton for every kind), and the
//! descriptions the CLI's summary, report and standalone binary print. A new BERT-like family
//! is a row of `encoder/family.rs`, not a plug-in.

mod encoder;
mod mlp;
mod rnn;
pub use encoder::family;
pub use encoder::modernbert::{rotary_inverse_frequencies, rotary_table};

use std::cell::Cell;

use crate::codegen::{Layout, ModuleParts};
use crate::error::Result;
use crate::ir::{ActQuantSpec, LayerPrecision, Linear, Model, Precision};
use crate::spec::{EmbeddingStorage, Preset, SpecFile};
use crate::weights::{Tensor, Weights};

/// A preset's IR body, as everything after expansion sees it ([`crate::ir::Body::kind`]).
pub trait ModelKind {
    /// Every linear layer, in blob order.
    fn linears(&self) -> Vec<&Linear>;

    /// Short table labels for `dynq report`, each with its layer's `[quantize] keep_f32` key,
    /// in [`Self::linears`] order.
    fn layer_labels(&self) -> Vec<(String, String)> {
        self.linears()
            .iter()
            .map(|l| (l.name.clone(), l.name.clone()))
            .collect()
    }

    /// An embedding table stored row by row, and how (an encoder's word embeddings).
    fn table(&self) -> Option<(&Tensor, EmbeddingStorage)> {
        None
    }

    /// Every other tensor the blob stores (f32 or lossless f16), in blob order.
    fn small_tensors(&self) -> Vec<&Tensor> {
        Vec::new()
    }

    /// The generated module's own parts, which [`crate::codegen::generate`] puts in the
    /// skeleton every model shares (blob, loader, model type, trait impl).
    fn module(&self, model: &Model, layout: &Layout) -> ModuleParts;

    /// The `tokenizer.json` text the generated code embeds.
    fn tokenizer(&self) -> Option<&str> {
        None
    }

    /// Whether the runtime's shared forward (`[target] forward = "shared"`) runs this kind.
    fn shared_forward(&self) -> bool {
        false
    }

    /// The standalone binary's driver: a function of `dynq_runtime::serve`.
    fn serve_main(&self) -> &'static str;

    /// One line that describes the model (`dynq inspect`, the build summary).
    fn architecture(&self) -> String;

    /// What the model's output is called (`dynq report`).
    fn output_name(&self) -> &'static str {
        "output"
    }
}

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
