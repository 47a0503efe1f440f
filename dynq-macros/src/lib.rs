//! `dynq_model!`: generates a model's forward function at compile time.
//!
//! A thin shell over `dynq-build`: it parses its arguments, asks `dynq_build::cache` for the
//! generated source (re-quantizing only when the TOML, the weights or the options change), and
//! turns any error into `compile_error!` at the call's span. See [`dynq_model!`] for the API it
//! generates, preset by preset.
//!
//! The calling crate must depend on `dynq-runtime`, which the generated code calls (and
//! nothing else). Debug builds of its kernels run about 60x slower than release; set
//! `[profile.dev.package.dynq-runtime] opt-level = 3` (and `[profile.dev.build-override]
//! opt-level = 3` so that the build-time quantization is fast too).

use std::path::PathBuf;

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitStr, Token};

struct Args {
    path: LitStr,
    precision: Option<LitStr>,
    name: Option<LitStr>,
    kernels: Option<LitStr>,
    weights: Option<LitStr>,
    forward: Option<LitStr>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let path: LitStr = input.parse()?;
        let (mut precision, mut name, mut kernels, mut weights, mut forward) =
            (None, None, None, None, None);
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: LitStr = input.parse()?;
            match key.to_string().as_str() {
                "precision" => precision = Some(value),
                "name" => name = Some(value),
                "kernels" => kernels = Some(value),
                "weights" => weights = Some(value),
                "forward" => forward = Some(value),
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown argument `{other}`, expected `precision`, `name`, `kernels`, `weights` or `forward`"
                        ),
                    ))
                }
            }
        }
        Ok(Args {
            path,
            precision,
            name,
            kernels,
            weights,
            forward,
        })
    }
}

