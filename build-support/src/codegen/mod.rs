//! Code generation: IR + blob sections -> Rust tokens -> formatted source.
//!
//! Helpers turn IR pieces (linear layers, blob sections) into tokens; each preset writes its
//! own parts with them ([`crate::presets::ModelKind::module`]); [`generate`] assembles every
//! model's module from one skeleton.

mod format;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};

pub use format::format_file;

use crate::blob::Section;
use crate::ir::{LayerPrecision, Linear, Model};
use crate::quantize::ErrorStats;
use crate::spec::{
    ActivationGranularity, ActivationSpec, ForwardKind, SchemeSpec, WeightGranularity,
    WeightsStorage,
};

/// How the generated code finds the files generated next to it (`<name>.blob`,
/// `<name>.tokenizer.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `include_bytes!(concat!(env!("OUT_DIR"), "/<file>"))`: build.rs output.
    OutDir,
    /// `include_bytes!("<file>")`: next to the generated source file.
    Relative,
    /// `include_bytes!("<dir>/<file>")` with an absolute directory: the proc macro's cache.
    Dir(std::path::PathBuf),
    /// `include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/<dir>/<file>"))`: a Cargo project
    /// the build writes (`dynq build`'s standalone crate), `<dir>` relative to its manifest.
    ManifestDir(String),
}

