//! `dynq_model!`: generates a model's forward function at compile time.
//!
//! A thin shell over `dynq-build`: it parses its arguments, asks `dynq_build::cache` for the
//! generated source (re-quantizing only when the TOML, the weights or the options change), and
//! turns any error into `compile_error!` at the call's span.
//!
//! ```ignore
//! dynq_macros::dynq_model!("models/digits.toml");                      // INT8, type `Digits`
//! dynq_macros::dynq_model!("models/digits.toml", precision = "f32");   // f32, type `DigitsF32`
//! dynq_macros::dynq_model!("models/digits.toml", name = "digits_v2");  // type `DigitsV2`
//! ```
//!
//! The path is relative to the calling crate's `CARGO_MANIFEST_DIR`. The crate must depend on
//! `dynq-runtime`, which the generated code calls.

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
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let path: LitStr = input.parse()?;
        let (mut precision, mut name) = (None, None);
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
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown argument `{other}`, expected `precision` or `name`"),
                    ))
                }
            }
        }
        Ok(Args {
            path,
            precision,
            name,
        })
    }
}

/// Generates a model from a TOML description: `dynq_model!("path/model.toml")`.
///
/// Options: `precision = "int8" | "f32"` and `name = "snake_case_name"`. The expansion is a
/// module named after the model plus a `pub use` of its type, for example `pub mod digits` and
/// `Digits` with `forward(&self, input: &[f32], rows: usize, out: &mut [f32])`.
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
