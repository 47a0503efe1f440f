//! Code generation for `preset = "mlp"`: one field per layer, the calls unrolled in a
//! `rt::Job`, hidden activations alternating between two scratch buffers.

use proc_macro2::Ident;
use quote::{format_ident, quote};

use crate::codegen::{linear_call, linear_weights, lit, Layout, Loader, ModuleParts};
use crate::ir::{LayerPrecision, Mlp, Model};

pub(super) fn module(model: &Model, layout: &Layout, mlp: &Mlp) -> ModuleParts {
    let Mlp { input_size, layers } = mlp;
    let input_size = *input_size;
    let ty = format_ident!("{}", model.type_name);
    let output_size = layers.last().map_or(0, |l| l.out_features);
    let (fields, inits): (Vec<_>, Vec<_>) = layers
        .iter()
        .map(|l| linear_weights(l, layout.linear(&l.name)))
        .unzip();
    // Hidden activations alternate between two scratch buffers; the last layer writes `out`.
    let hidden = layers[..layers.len() - 1]
        .iter()
        .map(|l| l.out_features)
        .max()
        .unwrap_or(0);
    let max_quant_in = layers
        .iter()
        .filter(|l| matches!(l.precision, LayerPrecision::Int8(_)))
        .map(|l| crate::pack::padded_k(l.in_features))
        .max()
        .unwrap_or(0);
    let mut calls = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let input = match i {
            0 => quote!(input),
            i if i % 2 == 1 => quote!(&*h0),
            _ => quote!(&*h1),
        };
        let output = if i + 1 == layers.len() {
            quote!(out)
        } else if i % 2 == 0 {
            quote!(h0)
        } else {
            quote!(h1)
        };
        calls.push(linear_call(l, model, &input, &output));
    }
    // Two hidden buffers at most (ping-pong); a 2-layer MLP needs one.
    let buffers = (layers.len() - 1).min(2);
    let names: Vec<Ident> = (0..buffers).map(|i| format_ident!("h{}", i)).collect();
    let lens = names.iter().map(|_| quote!(rows * HIDDEN));
    let scratch = if buffers > 0 {
        quote!(let [#(#names),*] = rt::split_mut(buf.f32, [#(#lens),*]);)
    } else {
        quote!()
    };
    let scratch_len = match buffers {
        0 => quote!(0),
        1 => quote!(rows * HIDDEN),
        _ => quote!(2 * rows * HIDDEN),
    };
    let buffers_decl = if buffers > 0 || max_quant_in > 0 {
        quote!(let buf = ws.buffers(#scratch_len, rows * QUANT_IN, rows);)
    } else {
        quote!(let _ = ws;)
    };
    let (input_lit, output_lit, hidden_lit, quant_lit) = (
        lit(input_size),
        lit(output_size),
        lit(hidden),
        lit(max_quant_in),
    );
    ModuleParts {
        consts: quote! {
            /// Width of one input row.
            pub const INPUT_SIZE: usize = #input_lit;
            /// Width of one output row.
            pub const OUTPUT_SIZE: usize = #output_lit;
            /// Widest hidden activation.
            const HIDDEN: usize = #hidden_lit;
            /// Widest input of a quantized layer, padded to the kernels' K block.
            const QUANT_IN: usize = #quant_lit;
        },
        quant: quote!(),
        weights: quote! {
            struct Weights {
                #(#fields)*
            }
        },
        loader: Loader {
            name: "weights",
            docs: Vec::new(),
            ty: quote!(Weights),
            init: quote!(Weights { #(#inits)* }),
        },
        summary: format!(
            " The `{}` model: an MLP of {} layers, {input_size} -> {output_size}, {}.",
            model.name,
            layers.len(),
            model.precision.name()
        ),
        type_docs: quote! {
            /// A unit struct: use it directly, `Model.forward(...)`. Inputs are rows of
            /// [`INPUT_SIZE`] values; outputs rows of [`OUTPUT_SIZE`].
        },
        inherent_consts: quote! {
            /// Width of one input row.
            pub const INPUT_SIZE: usize = INPUT_SIZE;
            /// Width of one output row.
            pub const OUTPUT_SIZE: usize = OUTPUT_SIZE;
        },
        api: quote! {
            /// Runs `rows` examples: `input` holds `rows * INPUT_SIZE` values, `out`
            /// receives `rows * OUTPUT_SIZE`. Uses this thread's workspace, so it does not
            /// allocate after the first call with the largest `rows`.
            pub fn forward(&self, input: &[f32], rows: usize, out: &mut [f32]) -> Result<(), rt::Error> {
                rt::with_workspace(|ws| self.forward_with(ws, input, rows, out))
            }

            /// [`Self::forward`] with a caller-owned workspace.
            pub fn forward_with(
                &self,
                ws: &mut rt::Workspace,
                input: &[f32],
                rows: usize,
                out: &mut [f32],
            ) -> Result<(), rt::Error> {
                rt::check_dense_io(input, rows, INPUT_SIZE, out, OUTPUT_SIZE)?;
                let w = weights()?;
                rt::dispatch(Forward { w, ws, input, rows, out }, KERNELS)
            }

            /// One example in, one output row out.
            pub fn forward_one(&self, input: &[f32; INPUT_SIZE]) -> Result<[f32; OUTPUT_SIZE], rt::Error> {
                let mut out = [0.0; OUTPUT_SIZE];
                self.forward(input, 1, &mut out)?;
                Ok(out)
            }
        },
        model_trait: quote!(rt::DenseModel),
        trait_consts: quote! {
            const INPUT_SIZE: usize = INPUT_SIZE;
            const OUTPUT_SIZE: usize = OUTPUT_SIZE;
        },
        trait_fns: quote! {
            fn forward(&self, input: &[f32], rows: usize, out: &mut [f32]) -> Result<(), rt::Error> {
                #ty::forward(self, input, rows, out)
            }
        },
        tail: quote! {
            struct Forward<'a> {
                w: &'static Weights,
                ws: &'a mut rt::Workspace,
                input: &'a [f32],
                rows: usize,
                out: &'a mut [f32],
            }

            impl rt::Job for Forward<'_> {
                type Output = ();
                const KERNELS: &'static [rt::KernelId] = KERNELS;

                #[inline(always)]
                fn run<K: rt::Kernel>(self, kernel: K) {
                    let Forward { w, ws, input, rows, out } = self;
                    #buffers_decl
                    #scratch
                    #(#calls)*
                }
            }
        },
    }
}