impl Placement {
    /// The path of `file` as `include_bytes!` takes it: a string expression.
    fn path_expr(&self, file: &str) -> TokenStream {
        match self {
            Placement::OutDir => {
                let f = format!("/{file}");
                quote!(concat!(env!("OUT_DIR"), #f))
            }
            Placement::Relative => quote!(#file),
            Placement::Dir(dir) => {
                let p = dir.join(file).display().to_string();
                quote!(#p)
            }
            Placement::ManifestDir(dir) => {
                let f = format!("/{dir}/{file}");
                quote!(concat!(env!("CARGO_MANIFEST_DIR"), #f))
            }
        }
    }

    /// `dir` inside the Cargo project at `project`, named by `CARGO_MANIFEST_DIR`
    /// ([`Placement::ManifestDir`]) when the project's absolute path can be quoted for the
    /// assembler's `.incbin` (`dynq_runtime::embedded_blob!`), else [`Placement::Relative`].
    pub fn in_project(project: &std::path::Path, dir: &str) -> Placement {
        let absolute = std::path::absolute(project).ok();
        if absolute
            .as_deref()
            .and_then(|p| p.to_str())
            .is_some_and(plain_path)
        {
            Placement::ManifestDir(dir.into())
        } else {
            Placement::Relative
        }
    }

    /// Whether the path of `file` can go into the assembler's `.incbin` (see
    /// `dynq_runtime::embedded_blob!`): absolute, and quoted without escapes. A directory known
    /// only when the code is compiled (`OUT_DIR` outside a build script, `CARGO_MANIFEST_DIR`
    /// outside [`Placement::in_project`]) is taken to be plain: a quote or backslash there is
    /// an assembler error naming the path.
    fn incbin_ok(&self, file: &str) -> bool {
        plain_path(file)
            && match self {
                Placement::Relative => false,
                Placement::OutDir => std::env::var("OUT_DIR").map_or(true, |d| plain_path(&d)),
                Placement::Dir(dir) => dir.to_str().is_some_and(plain_path),
                Placement::ManifestDir(dir) => plain_path(dir),
            }
    }

    /// `include_bytes!`/`include_str!` (per `mac`) of `file`.
    pub(crate) fn include(&self, mac: &str, file: &str) -> TokenStream {
        let mac = format_ident!("{}", mac);
        let path = self.path_expr(file);
        quote!(#mac!(#path))
    }

    /// `Some(path)` of `file` where it means the same at run time (not relative to the source
    /// file), else `None`; also `None` for a `ManifestDir` project, which ships its weights
    /// file beside the executable, not where the build wrote the blob.
    fn runtime_path(&self, file: &str) -> TokenStream {
        match self {
            Placement::Relative | Placement::ManifestDir(_) => quote!(None),
            _ => {
                let path = self.path_expr(file);
                quote!(Some(#path))
            }
        }
    }
}

/// Whether `path` goes between the assembler's double quotes as it is.
fn plain_path(path: &str) -> bool {
    !path.contains(['"', '\\', '\n'])
}

/// The blob's part of every generated module, one skeleton for every model kind.
struct BlobItems {
    /// Module items: `BLOB_ID`, `BLOB_LEN`, the bytes (embedded, or a
    /// `rt::blob::WeightsFile`), and `fn blob()`, the checked view.
    module: TokenStream,
    /// Items of the model type's inherent impl: `WEIGHTS_FILE`, and `load_weights` when the
    /// weights are in a file.
    methods: TokenStream,
}

fn blob_items(model: &Model, layout: &Layout) -> BlobItems {
    let file = format!("{}.blob", model.name);
    let (blob_id, blob_len) = (&layout.blob_id, lit(layout.blob_len));
    let ids = quote! {
        /// SHA-256 of the weight blob this code was generated with (hex).
        const BLOB_ID: &str = #blob_id;
        /// Its length in bytes.
        const BLOB_LEN: usize = #blob_len;
    };
    match layout.weights {
        WeightsStorage::Embedded => {
            // `BLOB` is a `&'static [u8]` either way (`&BLOB.bytes` in the fallback).
            let (bytes, view) = if layout.placement.incbin_ok(&file) {
                let path = layout.placement.path_expr(&file);
                let symbol = format!("dynq_blob_{}", layout.blob_id);
                let item = quote!(rt::embedded_blob!(static BLOB = #path, #blob_len, #symbol););
                (item, quote!(BLOB))
            } else {
                let include = layout.placement.include("include_bytes", &file);
                let item = quote! {
                    static BLOB: &rt::blob::Aligned<[u8]> = &rt::blob::Aligned { bytes: *#include };
                };
                (item, quote!(&BLOB.bytes))
            };
            let module = quote! {
                #ids
                #bytes
                /// The embedded weights, checked against this code.
                fn blob() -> Result<rt::blob::Blob<'static>, rt::Error> {
                    rt::blob::Blob::open(#view, BLOB_ID, BLOB_LEN)
                }
            };
            BlobItems {
                module,
                methods: quote! {
                    /// `None`: the weights are embedded in the binary (`[target] weights`).
                    pub const WEIGHTS_FILE: Option<&'static str> = None;
                },
            }
        }
        WeightsStorage::File => {
            let built_at = layout.placement.runtime_path(&file);
            let doc =
                format!(" `Some(\"{file}\")`: the weights are not in the binary but in this file");
            BlobItems {
                module: quote! {
                    #ids
                    /// The weights file, found and mapped at first use.
                    static WEIGHTS_FILE: rt::blob::WeightsFile =
                        rt::blob::WeightsFile::new(#file, #built_at, BLOB_ID, BLOB_LEN);
                    /// The weights file's blob, checked against this code.
                    fn blob() -> Result<rt::blob::Blob<'static>, rt::Error> {
                        WEIGHTS_FILE.blob()
                    }
                },
                methods: quote! {
                    #[doc = #doc]
                    /// (`[target] weights = "file"`), memory-mapped at first use and checked
                    /// against the build. It is looked for in `$DYNQ_WEIGHTS_DIR` if that is set,
                    /// else next to the executable, then where the build wrote it;
                    /// [`Self::load_weights`] names it instead.
                    pub const WEIGHTS_FILE: Option<&'static str> = Some(#file);

                    /// Loads the weights from `path` now (memory-mapped and checked against the
                    /// build) instead of searching for them at first use. Call it before the first
                    /// forward: once the weights are loaded, another path is an error.
                    pub fn load_weights(path: impl AsRef<::std::path::Path>) -> Result<(), rt::Error> {
                        WEIGHTS_FILE.load(path.as_ref())
                    }
                },
            }
        }
    }
}

/// Where a tensor other than a linear layer's lies in the blob.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    /// The section.
    pub section: Section,
    /// Stored as f16 (widened by the runtime).
    pub f16: bool,
}

/// Blob sections of an embedding table (a BERT's word embeddings).
#[derive(Debug, Clone)]
pub enum TableSections {
    /// f32 rows.
    F32(Section),
    /// f16 rows, widened as they are looked up.
    F16(Section),
    /// INT8 rows with one f32 scale per row, dequantized as they are looked up.
    Int8 {
        /// `[rows][width]` i8.
        rows: Section,
        /// One scale per row.
        scales: Section,
        /// Quantization error.
        stats: ErrorStats,
    },
}

/// Blob sections of one linear layer.
#[derive(Debug, Clone)]
pub enum LinearSections {
    /// INT8 weights.
    Int8 {
        /// Packed weights (row-major).
        weight: Section,
        /// Per-channel scales.
        scales: Section,
        /// Per-channel column sums.
        col_sums: Section,
        /// Bias.
        bias: Option<Section>,
        /// Quantization error.
        stats: ErrorStats,
    },
    /// f32 weights.
    F32 {
        /// Row-major weights.
        weight: Section,
        /// Stored as f16 (lossless for f16 checkpoints), widened once at load.
        f16: bool,
        /// Bias.
        bias: Option<Section>,
    },
}

/// Everything codegen needs besides the IR.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Where the blob (and tokenizer) are.
    pub placement: Placement,
    /// Whether the blob is embedded or read from a file at run time.
    pub weights: WeightsStorage,
    /// Whether an encoder runs its own inlined forward or the runtime's shared one.
    pub forward: ForwardKind,
    /// Its SHA-256 id, hex.
    pub blob_id: String,
    /// Its length.
    pub blob_len: usize,
    /// Per linear layer (by IR name), in IR order.
    pub linears: Vec<(String, LinearSections)>,
    /// Other tensors by name.
    pub tensors: Vec<(String, Stored)>,
    /// The word-embedding table of a BERT.
    pub word_table: Option<TableSections>,
}

impl Layout {
    pub(crate) fn linear(&self, name: &str) -> &LinearSections {
        &self
            .linears
            .iter()
            .find(|(n, _)| n == name)
            .expect("every linear has sections")
            .1
    }

    pub(crate) fn tensor(&self, name: &str) -> Stored {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .expect("every tensor has a section")
            .1
    }

    /// `b.f32s(..)?` or `b.f16s_as_f32(..)?` for a stored f32 tensor.
    pub(crate) fn f32_view(&self, name: &str) -> TokenStream {
        let t = self.tensor(name);
        section_tokens(if t.f16 { "f16s_as_f32" } else { "f32s" }, &t.section)
    }
}

pub(crate) fn lit(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

pub(crate) fn activation_tokens(a: ActivationSpec) -> TokenStream {
    match a {
        ActivationSpec::None => quote!(rt::Activation::None),
        ActivationSpec::Relu => quote!(rt::Activation::Relu),
        ActivationSpec::Gelu => quote!(rt::Activation::Gelu),
        ActivationSpec::GeluTanh => quote!(rt::Activation::GeluTanh),
        ActivationSpec::Tanh => quote!(rt::Activation::Tanh),
        ActivationSpec::Sigmoid => quote!(rt::Activation::Sigmoid),
    }
}

pub(crate) fn section_tokens(method: &str, s: &Section) -> TokenStream {
    let m = format_ident!("{}", method);
    let (o, c) = (lit(s.offset), lit(s.count));
    quote!(b.#m(#o, #c)?)
}

pub(crate) fn option_tokens(method: &str, s: &Option<Section>) -> TokenStream {
    match s {
        Some(s) => {
            let t = section_tokens(method, s);
            quote!(Some(#t))
        }
        None => quote!(None),
    }
}

/// The doc line that says where a layer came from and how it was stored.
pub(crate) fn provenance(l: &Linear, s: &LinearSections) -> String {
    let head = format!(
        " {}: Linear {}x{}, {}",
        l.name,
        l.in_features,
        l.out_features,
        l.activation.name()
    );
    match (s, l.precision) {
        (LinearSections::Int8 { stats, .. }, LayerPrecision::Int8(g)) => format!(
            "{head}, int8 per {}, max abs error {:.1e}, SQNR {:.1} dB",
            match g {
                WeightGranularity::PerChannel => "channel",
                WeightGranularity::PerTensor => "tensor",
            },
            stats.max_abs_error,
            stats.sqnr_db
        ),
        _ => format!("{head}, f32"),
    }
}

/// The blob view of one linear layer: `rt::QLinear { .. }` or `rt::F32Linear { .. }`.
pub(crate) fn linear_expr(l: &Linear, s: &LinearSections) -> TokenStream {
    let (n, k) = (lit(l.out_features), lit(l.in_features));
    match s {
        LinearSections::Int8 {
            weight,
            scales,
            col_sums,
            bias,
            ..
        } => {
            let (w, sc, cs, b) = (
                section_tokens("i8s", weight),
                section_tokens("f32s", scales),
                section_tokens("i32s", col_sums),
                option_tokens("f32s", bias),
            );
            quote!(rt::QLinear { n: #n, k: #k, weight: #w, scales: #sc, col_sums: #cs, bias: #b })
        }
        LinearSections::F32 { weight, f16, bias } => {
            let method = if *f16 { "f16s_as_f32" } else { "f32s" };
            let (w, b) = (section_tokens(method, weight), option_tokens("f32s", bias));
            quote!(rt::F32Linear { n: #n, k: #k, weight: #w, bias: #b })
        }
    }
}

/// The blob view of a linear layer as the precision-agnostic `rt::Linear` enum.
pub(crate) fn linear_value(l: &Linear, layout: &Layout) -> TokenStream {
    let e = linear_expr(l, layout.linear(&l.name));
    match l.precision {
        LayerPrecision::Int8(_) => quote!(rt::Linear::Int8(#e)),
        LayerPrecision::F32 => quote!(rt::Linear::F32(#e)),
    }
}

/// Field declaration and blob-view initializer of one linear layer.
pub(crate) fn linear_weights(l: &Linear, s: &LinearSections) -> (TokenStream, TokenStream) {
    let ident = format_ident!("{}", l.ident);
    let doc = provenance(l, s);
    let value = linear_expr(l, s);
    let ty = match s {
        LinearSections::Int8 { .. } => quote!(rt::QLinear<'static>),
        LinearSections::F32 { .. } => quote!(rt::F32Linear<'static>),
    };
    (
        quote! { #[doc = #doc] #ident: #ty, },
        quote! { #ident: #value, },
    )
}

/// `rt::ops::ActQuant { .. }` of the model.
pub(crate) fn act_quant_tokens(model: &Model) -> TokenStream {
    let g = match model.act_quant.granularity {
        ActivationGranularity::PerToken => quote!(rt::Granularity::PerToken),
        ActivationGranularity::PerTensor => quote!(rt::Granularity::PerTensor),
    };
    let s = match model.act_quant.scheme {
        SchemeSpec::Symmetric => quote!(rt::Scheme::Symmetric),
        SchemeSpec::Asymmetric => quote!(rt::Scheme::Asymmetric),
    };
    quote!(rt::ops::ActQuant { granularity: #g, scheme: #s })
}

/// The call that runs one linear layer from `input` into `output`.
pub(crate) fn linear_call(
    l: &Linear,
    model: &Model,
    input: &TokenStream,
    output: &TokenStream,
) -> TokenStream {
    let ident = format_ident!("{}", l.ident);
    let (k, n) = (lit(l.in_features), lit(l.out_features));
    let act = activation_tokens(l.activation);
    match l.precision {
        LayerPrecision::Int8(_) => {
            let aq = act_quant_tokens(model);
            quote! {
                rt::ops::linear_q::<K, #k, #n>(
                    kernel, #input, rows, &w.#ident, #act, #aq,
                    buf.quant, buf.scales, buf.zero_points, #output,
                );
            }
        }
        LayerPrecision::F32 => quote! {
            rt::ops::linear_f32::<K, #k, #n>(kernel, #input, rows, &w.#ident, #act, #output);
        },
    }
}

/// The `dynq_runtime::KernelId` variant of a kernel name of [`crate::spec::KERNEL_NAMES`].
pub fn kernel_variant(name: &str) -> &'static str {
    match name {
        "scalar" => "Scalar",
        "avx2" => "Avx2",
        "amx" => "Amx",
        "avx512vnni" => "Avx512Vnni",
        "avxvnni" => "AvxVnni",
        "neon_dot" => "NeonDot",
        _ => "NeonI8mm",
    }
}

fn kernel_list(model: &Model) -> TokenStream {
    let ids = model.kernels.iter().map(|k| {
        let variant = Ident::new(kernel_variant(k), Span::call_site());
        quote!(rt::KernelId::#variant)
    });
    quote!(&[#(#ids),*])
}

/// What a preset's [`ModelKind::module`](crate::presets::ModelKind::module) puts in the
/// skeleton [`generate`] writes for every model kind: in order, the module's items, the model
/// type's docs, its inherent impl, and its `dynq_runtime` model trait's impl.
pub struct ModuleParts {
    /// Module items before `KERNELS`: sizes and other public constants, labels, the tokenizer.
    pub consts: TokenStream,
    /// Items between `KERNELS` and the blob's items (the activation quantization, `AQ`).
    pub quant: TokenStream,
    /// Items after the blob's: the weight views' types and the functions that build them.
    pub weights: TokenStream,
    /// The function, after [`Self::weights`], that builds the views at first use.
    pub loader: Loader,
    /// The model type's first doc line.
    pub summary: String,
    /// The rest of its doc comment, as `#[doc]` attributes, after an empty line.
    pub type_docs: TokenStream,
    /// The inherent impl's constants, before the blob's methods.
    pub inherent_consts: TokenStream,
    /// The inherent impl's methods, after the blob's (the public API).
    pub api: TokenStream,
    /// The `dynq_runtime` trait the type implements (`rt::DenseModel`, ...).
    pub model_trait: TokenStream,
    /// That impl's constants between `NAME` and `PRECISION`.
    pub trait_consts: TokenStream,
    /// That impl's methods after `load`.
    pub trait_fns: TokenStream,
    /// Items after the impls (a model's own `rt::Job`).
    pub tail: TokenStream,
}

/// `fn #name() -> Result<&'static #ty, rt::Error>`, which the skeleton writes and the model
/// trait's `load` calls: the model's weight views, built from `blob()` (bound to `b`) by
/// `init` at first use, kept in a `rt::blob::LoadOnce` (a failure is returned, not kept).
pub struct Loader {
    /// The function's name.
    pub name: &'static str,
    /// Its doc lines (provenance of what it builds besides the per-layer functions).
    pub docs: Vec<String>,
    /// The views' type.
    pub ty: TokenStream,
    /// The expression that builds them.
    pub init: TokenStream,
}

/// Generates the model module and its re-export: one skeleton for every kind, filled with
/// the parts its preset gives ([`crate::presets::ModelKind::module`]).
pub fn generate(model: &Model, layout: &Layout) -> TokenStream {
    let ModuleParts {
        consts,
        quant,
        weights,
        loader,
        summary,
        type_docs,
        inherent_consts,
        api,
        model_trait,
        trait_consts,
        trait_fns,
        tail,
    } = model.body.kind().module(model, layout);
    let module = format_ident!("{}", model.name);
    let ty = format_ident!("{}", model.type_name);
    let Loader {
        name: loader,
        docs: loader_docs,
        ty: loaded,
        init,
    } = loader;
    let loader = format_ident!("{}", loader);
    let name = &model.name;
    let precision = model.precision.name();
    let kernels = kernel_list(model);
    let BlobItems {
        module: blob_module,
        methods: blob_methods,
    } = blob_items(model, layout);
    let module_doc = format!(" Generated code and weights of the `{name}` model.");
    quote! {
        #[doc = #module_doc]
        #[allow(dead_code, clippy::all, clippy::pedantic, unused_qualifications)]
        pub mod #module {
            use ::dynq_runtime as rt;

            #consts
            /// Kernels the weights were packed for: the forward is compiled for these only (and scalar).
            const KERNELS: &[rt::KernelId] = #kernels;
            #quant
            #blob_module
            #weights
            #(#[doc = #loader_docs])*
            fn #loader() -> Result<&'static #loaded, rt::Error> {
                static CELL: rt::blob::LoadOnce<#loaded> = rt::blob::LoadOnce::new();
                CELL.get_or_try_init(|| {
                    let b = blob()?;
                    Ok(#init)
                })
            }

            #[doc = #summary]
            ///
            #type_docs
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
            pub struct #ty;

            impl #ty {
                #inherent_consts
                #blob_methods
                #api
            }

            impl #model_trait for #ty {
                const NAME: &'static str = #name;
                #trait_consts
                const PRECISION: &'static str = #precision;
                const BUILD_ID: &'static str = BLOB_ID;
                fn load(&self) -> Result<(), rt::Error> {
                    #loader().map(|_| ())
                }
                #trait_fns
            }

            #tail
        }
        pub use #module::#ty;
    }
}
