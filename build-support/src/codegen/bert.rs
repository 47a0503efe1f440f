//! Code generation for `preset = "bert"`: one weight view per layer, one generic encoder-layer
//! call in a loop (never unrolled copies), outputs by kind.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{
    act_quant_tokens, activation_tokens, kernel_list, linear_value, lit, provenance, Layout,
    TableSections,
};
use crate::ir::{Bert, LayerPrecision, Model, Norm};
use crate::spec::BertOutputSpec;

fn norm_value(n: &Norm, eps: &TokenStream, layout: &Layout) -> TokenStream {
    let (g, b) = (
        layout.f32_view(&n.gamma.name),
        layout.f32_view(&n.beta.name),
    );
    quote!(rt::ops::bert::LayerNorm { gamma: #g, beta: #b, eps: #eps })
}

/// The word table's blob view (`rt::ops::bert::Table::..`) and its provenance line.
fn word_table(b: &Bert, layout: &Layout) -> (TokenStream, String) {
    let name = b.word.name.strip_suffix(".weight").unwrap_or(&b.word.name);
    let head = format!(" {name}: Embedding {}x{}", b.vocab, b.hidden);
    match layout.word_table.as_ref().expect("a BERT has a word table") {
        TableSections::F32(s) => {
            let v = super::section_tokens("f32s", s);
            (
                quote!(rt::ops::bert::Table::F32(#v)),
                format!("{head}, f32"),
            )
        }
        TableSections::F16(s) => {
            let v = super::section_tokens("f16s", s);
            (
                quote!(rt::ops::bert::Table::F16(#v)),
                format!("{head}, f16"),
            )
        }
        TableSections::Int8 {
            rows,
            scales,
            stats,
        } => {
            let (r, sc) = (
                super::section_tokens("i8s", rows),
                super::section_tokens("f32s", scales),
            );
            (
                quote!(rt::ops::bert::Table::I8 { rows: #r, scales: #sc }),
                format!(
                    "{head}, int8 per row, max abs error {:.1e}, SQNR {:.1} dB",
                    stats.max_abs_error, stats.sqnr_db
                ),
            )
        }
    }
}

pub(super) fn generate(model: &Model, layout: &Layout, b: &Bert) -> TokenStream {
    let module = format_ident!("{}", model.name);
    let ty = format_ident!("{}", model.type_name);
    let name = &model.name;
    let (h, heads, inter) = (b.hidden, b.heads, b.intermediate);
    let layers = b.layers.len();
    let eps = {
        let e = proc_macro2::Literal::f32_suffixed(b.eps);
        quote!(#e)
    };
    let output_size = match b.output {
        BertOutputSpec::Logits => b.labels.len(),
        _ => h,
    };
    let max_quant_in = model
        .linears()
        .iter()
        .filter(|l| matches!(l.precision, LayerPrecision::Int8(_)))
        .map(|l| crate::pack::padded_k(l.in_features))
        .max()
        .unwrap_or(0);

    // One function per layer builds its weight views; its doc comment is the provenance.
    let layer_fns = b.layers.iter().enumerate().map(|(i, l)| {
        let f = format_ident!("layer_{}", i);
        let docs = [&l.qkv, &l.attn_out, &l.ffn_up, &l.ffn_down]
            .into_iter()
            .map(|lin| provenance(lin, layout.linear(&lin.name)));
        let (qkv, attn_out, ffn_up, ffn_down) = (
            linear_value(&l.qkv, layout),
            linear_value(&l.attn_out, layout),
            linear_value(&l.ffn_up, layout),
            linear_value(&l.ffn_down, layout),
        );
        let (norm1, norm2) = (norm_value(&l.norm1, &eps, layout), norm_value(&l.norm2, &eps, layout));
        quote! {
            #(#[doc = #docs])*
            fn #f(b: &rt::blob::Blob<'static>) -> Result<rt::ops::bert::EncoderLayer<'static>, rt::Error> {
                Ok(rt::ops::bert::EncoderLayer {
                    qkv: #qkv,
                    attn_out: #attn_out,
                    norm1: #norm1,
                    ffn_up: #ffn_up,
                    ffn_down: #ffn_down,
                    norm2: #norm2,
                })
            }
        }
    });
    let layer_calls = (0..layers).map(|i| {
        let f = format_ident!("layer_{}", i);
        quote!(#f(&b)?)
    });

    let (word, word_doc) = word_table(b, layout);
    let (position, token_type) = (
        layout.f32_view(&b.position.name),
        layout.f32_view(&b.token_type.name),
    );
    let emb_norm = norm_value(&b.emb_norm, &eps, layout);
    let head = match (&b.pooler, &b.classifier) {
        (Some(p), Some(c)) => {
            let (pv, cv) = (linear_value(p, layout), linear_value(c, layout));
            let (pd, cd) = (
                provenance(p, layout.linear(&p.name)),
                provenance(c, layout.linear(&c.name)),
            );
            (
                quote! {
                    #[doc = #pd]
                    pooler: rt::Linear<'static>,
                    #[doc = #cd]
                    classifier: rt::Linear<'static>,
                },
                quote! { pooler: #pv, classifier: #cv, },
            )
        }
        _ => (quote!(), quote!()),
    };
    let (head_fields, head_inits) = head;

    let aq = act_quant_tokens(model);
    let act = activation_tokens(b.act);
    let (h_l, h3_l, heads_l, i_l) = (lit(h), lit(3 * h), lit(heads), lit(inter));
    let finish = match b.output {
        BertOutputSpec::MeanPooled => {
            let norm = b
                .normalize
                .then(|| quote!(rt::ops::bert::l2_normalize(out);));
            quote! {
                rt::ops::bert::mean_pool::<HIDDEN_SIZE>(x, input, len, out);
                #norm
            }
        }
        BertOutputSpec::Cls => {
            let norm = b
                .normalize
                .then(|| quote!(rt::ops::bert::l2_normalize(out);));
            quote! {
                out.copy_from_slice(&x[..HIDDEN_SIZE]);
                #norm
            }
        }
        BertOutputSpec::LastHiddenState => quote! {
            out.copy_from_slice(&x[..len * HIDDEN_SIZE]);
        },
        BertOutputSpec::Logits => {
            let labels = lit(b.labels.len());
            quote! {
                let pooled = &mut s.tmp[..HIDDEN_SIZE];
                rt::ops::linear::<K, #h_l, #h_l>(kernel, &x[..HIDDEN_SIZE], 1, &w.pooler, rt::Activation::Tanh, AQ, &mut s.quant, pooled);
                rt::ops::linear::<K, #h_l, #labels>(kernel, pooled, 1, &w.classifier, rt::Activation::None, AQ, &mut s.quant, out);
            }
        }
    };
    let (output_len, output_doc) = match b.output {
        BertOutputSpec::LastHiddenState => (
            quote!(len * HIDDEN_SIZE),
            "`len * HIDDEN_SIZE` values: every token's last hidden state",
        ),
        BertOutputSpec::Logits => (
            quote!(OUTPUT_SIZE),
            "`OUTPUT_SIZE` logits, one per label in [`LABELS`]",
        ),
        BertOutputSpec::MeanPooled => (
            quote!(OUTPUT_SIZE),
            "`OUTPUT_SIZE` values: the mean of the last hidden states over the mask",
        ),
        BertOutputSpec::Cls => (
            quote!(OUTPUT_SIZE),
            "`OUTPUT_SIZE` values: the first token's last hidden state",
        ),
    };
    let output_kind = match b.output {
        BertOutputSpec::MeanPooled => quote!(rt::BertOutput::MeanPooled),
        BertOutputSpec::Cls => quote!(rt::BertOutput::Cls),
        BertOutputSpec::LastHiddenState => quote!(rt::BertOutput::LastHiddenState),
        BertOutputSpec::Logits => quote!(rt::BertOutput::Logits),
    };
    let convenience = match b.output {
        BertOutputSpec::MeanPooled | BertOutputSpec::Cls => quote! {
            /// Embeds one sequence of token ids (mask all ones, token types zero).
            pub fn embed(&self, input_ids: &[u32]) -> Result<[f32; OUTPUT_SIZE], rt::Error> {
                let mut out = [0.0; OUTPUT_SIZE];
                self.forward(&rt::BertInput::new(input_ids), &mut out)?;
                Ok(out)
            }
        },
        BertOutputSpec::Logits => quote! {
            /// Classifies one sequence of token ids: the logits and the best label.
            pub fn classify(&self, input_ids: &[u32]) -> Result<([f32; OUTPUT_SIZE], &'static str), rt::Error> {
                let mut out = [0.0; OUTPUT_SIZE];
                self.forward(&rt::BertInput::new(input_ids), &mut out)?;
                let best = out
                    .iter()
                    .enumerate()
                    .fold(0, |best, (i, v)| if *v > out[best] { i } else { best });
                Ok((out, LABELS[best]))
            }
        },
        BertOutputSpec::LastHiddenState => quote! {
            /// Encodes one sequence of token ids: `len * HIDDEN_SIZE` values.
            pub fn encode(&self, input_ids: &[u32]) -> Result<Vec<f32>, rt::Error> {
                let mut out = vec![0.0; input_ids.len() * HIDDEN_SIZE];
                self.forward(&rt::BertInput::new(input_ids), &mut out)?;
                Ok(out)
            }
        },
    };
    let labels = &b.labels;
    let labels_len = lit(b.labels.len());
    let tokenizer = match &b.tokenizer {
        Some(_) => {
            let inc = layout
                .placement
                .include("include_str", &format!("{}.tokenizer.json", model.name));
            quote! {
                /// The Hugging Face `tokenizer.json` this model was configured with.
                pub const TOKENIZER_JSON: Option<&str> = Some(#inc);
            }
        }
        None => quote! {
            /// No tokenizer was configured (`[bert] tokenizer`).
            pub const TOKENIZER_JSON: Option<&str> = None;
        },
    };
    let blob = layout
        .placement
        .include("include_bytes", &format!("{}.blob", model.name));
    let (blob_id, blob_len) = (&layout.blob_id, lit(layout.blob_len));
    let kernels = kernel_list(model);
    let consts = [
        ("VOCAB_SIZE", b.vocab, " Vocabulary size."),
        ("HIDDEN_SIZE", h, " Hidden width."),
        ("NUM_LAYERS", layers, " Encoder layers."),
        ("NUM_HEADS", heads, " Attention heads."),
        ("INTERMEDIATE_SIZE", inter, " FFN width."),
        ("TYPE_VOCAB_SIZE", b.type_vocab, " Token types."),
        ("MAX_SEQ_LEN", b.max_seq_len, " Longest input accepted."),
        (
            "OUTPUT_SIZE",
            output_size,
            " Width of the pooled output or the logits.",
        ),
    ]
    .map(|(n, v, d)| {
        let (n, v) = (format_ident!("{}", n), lit(v));
        quote!(#[doc = #d] pub const #n: usize = #v;)
    });
    let quant_lit = lit(max_quant_in);
    let type_doc = format!(
        " The `{name}` model: BERT, {layers} layers, hidden {h}, {heads} heads, FFN {inter}, {}, output {:?}{}.",
        model.precision.name(),
        b.output,
        if b.normalize { " (L2-normalized)" } else { "" }
    );
    let module_doc = format!(" Generated code and weights of the `{name}` model.");

    quote! {
        #[doc = #module_doc]
        #[allow(dead_code, clippy::all, clippy::pedantic, unused_qualifications)]
        pub mod #module {
            use ::dynq_runtime as rt;

            #(#consts)*
            /// Class names of the logits, in order.
            pub const LABELS: [&str; #labels_len] = [#(#labels),*];
            #tokenizer
            /// Widest input of a quantized layer, padded to the kernels' K block.
            const QUANT_IN: usize = #quant_lit;
            /// Kernels the weights were packed for.
            const KERNELS: &[rt::KernelId] = #kernels;
            /// How activations are quantized before each integer GEMM.
            const AQ: rt::ops::ActQuant = #aq;
            const BLOB_ID: &str = #blob_id;
            const BLOB_LEN: usize = #blob_len;
            static BLOB: &rt::blob::Aligned<[u8]> = &rt::blob::Aligned { bytes: *#blob };

            struct Weights {
                #[doc = #word_doc]
                embeddings: rt::ops::bert::Embeddings<'static>,
                layers: [rt::ops::bert::EncoderLayer<'static>; NUM_LAYERS],
                #head_fields
            }

            #(#layer_fns)*

            fn weights() -> Result<&'static Weights, rt::Error> {
                static WEIGHTS: ::std::sync::OnceLock<Result<Weights, rt::Error>> = ::std::sync::OnceLock::new();
                WEIGHTS
                    .get_or_init(|| {
                        let b = rt::blob::Blob::open(&BLOB.bytes, BLOB_ID, BLOB_LEN)?;
                        Ok(Weights {
                            embeddings: rt::ops::bert::Embeddings {
                                word: #word,
                                position: #position,
                                token_type: #token_type,
                                norm: #emb_norm,
                            },
                            layers: [#(#layer_calls),*],
                            #head_inits
                        })
                    })
                    .as_ref()
                    .map_err(Clone::clone)
            }

            #[doc = #type_doc]
            ///
            /// A unit struct: use it directly, `Model.forward(...)`. One call runs one sequence
            /// of up to [`MAX_SEQ_LEN`] tokens; its length is the run-time dimension, every
            /// other size is a constant.
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
            pub struct #ty;

            impl #ty {
                /// What [`Self::forward`] writes.
                pub const OUTPUT: rt::BertOutput = #output_kind;
                /// Width of the pooled output or the logits.
                pub const OUTPUT_SIZE: usize = OUTPUT_SIZE;
                /// Hidden width.
                pub const HIDDEN_SIZE: usize = HIDDEN_SIZE;
                /// Longest input accepted.
                pub const MAX_SEQ_LEN: usize = MAX_SEQ_LEN;

                /// Runs one sequence. `out` receives
                #[doc = #output_doc]
                /// . Uses this thread's workspace, so it does not allocate after the first
                /// call with the longest sequence.
                pub fn forward(&self, input: &rt::BertInput<'_>, out: &mut [f32]) -> Result<(), rt::Error> {
                    rt::with_workspace(|ws| self.forward_with(ws, input, out))
                }

                /// [`Self::forward`] with a caller-owned workspace.
                pub fn forward_with(
                    &self,
                    ws: &mut rt::Workspace,
                    input: &rt::BertInput<'_>,
                    out: &mut [f32],
                ) -> Result<(), rt::Error> {
                    let len = input.check(VOCAB_SIZE, TYPE_VOCAB_SIZE, MAX_SEQ_LEN)?;
                    let expected = #output_len;
                    if out.len() != expected {
                        return Err(rt::Error::OutputLength { expected, rows: 1, width: expected, found: out.len() });
                    }
                    let w = weights()?;
                    rt::dispatch(Forward { w, ws, input, len, out }, KERNELS)
                }

                #convenience
            }

            impl rt::EncoderModel for #ty {
                const NAME: &'static str = #name;
                const OUTPUT: rt::BertOutput = #output_kind;
                const HIDDEN_SIZE: usize = HIDDEN_SIZE;
                const OUTPUT_SIZE: usize = OUTPUT_SIZE;
                const MAX_SEQ_LEN: usize = MAX_SEQ_LEN;
                const LABELS: &'static [&'static str] = &LABELS;
                const TOKENIZER_JSON: Option<&'static str> = TOKENIZER_JSON;
                fn forward(&self, input: &rt::BertInput<'_>, out: &mut [f32]) -> Result<(), rt::Error> {
                    #ty::forward(self, input, out)
                }
            }

            struct Forward<'a> {
                w: &'static Weights,
                ws: &'a mut rt::Workspace,
                input: &'a rt::BertInput<'a>,
                len: usize,
                out: &'a mut [f32],
            }

            impl rt::Job for Forward<'_> {
                type Output = ();

                #[inline(always)]
                fn run<K: rt::Kernel>(self, kernel: K) {
                    let Forward { w, ws, input, len, out } = self;
                    let threads = rt::kernels::threads();
                    let buf = ws.buffers(
                        len * (6 * HIDDEN_SIZE + INTERMEDIATE_SIZE + 1) + rt::ops::bert::scores_len(len, threads),
                        len * QUANT_IN,
                        len,
                    );
                    let [x, qkv, ctx, tmp, ffn, scores, mask_bias] = rt::split_mut(
                        buf.f32,
                        [len * HIDDEN_SIZE, len * 3 * HIDDEN_SIZE, len * HIDDEN_SIZE, len * HIDDEN_SIZE, len * INTERMEDIATE_SIZE, rt::ops::bert::scores_len(len, threads), len],
                    );
                    rt::ops::bert::embed::<HIDDEN_SIZE>(&w.embeddings, input, x);
                    rt::ops::bert::mask_bias(input, len, mask_bias);
                    let mut s = rt::ops::bert::EncoderScratch {
                        qkv,
                        ctx,
                        tmp,
                        ffn,
                        scores,
                        mask_bias,
                        quant: rt::ops::QuantScratch { quant: buf.quant, scales: buf.scales, zero_points: buf.zero_points },
                    };
                    for layer in &w.layers {
                        rt::ops::bert::encoder_layer::<K, #h_l, #h3_l, #heads_l, #i_l>(kernel, layer, #act, AQ, len, x, &mut s);
                    }
                    #finish
                }
            }
        }
        pub use #module::#ty;
    }
}
