//! Code generation for `preset = "lstm"` and `preset = "gru"`: one weight-view function per
//! layer (its doc comment is the provenance), one generic runtime call that runs the stack.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::codegen::{
    act_quant_tokens, linear_value, lit, provenance, Layout, Loader, ModuleParts,
};
use crate::ir::{Cell, Model, Rnn, RnnDirection};

fn direction_value(d: &RnnDirection, layout: &Layout) -> TokenStream {
    let (input, hidden) = (
        linear_value(&d.input, layout),
        linear_value(&d.hidden, layout),
    );
    quote!(rt::ops::rnn::RnnDirection { input: #input, hidden: #hidden })
}

pub(super) fn module(model: &Model, layout: &Layout, r: &Rnn) -> ModuleParts {
    let ty = format_ident!("{}", model.type_name);
    let name = &model.name;
    let (h, layers, dirs) = (r.hidden_size, r.layers.len(), r.directions);
    let (cell, cell_name, kind) = match r.cell {
        Cell::Lstm => (quote!(rt::ops::rnn::Cell::Lstm), "LSTM", "lstm"),
        Cell::Gru => (quote!(rt::ops::rnn::Cell::Gru), "GRU", "gru"),
    };

    let layer_fns = r.layers.iter().enumerate().map(|(i, l)| {
        let f = format_ident!("layer_{}", i);
        let docs = l
            .iter()
            .flat_map(|d| [&d.input, &d.hidden])
            .map(|lin| provenance(lin, layout.linear(&lin.name)));
        let forward = direction_value(&l[0], layout);
        let reverse = match l.get(1) {
            Some(d) => {
                let v = direction_value(d, layout);
                quote!(Some(#v))
            }
            None => quote!(None),
        };
        quote! {
            #(#[doc = #docs])*
            fn #f(b: &rt::blob::Blob<'static>) -> Result<rt::ops::rnn::RnnLayer<'static>, rt::Error> {
                Ok(rt::ops::rnn::RnnLayer { forward: #forward, reverse: #reverse })
            }
        }
    });
    let layer_calls = (0..layers).map(|i| {
        let f = format_ident!("layer_{}", i);
        quote!(#f(&b)?)
    });

    let consts = [
        ("INPUT_SIZE", r.input_size, " Features per input step."),
        ("HIDDEN_SIZE", h, " Hidden state width per direction."),
        ("NUM_LAYERS", layers, " Stacked layers."),
        (
            "NUM_DIRECTIONS",
            dirs,
            " 2 for a bidirectional model, else 1.",
        ),
        (
            "OUTPUT_SIZE",
            dirs * h,
            " Width of one output step: both directions' hidden states, concatenated.",
        ),
        (
            "GATES",
            r.cell.gates() * h,
            " Rows of each weight matrix: the gate blocks times the hidden width.",
        ),
    ]
    .map(|(n, v, d)| {
        let (n, v) = (format_ident!("{}", n), lit(v));
        quote!(#[doc = #d] pub const #n: usize = #v;)
    });
    let batch_first = r.batch_first;
    let layout_doc = if batch_first {
        " `input` is `[batch][steps][INPUT_SIZE]` and the output `[batch][steps][OUTPUT_SIZE]` (`batch_first = true`)."
    } else {
        " `input` is `[steps][batch][INPUT_SIZE]` and the output `[steps][batch][OUTPUT_SIZE]` (`batch_first = false`)."
    };
    let states_doc = match r.cell {
        Cell::Lstm => " States `h0`, `c0`, `h_n`, `c_n` are `[NUM_LAYERS * NUM_DIRECTIONS][batch][HIDDEN_SIZE]`.",
        Cell::Gru => " States `h0`, `h_n` are `[NUM_LAYERS * NUM_DIRECTIONS][batch][HIDDEN_SIZE]`; `c0` must be `None` and `c_n` empty.",
    };
    let type_doc = format!(
        " The `{name}` model: {cell_name}, {layers} layer{}, {}, input {}, hidden {h}, {}.",
        if layers == 1 { "" } else { "s" },
        if dirs == 2 {
            "bidirectional"
        } else {
            "unidirectional"
        },
        r.input_size,
        model.precision.name(),
    );
    let aq = act_quant_tokens(model);
    let c_n_len = match r.cell {
        Cell::Lstm => quote!(NUM_LAYERS * NUM_DIRECTIONS * HIDDEN_SIZE),
        Cell::Gru => quote!(0),
    };
    let result_doc = format!(
        " Runs one sequence of `input.len() / INPUT_SIZE` steps from zero states: PyTorch's \
         `{kind}(input)` for an unbatched input, as `(output, h_n{})`.",
        if r.cell == Cell::Lstm { ", c_n" } else { "" }
    );

    ModuleParts {
        consts: quote! {
            #(#consts)*
            /// Cell, sizes and layout, for the runtime.
            pub const SHAPE: rt::ops::rnn::RnnShape = rt::ops::rnn::RnnShape {
                cell: #cell,
                input_size: INPUT_SIZE,
                hidden_size: HIDDEN_SIZE,
                num_layers: NUM_LAYERS,
                directions: NUM_DIRECTIONS,
                batch_first: #batch_first,
            };
        },
        quant: quote! {
            /// How activations (inputs and hidden states) are quantized before each integer GEMM.
            const AQ: rt::ops::ActQuant = #aq;
        },
        weights: quote! {
            struct Weights {
                layers: [rt::ops::rnn::RnnLayer<'static>; NUM_LAYERS],
            }

            #(#layer_fns)*
        },
        loader: Loader {
            name: "weights",
            docs: Vec::new(),
            ty: quote!(Weights),
            init: quote!(Weights { layers: [#(#layer_calls),*] }),
        },
        summary: type_doc,
        type_docs: quote! {
            /// A unit struct: use it directly, `Model.forward(...)`. The number of steps and of
            /// sequences side by side are the run-time dimensions; every size is a constant.
            #[doc = #layout_doc]
            #[doc = #states_doc]
        },
        inherent_consts: quote! {
            /// Features per input step.
            pub const INPUT_SIZE: usize = INPUT_SIZE;
            /// Width of one output step.
            pub const OUTPUT_SIZE: usize = OUTPUT_SIZE;
            /// Hidden state width per direction.
            pub const HIDDEN_SIZE: usize = HIDDEN_SIZE;
            /// Length of `h_n` for one sequence.
            pub const H_N_LEN: usize = NUM_LAYERS * NUM_DIRECTIONS * HIDDEN_SIZE;
            /// Length of `c_n` for one sequence (0 for a GRU).
            pub const C_N_LEN: usize = #c_n_len;
        },
        api: quote! {
            /// Runs `input.batch` sequences of `input.steps` steps into `out`. Uses this
            /// thread's workspace, so it does not allocate after the first call with the
            /// largest `steps * batch`.
            pub fn forward(&self, input: &rt::RnnInput<'_>, out: rt::RnnOutput<'_>) -> Result<(), rt::Error> {
                rt::with_workspace(|ws| self.forward_with(ws, input, out))
            }

            /// [`Self::forward`] with a caller-owned workspace.
            pub fn forward_with(
                &self,
                ws: &mut rt::Workspace,
                input: &rt::RnnInput<'_>,
                out: rt::RnnOutput<'_>,
            ) -> Result<(), rt::Error> {
                rt::ops::rnn::check_rnn_io(&SHAPE, input, &out)?;
                let w = weights()?;
                rt::dispatch(Forward { w, ws, input, out }, KERNELS)
            }

            #[doc = #result_doc]
            pub fn run(&self, input: &[f32]) -> Result<rt::RnnResult, rt::Error> {
                <Self as rt::RecurrentModel>::run(self, input)
            }
        },
        model_trait: quote!(rt::RecurrentModel),
        trait_consts: quote! {
            const SHAPE: rt::ops::rnn::RnnShape = SHAPE;
        },
        trait_fns: quote! {
            fn forward(&self, input: &rt::RnnInput<'_>, out: rt::RnnOutput<'_>) -> Result<(), rt::Error> {
                #ty::forward(self, input, out)
            }
        },
        tail: quote! {
            struct Forward<'a> {
                w: &'static Weights,
                ws: &'a mut rt::Workspace,
                input: &'a rt::RnnInput<'a>,
                out: rt::RnnOutput<'a>,
            }

            impl rt::Job for Forward<'_> {
                type Output = ();
                const KERNELS: &'static [rt::KernelId] = KERNELS;

                #[inline(always)]
                fn run<K: rt::Kernel>(self, kernel: K) {
                    let Forward { w, ws, input, out } = self;
                    let (f32_len, quant_len, rows) = rt::ops::rnn::scratch_lens(&SHAPE, input.steps, input.batch);
                    let buf = ws.buffers(f32_len, quant_len, rows);
                    let mut quant = rt::ops::QuantScratch { quant: buf.quant, scales: buf.scales, zero_points: buf.zero_points };
                    rt::ops::rnn::forward::<K, INPUT_SIZE, HIDDEN_SIZE, GATES, OUTPUT_SIZE>(
                        kernel, &SHAPE, &w.layers, AQ, input, out, buf.f32, &mut quant,
                    );
                }
            }
        },
    }
}