/// Generates a model from a TOML description: `dynq_model!("path/model.toml")`.
///
/// The path is relative to the calling crate's `Cargo.toml`. Options: `precision = "int8" |
/// "f32"` (default `int8`; `f32` is the unquantized reference, its type named `...F32`) and
/// `name = "snake_case_name"` (to generate one description twice) and `kernels = "native"` or
/// a comma-separated list such as `"avx2, scalar"` (overrides the description's
/// `[target] kernels`; the forward is compiled for these only, and scalar: `native`, the
/// kernels of the CPU that compiles, suits a binary built where it runs and test suites), and
/// `weights = "embedded" | "file"` (overrides `[target] weights`; see below) and, for encoders,
/// `forward = "inlined" | "shared"` (overrides `[target] forward`: `shared` calls
/// dynq-runtime's precompiled forward, which needs its `shared-forward` feature, so that a
/// base-size model builds in seconds). The expansion is a module
/// named after the model (constants such as `OUTPUT_SIZE`, `MAX_SEQ_LEN`, `LABELS`,
/// `TOKENIZER_JSON`) and a `pub use` of its unit-struct type. Errors in the description or the
/// weights are `compile_error!`s at the call. Every call below is compiled and run as a doc
/// test on the tiny models of this crate's `doc-models/`.
///
/// # Encoders (`preset = "encoder"`): text in, embedding or label out
///
/// With `tokenizer = "tokenizer.json"` in the description (as `dynq init` writes it) the type
/// takes text. Tokenization adds the special tokens and never pads (even when the
/// tokenizer.json says to); [`Truncate`](https://docs.rs/dynq-runtime/latest/dynq_runtime/text/enum.Truncate.html)
/// says what happens to a text longer than the model's `MAX_SEQ_LEN`.
///
/// ```
/// use dynq_runtime::text::Truncate;
/// dynq_macros::dynq_model!("doc-models/embedder.toml"); // output = "mean_pooled"
///
/// # fn main() -> Result<(), dynq_runtime::Error> {
/// let v: [f32; Embedder::OUTPUT_SIZE] = Embedder.embed_text("Rust is fast.", Truncate::AtMax)?;
/// let all = Embedder.embed_texts(&["one text", "another"], Truncate::Refuse)?;
/// assert_eq!((v.len(), all.len()), (32, 2));
/// // Too long for the model: refused, or cut as asked.
/// let long = "word ".repeat(40);
/// assert!(Embedder.embed_text(&long, Truncate::Refuse).is_err());
/// assert!(Embedder.embed_text(&long, Truncate::At(8)).is_ok());
///
/// // Token ids from your own tokenizer: unpadded, or padded with their mask.
/// let ids = [2, 27, 15, 28, 5, 3]; // [CLS] rust is fast . [SEP]
/// assert_eq!(Embedder.embed(&ids)?, v);
/// let (padded, mask) = ([2, 27, 15, 28, 5, 3, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0]);
/// let masked = Embedder.embed_masked(&padded, &mask)?;
/// // Padding ids without their mask would be read as text: an error that says so.
/// let e = Embedder.embed(&padded).unwrap_err();
/// assert!(e.to_string().contains("attention_mask"));
/// # let _ = masked;
/// # Ok(())
/// # }
/// ```
///
/// A classifier (`output = "logits"`, labels from the config's `id2label`):
///
/// ```
/// use dynq_runtime::text::Truncate;
/// dynq_macros::dynq_model!("doc-models/classifier.toml");
///
/// # fn main() -> Result<(), dynq_runtime::Error> {
/// let (logits, label) = Classifier.classify_text("what a great day!", Truncate::AtMax)?;
/// assert_eq!(logits.len(), classifier::LABELS.len());
/// assert!(classifier::LABELS.contains(&label));
/// let batch = Classifier.classify_texts(&["good", "bad"], Truncate::AtMax)?;
/// assert_eq!(batch.len(), 2);
/// let (_, by_ids) = Classifier.classify(&[2, 27, 3])?;
/// # let _ = by_ids;
/// # Ok(())
/// # }
/// ```
///
/// `output = "last_hidden_state"` gives `encode`, `encode_masked` and `encode_text` (a `Vec` of
/// `len * HIDDEN_SIZE` values). All encoders have `forward(&BertInput, &mut out)` for full
/// control (ids, mask, token types) and `forward_with` with your own `Workspace`.
///
/// # Dense models (`preset = "mlp"`)
///
/// ```
/// dynq_macros::dynq_model!("doc-models/digits.toml");
///
/// # fn main() -> Result<(), dynq_runtime::Error> {
/// let row = [0.5f32; Digits::INPUT_SIZE];
/// let logits: [f32; Digits::OUTPUT_SIZE] = Digits.forward_one(&row)?;
/// // A batch: rows x INPUT_SIZE in, rows x OUTPUT_SIZE out.
/// let batch = [0.5f32; 3 * Digits::INPUT_SIZE];
/// let mut out = [0.0f32; 3 * Digits::OUTPUT_SIZE];
/// Digits.forward(&batch, 3, &mut out)?;
/// assert_eq!(&out[..Digits::OUTPUT_SIZE], &logits);
/// # Ok(())
/// # }
/// ```
///
/// # Recurrent models (`preset = "lstm"` or `"gru"`)
///
/// ```
/// dynq_macros::dynq_model!("doc-models/tagger.toml"); // a GRU, 10 inputs, hidden 12
///
/// # fn main() -> Result<(), dynq_runtime::Error> {
/// let steps = [0.1f32; 5 * 10]; // one sequence of 5 steps
/// let r = Tagger.run(&steps)?;  // PyTorch's unbatched (output, h_n) from zero states
/// assert_eq!((r.output.len(), r.h_n.len()), (5 * Tagger::OUTPUT_SIZE, Tagger::H_N_LEN));
/// // Batches and initial states: Tagger.forward(&RnnInput { .. }, RnnOutput { .. }).
/// # Ok(())
/// # }
/// ```
///
/// # Weights in a file (`weights = "file"`)
///
/// The blob is then not compiled into the binary: `<name>.blob` is memory-mapped at first use
/// and checked against the build (length, id and a SHA-256 of its content), so a base-size model
/// builds in seconds and the binary stays small. Ship the file next to the executable, or set
/// `DYNQ_WEIGHTS_DIR`; `cargo run` and `cargo test` find it where the build wrote it.
///
/// ```
/// dynq_macros::dynq_model!("doc-models/digits.toml", name = "digits_file", weights = "file");
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// assert_eq!(DigitsFile::WEIGHTS_FILE, Some("digits_file.blob"));
/// // A weights file of another build is refused with its path, never run.
/// let stale = std::env::temp_dir().join("stale_digits.blob");
/// std::fs::write(&stale, vec![0u8; 64])?;
/// let e = DigitsFile::load_weights(&stale).unwrap_err();
/// assert!(e.to_string().contains("stale_digits.blob"));
/// // Without load_weights, the file is found where the build wrote it.
/// let logits = DigitsFile.forward_one(&[0.5; 24])?;
/// # let _ = logits;
/// # Ok(())
/// # }
/// ```
///
/// Threads: every forward runs on all cores by default (`DYNQ_THREADS` or
/// `dynq_runtime::set_threads` to change), with the same bits at any count.
#[proc_macro]
pub fn dynq_model(input: TokenStream) -> TokenStream {
    let args = match syn::parse::<Args>(input) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    let span = args.path.span();
    match expand(&args) {
        Ok(ts) => ts.into(),
        Err(message) => {
            let stub = stub_for(&args);
            quote::quote_spanned!(span=> ::core::compile_error!(#message); #stub).into()
        }
    }
}

fn expand(args: &Args) -> Result<proc_macro2::TokenStream, String> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok_or("CARGO_MANIFEST_DIR is not set: dynq_model! must be compiled by cargo")?;
    let path = manifest_dir.join(args.path.value());
    let mut options = dynq_build::Options::default();
    if let Some(p) = &args.precision {
        options.precision = dynq_build::Precision::from_name(&p.value()).ok_or_else(|| {
            format!(
                "precision: expected \"int8\" or \"f32\", found {:?}",
                p.value()
            )
        })?;
    }
    options.name = args.name.as_ref().map(LitStr::value);
    options.kernels = args
        .kernels
        .as_ref()
        .map(|k| k.value().split(',').map(String::from).collect());
    if let Some(w) = &args.weights {
        options.weights = Some(
            dynq_build::spec::WeightsStorage::parse(&w.value()).ok_or_else(|| {
                format!(
                    "weights: expected \"embedded\" or \"file\", found {:?}",
                    w.value()
                )
            })?,
        );
    }
    if let Some(f) = &args.forward {
        options.forward = Some(dynq_build::spec::ForwardKind::parse(&f.value()).ok_or_else(
            || {
                format!(
                    "forward: expected \"inlined\" or \"shared\", found {:?}",
                    f.value()
                )
            },
        )?);
    }
    let root = dynq_build::cache::cache_root(&manifest_dir);
    // Paths in messages are shown as the user wrote them: relative to the crate.
    let prefix = format!("{}{}", manifest_dir.display(), std::path::MAIN_SEPARATOR);
    let exp = dynq_build::cache::expand_cached(&path, &options, &root)
        .map_err(|e| e.to_string().replace(&prefix, ""))?;
    let code: proc_macro2::TokenStream = exp
        .code
        .parse()
        .map_err(|e| format!("internal error: generated code does not tokenize: {e}"))?;
    // rustc tracks files read by include_bytes!, so editing the TOML or replacing the weights
    // re-runs this macro on the next build.
    let tracked = exp.tracked.iter().map(|p| {
        let p = p.display().to_string();
        quote!(
            const _: &[u8] = include_bytes!(#p);
        )
    });
    Ok(quote!(#(#tracked)* #code))
}

/// A stand-in type so one mistake does not cascade into "cannot find type" errors.
fn stub_for(args: &Args) -> proc_macro2::TokenStream {
    let guess = args.name.as_ref().map(LitStr::value).or_else(|| {
        let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
        let text = std::fs::read_to_string(dir.join(args.path.value())).ok()?;
        let value: toml::Value = text.parse().ok()?;
        let name = value.get("model")?.get("name")?.as_str()?.to_string();
        Some(
            match args.precision.as_ref().map(LitStr::value).as_deref() {
                Some("f32") => format!("{name}_f32"),
                _ => name,
            },
        )
    });
    let Some(name) = guess.filter(|n| syn::parse_str::<Ident>(n).is_ok()) else {
        return quote!();
    };
    let ty = format_ident!(
        "{}",
        dynq_build::ir::camel_case(&name),
        span = Span::call_site()
    );
    quote! {
        #[allow(dead_code)]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct #ty;
        #[allow(dead_code)]
        impl #ty {
            pub fn forward(&self, _: &[f32], _: usize, _: &mut [f32]) -> ::core::result::Result<(), ::dynq_runtime::Error> {
                ::core::unreachable!()
            }
        }
    }
}
