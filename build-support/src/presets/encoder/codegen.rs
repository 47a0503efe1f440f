//! Code generation for the encoder presets (`bert`, `encoder`): one weight view per layer, the
//! runtime's encoder driver (`rt::models::encoder`) with the sizes as constants; the family's
//! pieces are values of its `Encoder`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::codegen::{
    act_quant_tokens, activation_tokens, linear_value, lit, provenance, section_tokens, Layout,
    Loader, ModuleParts, TableSections,
};
use crate::ir::{Encoder, Model, Norm, Positions};
use crate::spec::BertOutputSpec;
use crate::spec::ForwardKind;

fn norm_value(n: &Norm, eps: &TokenStream, layout: &Layout) -> TokenStream {
    let (g, b) = (
        layout.f32_view(&n.gamma.name),
        layout.f32_view(&n.beta.name),
    );
    quote!(rt::ops::bert::LayerNorm { gamma: #g, beta: #b, eps: #eps })
}

/// The word table's blob view (`rt::ops::bert::Table::..`) and its provenance line.
fn word_table(b: &Encoder, layout: &Layout) -> (TokenStream, String) {
    let name = b.word.name.strip_suffix(".weight").unwrap_or(&b.word.name);
    let head = format!(" {name}: Embedding {}x{}", b.vocab, b.embedding_width);
    match layout
        .word_table
        .as_ref()
        .expect("an encoder has a word table")
    {
        TableSections::F32(s) => {
            let v = section_tokens("f32s", s);
            (
                quote!(rt::ops::bert::Table::F32(#v)),
                format!("{head}, f32"),
            )
        }
        TableSections::F16(s) => {
            let v = section_tokens("f16s", s);
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
            let (r, sc) = (section_tokens("i8s", rows), section_tokens("f32s", scales));
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

pub(super) fn module(model: &Model, layout: &Layout, b: &Encoder) -> ModuleParts {
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
        BertOutputSpec::LastHiddenState => h,
        _ => b.dims.unwrap_or(h),
    };

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
        let norm1 = match &l.norm1 {
            Some(n) => {
                let v = norm_value(n, &eps, layout);
                quote!(Some(#v))
            }
            None => quote!(None),
        };
        let norm2 = norm_value(&l.norm2, &eps, layout);
        let rotary = match l.rotary {
            Some(t) => {
                let v = layout.f32_view(&b.rotary[t].table.name);
                quote!(Some(rt::ops::bert::Rotary { table: #v }))
            }
            None => quote!(None),
        };
        let window = match l.window {
            Some(w) => {
                let w = lit(w);
                quote!(Some(#w))
            }
            None => quote!(None),
        };
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
                    rotary: #rotary,
                    window: #window,
                })
            }
        }
    });
    let layer_calls = (0..layers).map(|i| {
        let f = format_ident!("layer_{}", i);
        quote!(#f(&b)?)
    });

    let (word, word_doc) = word_table(b, layout);
    let position = match &b.position {
        Some(p) => layout.f32_view(&p.name),
        None => quote!(&[]),
    };
    let positions = match b.positions {
        Positions::None => quote!(rt::ops::bert::Positions::None),
        Positions::Absolute => quote!(rt::ops::bert::Positions::Absolute),
        Positions::AfterPadding(p) => {
            let p = proc_macro2::Literal::u32_unsuffixed(p);
            quote!(rt::ops::bert::Positions::AfterPadding { padding_idx: #p })
        }
    };
    let token_type = match &b.token_type {
        Some(t) => {
            let v = layout.f32_view(&t.name);
            quote!(Some(#v))
        }
        None => quote!(None),
    };
    let emb_norm = norm_value(&b.emb_norm, &eps, layout);
    let mut docs = vec![word_doc];
    let projection = match &b.projection {
        Some(p) => {
            docs.push(provenance(p, layout.linear(&p.name)));
            let v = linear_value(p, layout);
            quote!(Some(#v))
        }
        None => quote!(None),
    };
    let relative = match &b.relative {
        Some(r) => {
            let t = layout.f32_view(&r.table.name);
            let (nb, md) = (lit(r.num_buckets), lit(r.max_distance));
            docs.push(format!(
                " {}: relative position bias, {} buckets x {} heads, max distance {}",
                r.table
                    .name
                    .strip_suffix(".weight")
                    .unwrap_or(&r.table.name),
                r.num_buckets,
                heads,
                r.max_distance
            ));
            quote!(Some(rt::models::encoder::RelativeBias { table: #t, num_buckets: #nb, max_distance: #md }))
        }
        None => quote!(None),
    };
    for r in &b.rotary {
        docs.push(format!(
            " {}: rotary table, {} positions x {} (cos, sin), base {}",
            r.table.name, r.table.shape[0], r.table.shape[1], r.theta
        ));
    }
    let head = match &b.head {
        Some(hd) => {
            docs.push(provenance(&hd.dense, layout.linear(&hd.dense.name)));
            docs.push(provenance(&hd.out, layout.linear(&hd.out.name)));
            let (dv, ov) = (
                linear_value(&hd.dense, layout),
                linear_value(&hd.out, layout),
            );
            let act = activation_tokens(hd.dense.activation);
            let pooling = if hd.mean {
                quote!(rt::models::encoder::HeadPooling::Mean)
            } else {
                quote!(rt::models::encoder::HeadPooling::First)
            };
            let norm = match &hd.norm {
                Some(n) => {
                    let v = norm_value(n, &eps, layout);
                    quote!(Some(#v))
                }
                None => quote!(None),
            };
            quote!(Some(rt::models::encoder::Head { pooling: #pooling, dense: #dv, act: #act, norm: #norm, out: #ov }))
        }
        None => quote!(None),
    };
    let final_norm = match &b.final_norm {
        Some(n) => {
            let v = norm_value(n, &eps, layout);
            quote!(Some(#v))
        }
        None => quote!(None),
    };
    let dims = match b.dims {
        Some(d) => {
            let d = lit(d);
            quote!(Some(#d))
        }
        None => quote!(None),
    };
    let (pre_norm, gated) = (b.pre_norm, b.gated);

    let aq = act_quant_tokens(model);
    let act = activation_tokens(b.act);
    let (h_l, heads_l, i_l) = (lit(h), lit(heads), lit(inter));
    let output_doc = match b.output {
        BertOutputSpec::LastHiddenState => {
            "`len * HIDDEN_SIZE` values: every token's last hidden state"
        }
        BertOutputSpec::Logits => "`OUTPUT_SIZE` logits, one per label in [`LABELS`]",
        BertOutputSpec::MeanPooled => {
            "`OUTPUT_SIZE` values: the mean of the last hidden states over the mask"
        }
        BertOutputSpec::Cls => "`OUTPUT_SIZE` values: the first token's last hidden state",
    };
    let output_kind = match b.output {
        BertOutputSpec::MeanPooled => quote!(rt::BertOutput::MeanPooled),
        BertOutputSpec::Cls => quote!(rt::BertOutput::Cls),
        BertOutputSpec::LastHiddenState => quote!(rt::BertOutput::LastHiddenState),
        BertOutputSpec::Logits => quote!(rt::BertOutput::Logits),
    };
    let types_doc = if b.type_vocab > 0 {
        "token types zero"
    } else {
        "the model has no token types"
    };
    // One sequence in, one result out: by ids (padding refused), by ids and mask, and, with a
    // tokenizer, by text.
    let text = b.tokenizer.is_some();
    // How a batch method turns a sequence's output `o` into the single method's result.
    let item = match b.output {
        BertOutputSpec::MeanPooled | BertOutputSpec::Cls => quote! {{
            let mut a = [0.0; OUTPUT_SIZE];
            a.copy_from_slice(o);
            a
        }},
        BertOutputSpec::Logits => quote! {{
            let mut a = [0.0; OUTPUT_SIZE];
            a.copy_from_slice(o);
            let best = a
                .iter()
                .enumerate()
                .fold(0, |best, (i, v)| if *v > a[best] { i } else { best });
            (a, LABELS[best])
        }},
        BertOutputSpec::LastHiddenState => quote!(o.to_vec()),
    };
    let (single, ret, make, finish, what) = match b.output {
        BertOutputSpec::MeanPooled | BertOutputSpec::Cls => (
            "embed",
            quote!([f32; OUTPUT_SIZE]),
            quote!(let mut out = [0.0; OUTPUT_SIZE];),
            quote!(Ok(out)),
            "Embeds",
        ),
        BertOutputSpec::Logits => (
            "classify",
            quote!(([f32; OUTPUT_SIZE], &'static str)),
            quote!(let mut out = [0.0; OUTPUT_SIZE];),
            quote! {
                let best = out
                    .iter()
                    .enumerate()
                    .fold(0, |best, (i, v)| if *v > out[best] { i } else { best });
                Ok((out, LABELS[best]))
            },
            "Classifies (the logits and the best label)",
        ),
        BertOutputSpec::LastHiddenState => (
            "encode",
            quote!(Vec<f32>),
            quote!(let mut out = vec![0.0; input.input_ids.len() * HIDDEN_SIZE];),
            quote!(Ok(out)),
            "Encodes (`len * HIDDEN_SIZE` values)",
        ),
    };
    let (f_ids, f_masked, f_input) = (
        format_ident!("{single}"),
        format_ident!("{single}_masked"),
        format_ident!("{single}_input"),
    );
    let (f_text, f_texts) = (
        format_ident!("{single}_text"),
        format_ident!("{single}_texts"),
    );
    let (f_batch, f_batch_inputs) = (
        format_ident!("{single}_batch"),
        format_ident!("{single}_batch_inputs"),
    );
    let text_hint = if text {
        format!(", or [`Self::{single}_text`] for text")
    } else {
        String::new()
    };
    let padding = match b.pad_id {
        Some(p) => format!("Ids that end with the padding id ({p}) are refused: use "),
        None => "Use ".to_string(),
    };
    let ids_doc = format!(
        " {what} one sequence of token ids, with special tokens and without padding (mask all \
         ones, {types_doc}). {padding}[`Self::{single}_masked`] for padded ids{text_hint}."
    );
    let masked_doc = format!(
        " {what} one sequence of token ids with its attention mask (1: token, 0: padding), \
         as a tokenizer that pads returns them ({types_doc})."
    );
    let batch_doc = format!(
        " {what} each sequence of token ids (as [`Self::{single}`] does), in order. The \
         sequences run as ragged batches of up to [`rt::BATCH_TOKENS`] tokens: no padding is \
         computed, and each result is bit-identical to the sequence run alone, whatever else is \
         in the batch and however many threads run it. An error names the sequence's index."
    );
    let text_api = if text {
        let text_doc = format!(
            " {what} one text, tokenized with the model's tokenizer (padding off, special \
             tokens added); `truncate` says what happens past [`MAX_SEQ_LEN`] tokens."
        );
        let texts_doc = format!(
            " [`Self::{single}_text`] for each text, in order, run as ragged batches (see \
             [`Self::{single}_batch`]): the results are bit-identical to one text at a time. An \
             error names the text's index."
        );
        quote! {
            #[doc = #text_doc]
            pub fn #f_text(&self, text: &str, truncate: rt::text::Truncate) -> Result<#ret, rt::Error> {
                let t = tokenizer()?.encode(text, truncate)?;
                self.#f_input(&rt::BertInput {
                    input_ids: &t.ids,
                    attention_mask: None,
                    token_type_ids: Some(&t.type_ids),
                })
            }

            #[doc = #texts_doc]
            pub fn #f_texts<S: AsRef<str>>(&self, texts: &[S], truncate: rt::text::Truncate) -> Result<Vec<#ret>, rt::Error> {
                let tokenizer = tokenizer()?;
                let encoded = texts
                    .iter()
                    .enumerate()
                    .map(|(index, t)| {
                        tokenizer
                            .encode(t.as_ref(), truncate)
                            .map_err(|e| rt::Error::item(index, e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let inputs: Vec<rt::BertInput<'_>> = encoded
                    .iter()
                    .map(|t| rt::BertInput {
                        input_ids: &t.ids,
                        attention_mask: None,
                        token_type_ids: Some(&t.type_ids),
                    })
                    .collect();
                self.#f_batch_inputs(&inputs)
            }
        }
    } else {
        quote!()
    };
    let convenience = quote! {
        #[doc = #ids_doc]
        pub fn #f_ids(&self, input_ids: &[u32]) -> Result<#ret, rt::Error> {
            self.#f_input(&rt::BertInput::new(input_ids))
        }

        #[doc = #masked_doc]
        pub fn #f_masked(&self, input_ids: &[u32], attention_mask: &[u32]) -> Result<#ret, rt::Error> {
            self.#f_input(&rt::BertInput {
                input_ids,
                attention_mask: Some(attention_mask),
                token_type_ids: None,
            })
        }

        #text_api

        #[doc = #batch_doc]
        pub fn #f_batch(&self, inputs: &[&[u32]]) -> Result<Vec<#ret>, rt::Error> {
            let inputs: Vec<rt::BertInput<'_>> = inputs.iter().map(|ids| rt::BertInput::new(ids)).collect();
            self.#f_batch_inputs(&inputs)
        }

        fn #f_input(&self, input: &rt::BertInput<'_>) -> Result<#ret, rt::Error> {
            #make
            self.forward(input, &mut out)?;
            #finish
        }

        /// The batch methods' common path: token-budgeted chunks through
        /// [`Self::forward_batch`].
        fn #f_batch_inputs(&self, inputs: &[rt::BertInput<'_>]) -> Result<Vec<#ret>, rt::Error> {
            let mut results = Vec::with_capacity(inputs.len());
            let mut out = Vec::new();
            for (first, chunk) in rt::batches(inputs, rt::BATCH_TOKENS) {
                let lens: Vec<usize> = chunk
                    .iter()
                    .map(|i| <Self as rt::EncoderModel>::output_len(i.input_ids.len()))
                    .collect();
                out.clear();
                out.resize(lens.iter().sum(), 0.0);
                self.forward_batch(chunk, &mut out).map_err(|e| e.offset_item(first))?;
                let mut at = 0;
                for n in lens {
                    let o = &out[at..at + n];
                    at += n;
                    results.push(#item);
                }
            }
            Ok(results)
        }
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
                pub const TOKENIZER_JSON: Option<&str> = Some(TOKENIZER_TEXT);
                const TOKENIZER_TEXT: &str = #inc;
                /// The tokenizer, loaded at first use (needs dynq-runtime's `text` feature, on
                /// by default).
                fn tokenizer() -> Result<&'static rt::text::Tokenizer, rt::Error> {
                    static TOKENIZER: ::std::sync::OnceLock<Result<rt::text::Tokenizer, rt::Error>> =
                        ::std::sync::OnceLock::new();
                    TOKENIZER
                        .get_or_init(|| rt::text::Tokenizer::new(TOKENIZER_TEXT, MAX_SEQ_LEN))
                        .as_ref()
                        .map_err(Clone::clone)
                }
            }
        }
        None => quote! {
            /// No tokenizer was configured (`tokenizer` in the description).
            pub const TOKENIZER_JSON: Option<&str> = None;
        },
    };
    let pad_id = match b.pad_id {
        Some(p) => quote!(Some(#p)),
        None => quote!(None),
    };
    let consts = [
        ("VOCAB_SIZE", b.vocab, " Vocabulary size."),
        ("HIDDEN_SIZE", h, " Hidden width."),
        (
            "EMBEDDING_SIZE",
            b.embedding_width,
            " Width of the embedding tables.",
        ),
        ("NUM_LAYERS", layers, " Encoder layers."),
        ("NUM_HEADS", heads, " Attention heads."),
        ("INTERMEDIATE_SIZE", inter, " FFN width."),
        (
            "TYPE_VOCAB_SIZE",
            b.type_vocab,
            " Token types (0: the model has none and accepts only type 0).",
        ),
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
    let normalize = b.normalize;
    let family = b.family;
    let type_doc = format!(
        " The `{name}` model: {}, {layers} layers, hidden {h}, {heads} heads, FFN {inter}, {}, output {:?}{}.",
        b.family_display,
        model.precision.name(),
        b.output,
        if b.normalize { " (L2-normalized)" } else { "" }
    );

    let (forward_items, run_one, run_batch) = match layout.forward {
        ForwardKind::Inlined => (
            quote! {
                /// [`KERNELS`] as a type: the forward is compiled for these kernels only.
                type Kernels = rt::kernels::KernelMask<{ rt::kernels::mask(KERNELS) }>;
                /// The sizes the encoder driver runs with, as constants.
                type Dims = rt::ops::bert::ConstDims<#h_l, #heads_l, #i_l>;
            },
            quote!(rt::models::encoder::run(
                Dims::default(),
                Kernels::default(),
                encoder()?,
                AQ,
                input,
                ws,
                out
            )),
            quote!(rt::models::encoder::run_batch(
                Dims::default(),
                Kernels::default(),
                encoder()?,
                AQ,
                inputs,
                ws,
                out
            )),
        ),
        ForwardKind::Shared => (
            quote! {
                /// The sizes, as values for the runtime's shared forward (`[target] forward =
                /// "shared"`), which this crate does not compile.
                const DIMS: rt::ops::bert::EncoderDims = rt::ops::bert::EncoderDims {
                    hidden: HIDDEN_SIZE,
                    heads: NUM_HEADS,
                    intermediate: INTERMEDIATE_SIZE,
                };
                const _: () = assert!(
                    rt::models::encoder::SHARED_FORWARD,
                    "this model was generated with `[target] forward = \"shared\"`: enable dynq-runtime's `shared-forward` feature"
                );
            },
            quote!(rt::models::encoder::run_shared(
                DIMS,
                KERNELS,
                encoder()?,
                AQ,
                input,
                ws,
                out
            )),
            quote!(rt::models::encoder::run_batch_shared(
                DIMS,
                KERNELS,
                encoder()?,
                AQ,
                inputs,
                ws,
                out
            )),
        ),
    };
    let init = quote! {
            rt::models::encoder::Encoder {
                embeddings: rt::ops::bert::Embeddings {
                    word: #word,
                    position: #position,
                    positions: #positions,
                    token_type: #token_type,
                    norm: #emb_norm,
                },
                embedding_width: EMBEDDING_SIZE,
                projection: #projection,
                relative: #relative,
                layers: vec![#(#layer_calls),*],
                shape: rt::ops::bert::LayerShape { act: #act, pre_norm: #pre_norm, gated: #gated },
                final_norm: #final_norm,
                output: #output_kind,
                normalize: #normalize,
                dims: #dims,
                head: #head,
                vocab: VOCAB_SIZE,
                type_vocab: TYPE_VOCAB_SIZE,
                max_seq_len: MAX_SEQ_LEN,
                pad_id: PAD_ID,
            }
    };

    ModuleParts {
        consts: quote! {
            #(#consts)*
            /// The encoder family (`[encoder] family`).
            pub const FAMILY: &str = #family;
            /// Class names of the logits, in order.
            pub const LABELS: [&str; #labels_len] = [#(#labels),*];
            /// The padding token id (`pad_token_id`): token ids ending with it need a mask.
            pub const PAD_ID: Option<u32> = #pad_id;
            #tokenizer
        },
        quant: quote! {
            /// How activations are quantized before each integer GEMM.
            const AQ: rt::ops::ActQuant = #aq;
        },
        weights: quote! {
            #forward_items

            #(#layer_fns)*
        },
        loader: Loader {
            name: "encoder",
            docs,
            ty: quote!(rt::models::encoder::Encoder<'static>),
            init,
        },
        summary: type_doc,
        type_docs: quote! {
            /// A unit struct: use it directly, `Model.forward(...)`. One call runs one sequence
            /// of up to [`MAX_SEQ_LEN`] tokens, or a ragged batch of them (`forward_batch` and the
            /// `_batch` methods); lengths are the run-time dimension, every other size is a
            /// constant.
        },
        inherent_consts: quote! {
            /// What [`Self::forward`] writes.
            pub const OUTPUT: rt::BertOutput = #output_kind;
            /// Width of the pooled output or the logits.
            pub const OUTPUT_SIZE: usize = OUTPUT_SIZE;
            /// Hidden width.
            pub const HIDDEN_SIZE: usize = HIDDEN_SIZE;
            /// Longest input accepted.
            pub const MAX_SEQ_LEN: usize = MAX_SEQ_LEN;
        },
        api: quote! {
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
                #run_one
            }

            /// Runs a ragged batch: `inputs` back to back, no padding computed (the linear layers
            /// run over all their tokens at once, attention per sequence). `out` receives each
            /// input's output in turn (as [`Self::forward`] would write it). Each input's
            /// output is bit-identical to [`Self::forward`] on it alone. An error names the
            /// input's index. The workspace grows with the batch's total tokens: batch by a
            /// token budget (see [`rt::batches`]).
            pub fn forward_batch(&self, inputs: &[rt::BertInput<'_>], out: &mut [f32]) -> Result<(), rt::Error> {
                rt::with_workspace(|ws| self.forward_batch_with(ws, inputs, out))
            }

            /// [`Self::forward_batch`] with a caller-owned workspace.
            pub fn forward_batch_with(
                &self,
                ws: &mut rt::Workspace,
                inputs: &[rt::BertInput<'_>],
                out: &mut [f32],
            ) -> Result<(), rt::Error> {
                #run_batch
            }

            #convenience
        },
        model_trait: quote!(rt::EncoderModel),
        trait_consts: quote! {
            const OUTPUT: rt::BertOutput = #output_kind;
            const HIDDEN_SIZE: usize = HIDDEN_SIZE;
            const OUTPUT_SIZE: usize = OUTPUT_SIZE;
            const MAX_SEQ_LEN: usize = MAX_SEQ_LEN;
            const LABELS: &'static [&'static str] = &LABELS;
            const TOKENIZER_JSON: Option<&'static str> = TOKENIZER_JSON;
            const FAMILY: &'static str = FAMILY;
            const NORMALIZED: bool = #normalize;
        },
        trait_fns: quote! {
            fn forward(&self, input: &rt::BertInput<'_>, out: &mut [f32]) -> Result<(), rt::Error> {
                #ty::forward(self, input, out)
            }
            fn forward_batch(&self, inputs: &[rt::BertInput<'_>], out: &mut [f32]) -> Result<(), rt::Error> {
                #ty::forward_batch(self, inputs, out)
            }
        },
        tail: quote!(),
    }
}
