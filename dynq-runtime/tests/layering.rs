//! The runtime's modules stay layered bottom up, with no cycles: types (with `error` and
//! `workspace`) -> `trace` (the profile's hooks) and `quant` -> `math` -> `kernels` -> `threads`
//! -> `ops` -> `models` (lib.rs lists them in that order). Each layer's source may name only the
//! modules below it; a `crate::...` that reaches up fails here with the file, the line and the
//! module it reached. The modules on top (`profile`, `blob`, `serve`, `http`, `text`) may name
//! anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layered modules, bottom tier first: a module's source may name the modules of the tiers
/// below its own (and itself), nothing else of the crate.
const TIERS: &[&[&str]] = &[
    &["types", "error", "workspace"],
    &["trace", "quant"],
    &["math"],
    &["kernels"],
    &["threads"],
    &["ops"],
    &["models"],
];

/// Each layered module and the modules it may name: those of the tiers below its own.
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    let mut below = Vec::new();
    let mut allowed = BTreeMap::new();
    for tier in TIERS {
        for module in *tier {
            allowed.insert(*module, below.clone());
        }
        below.extend_from_slice(tier);
    }
    allowed
}

/// Items the crate root re-exports, by the module that defines them: `crate::Error` is a use
/// of `error`. (Items defined in lib.rs itself are on top of every layer: a layer naming one
/// is reported as reaching `lib`.)
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("Error", "error"),
    ("Activation", "types"),
    ("F32Linear", "types"),
    ("KernelId", "types"),
    ("Linear", "types"),
    ("QLinear", "types"),
    ("Granularity", "quant"),
    ("Scheme", "quant"),
    ("Job", "kernels"),
    ("Kernel", "kernels"),
    ("selected_kernel", "kernels"),
    ("dispatch", "threads"),
    ("set_threads", "threads"),
    ("BertInput", "ops"),
    ("BertOutput", "ops"),
    ("RnnInput", "ops"),
    ("RnnOutput", "ops"),
    ("RnnResult", "ops"),
    ("split_mut", "workspace"),
    ("with_workspace", "workspace"),
    ("Buffers", "workspace"),
    ("Workspace", "workspace"),
];

/// The module a file belongs to: `src/ops/bert/tiles.rs` -> `ops`, `src/math.rs` -> `math`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("a dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<name>` on the line, comments and doc comments left out (intra-doc links
/// are not dependencies).
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        // `$crate::` in a macro is the same crate; anything glued before `crate` is not.
        let before = &rest[..at];
        let glued = before
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if glued {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c}`: the first segment of each item.
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
    }
    found
}

#[test]
fn every_layer_names_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = allowed();
    let root: BTreeMap<&str, &str> = ROOT_ITEMS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut checked = 0;
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(may) = allowed.get(module.as_str()) else {
            continue; // lib.rs and the modules on top (profile, blob, serve, http, text)
        };
        checked += 1;
        let text = std::fs::read_to_string(file).expect("readable source");
        for (i, line) in text.lines().enumerate() {
            for name in crate_paths(line) {
                let target = if allowed.contains_key(name.as_str())
                    || ["profile", "blob", "serve", "http", "text"].contains(&name.as_str())
                {
                    name.clone()
                } else {
                    root.get(name.as_str()).map_or("lib", |m| m).to_string()
                };
                if target != module && !may.contains(&target.as_str()) {
                    violations.push(format!(
                        "{}:{}: module `{module}` names `crate::{name}` (module `{target}`), \
                         which is not below it; it may name {may:?}",
                        file.strip_prefix(&src).unwrap_or(file).display(),
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(checked >= 20, "found only {checked} layered source files");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_scanner_sees_uses_and_skips_comments() {
    assert_eq!(crate_paths("use crate::ops::{a, b};"), ["ops"]);
    assert_eq!(
        crate_paths("use crate::{BertInput, Error, kernels::Kernel};"),
        ["BertInput", "Error", "kernels"]
    );
    assert_eq!(
        crate_paths("    let t = crate::threads::count(); // crate::models"),
        ["threads"]
    );
    assert!(crate_paths("/// see [`crate::models::encoder`]").is_empty());
    assert_eq!(crate_paths("$crate::blob::Aligned"), ["blob"]);
    assert!(crate_paths("dynq_crate::x").is_empty());
}
