//! `dynq-build`: turns a TOML model description and its safetensors weights into a specialized
//! Rust forward function with INT8 weights and dynamically quantized activations.
//!
//! The pipeline, one module per stage:
//! [`spec`] (TOML) -> [`weights`] (safetensors) -> [`ir`] via [`presets`] -> [`quantize`] ->
//! [`pack`] -> [`blob`] + [`codegen`].
//!
//! Three front ends share it: the `dynq_model!` macro (crate `dynq-macros`, through
//! [`cache::expand_cached`]), build scripts through [`Config`], and the `dynq` command-line tool
//! (crate `dynq-cli`, which also holds `inspect`, `init`, `check` and `report`). This crate is
//! what the macro compiles: it has no command-line, terminal, plotting or tokenizer
//! dependencies, and does not depend on the runtime.
//!
//! # From build.rs
//!
//! ```no_run
//! // in build.rs's main:
//! dynq_build::Config::new()
//!     .compile("models/digits.toml")
//!     .unwrap_or_else(|e| panic!("{e}"));
//! ```
//! and in the crate: `include!(concat!(env!("OUT_DIR"), "/digits.rs"));`, which defines the
//! module `digits` and re-exports the model type `Digits`.
#![warn(missing_docs)]

pub mod blob;
pub mod cache;
pub mod codegen;
mod error;
pub mod hf_config;
pub mod ir;
pub mod pack;
pub mod presets;
pub mod progress;
pub mod quantize;
pub mod spec;
pub mod weights;

use std::path::{Path, PathBuf};

pub use codegen::Placement;
pub use error::{Error, Result};
pub use ir::Precision;

use codegen::LinearSections;
use ir::{LayerPrecision, Model};
use spec::{EmbeddingStorage, SpecFile};
use weights::Weights;

/// [`presets::expand`], reported as a [`progress`] step: reading and converting a large
/// checkpoint takes a moment.
///
/// `kernels` names the kernels whose packed weights the model carries (`"scalar"` always works).
pub fn load_model(
    spec: &SpecFile,
    weights: &Weights,
    precision: Precision,
    kernels: Vec<String>,
) -> Result<Model> {
    let _step = progress::Progress::spinner("loading weights");
    presets::expand(spec, weights, precision, kernels)
}

/// Options of one generation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Options {
    /// INT8 (default) or the f32 reference.
    pub precision: Precision,
    /// Overrides `model.name` (a snake_case identifier). Without it an f32 build is named
    /// `<name>_f32`, so both builds of one model can live side by side.
    pub name: Option<String>,
    /// Target architecture (`x86_64`, `aarch64`, ...) whose kernels get packed weights when the
    /// TOML has no `[target] kernels`; `None` means the host's.
    pub target_arch: Option<String>,
    /// Overrides the TOML's `[target] kernels`: kernel names as there ([`spec::KERNEL_NAMES`]),
    /// or `native`, the kernels the CPU of the machine that generates runs
    /// ([`native_kernels`]). The forward is compiled for these only (and scalar): fewer kernels
    /// build faster and make a smaller binary. `native` suits a binary run where it is built,
    /// and test suites; its generated code depends on the machine.
    pub kernels: Option<Vec<String>>,
    /// Overrides the TOML's `[target] weights`: the blob embedded in the binary, or in a file
    /// beside it, memory-mapped at first use ([`spec::WeightsStorage`]).
    pub weights: Option<spec::WeightsStorage>,
    /// Overrides the TOML's `[target] forward` (encoders): the model's own inlined forward, or
    /// dynq-runtime's shared one ([`spec::ForwardKind`]).
    pub forward: Option<spec::ForwardKind>,
    /// What an encoder runs when neither [`Options::forward`] nor the TOML says: inlined by
    /// default; `dynq build` picks the shared forward, since its standalone crates share one
    /// target directory where the runtime, and with it that forward, is already compiled.
    pub default_forward: spec::ForwardKind,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            precision: Precision::Int8,
            name: None,
            target_arch: None,
            kernels: None,
            weights: None,
            forward: None,
            default_forward: spec::ForwardKind::Inlined,
        }
    }
}

/// Which forward an encoder runs: [`Options::forward`], else the TOML's `[target] forward`, else
/// [`Options::default_forward`]; other models run their own. `shared` asked for a model that is
/// not an encoder is an error naming the key.
pub fn resolve_forward(
    spec: &SpecFile,
    options: &Options,
    model: &Model,
) -> Result<spec::ForwardKind> {
    let shared_ok = model.body.kind().shared_forward();
    let asked = options
        .forward
        .or_else(|| spec.spec.target.forward.as_ref().map(|f| *f.get_ref()));
    let forward = match asked {
        Some(f) => f,
        None if shared_ok => options.default_forward,
        None => spec::ForwardKind::Inlined,
    };
    if forward == spec::ForwardKind::Shared && !shared_ok {
        return Err(Error::Options(format!(
            "{}: forward: expected \"inlined\" for preset \"{}\", found \"shared\" (the \
             --forward flag or the macro's `forward` argument): the shared forward is for \
             encoders; MLPs and recurrent models compile in seconds anyway",
            spec.path.display(),
            spec.spec.model.preset.get_ref().name()
        )));
    }
    Ok(forward)
}

/// Where the generated code finds its weights: [`Options::weights`], else the TOML's
/// `[target] weights`, else embedded.
pub fn resolve_weights(spec: &SpecFile, options: &Options) -> spec::WeightsStorage {
    options
        .weights
        .or_else(|| spec.spec.target.weights.as_ref().map(|w| *w.get_ref()))
        .unwrap_or_default()
}

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The generated model's module name (the file stem of `code` and `blob`).
    pub name: String,
    /// The model type's name.
    pub type_name: String,
    /// Formatted Rust source.
    pub code: String,
    /// The weight blob.
    pub blob: blob::FinishedBlob,
    /// The tokenizer to write next to the blob, if the model has one.
    pub tokenizer: Option<String>,
    /// Where the generated code finds the blob: embedded, or `<name>.blob` beside the binary
    /// (which must then be shipped with it).
    pub weights: spec::WeightsStorage,
    /// Whether an encoder runs its own forward or dynq-runtime's shared one (which needs the
    /// runtime's `shared-forward` feature).
    pub forward: spec::ForwardKind,
    /// The IR, for summaries and reports.
    pub model: Model,
}

/// The kernels to pack and compile for: [`Options::kernels`], else the TOML's
/// `[target] kernels`, else every kernel of the architecture; scalar always.
///
/// ```
/// let spec = dynq_build::spec::SpecFile::load("../examples/digits/digits.toml".as_ref()).unwrap();
/// let options = dynq_build::Options { kernels: Some(vec!["avx2".into()]), ..Default::default() };
/// assert_eq!(dynq_build::resolve_kernels(&spec, &options).unwrap(), ["avx2", "scalar"]);
/// let options = dynq_build::Options { kernels: Some(vec!["sse9".into()]), ..Default::default() };
/// assert!(dynq_build::resolve_kernels(&spec, &options).is_err());
/// ```
pub fn resolve_kernels(spec: &SpecFile, options: &Options) -> Result<Vec<String>> {
    let mut v: Vec<String> = match (&options.kernels, &spec.spec.target.kernels) {
        (Some(k), _) => option_kernels(k, options.target_arch.as_deref())?,
        (None, Some(k)) => k.iter().map(|s| s.get_ref().clone()).collect(),
        (None, None) => arch_kernels(options.target_arch.as_deref()),
    };
    if !v.iter().any(|k| k == "scalar") {
        v.push("scalar".into());
    }
    Ok(v)
}

/// [`Options::kernels`], checked, with `native` expanded.
fn option_kernels(names: &[String], target_arch: Option<&str>) -> Result<Vec<String>> {
    let mut v: Vec<String> = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let expanded = if name == "native" {
            let host = std::env::consts::ARCH;
            if let Some(arch) = target_arch.filter(|&a| a != host) {
                return Err(Error::Options(format!(
                    "kernels: `native` means this machine's CPU ({host}), but the target is {arch}; \
                     name the kernels instead"
                )));
            }
            native_kernels()
        } else if spec::KERNEL_NAMES.contains(&name) {
            vec![name.to_string()]
        } else {
            return Err(Error::Options(format!(
                "kernels: unknown kernel {name:?}, expected `native` or one of {}",
                spec::KERNEL_NAMES.join(", ")
            )));
        };
        for k in expanded {
            if !v.contains(&k) {
                v.push(k);
            }
        }
    }
    if v.is_empty() {
        return Err(Error::Options(
            "kernels: expected at least one kernel or `native`, found none".into(),
        ));
    }
    Ok(v)
}

/// The kernels this machine's CPU runs, best first, scalar last: the `native` of
/// [`Options::kernels`]. (AMX also needs the operating system's permission, asked for at run
/// time; without it the model runs on the next kernel listed.)
pub fn native_kernels() -> Vec<String> {
    #[allow(unused_mut)] // Other architectures have only scalar.
    let mut v: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma");
        let avx512 = avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512vnni");
        // CPUID leaf 7, subleaf 0: EDX bit 24 is AMX-TILE, bit 25 AMX-INT8.
        let amx = avx512 && std::arch::x86_64::__cpuid(0).eax >= 7 && {
            let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
            edx & (1 << 24) != 0 && edx & (1 << 25) != 0
        };
        let avxvnni = avx2 && has!("avxvnni");
        for (name, on) in [
            ("amx", amx),
            ("avx512vnni", avx512),
            ("avxvnni", avxvnni),
            ("avx2", avx2),
        ] {
            if on {
                v.push(name);
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("i8mm") {
            v.push("neon_i8mm");
        }
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            v.push("neon_dot");
        }
    }
    v.push("scalar");
    v.into_iter().map(String::from).collect()
}

/// Every kernel of the architecture `target_arch` (the host's when `None`).
fn arch_kernels(target_arch: Option<&str>) -> Vec<String> {
    let arch = target_arch.unwrap_or(std::env::consts::ARCH);
    let list: &[&str] = match arch {
        "x86_64" => &["amx", "avx512vnni", "avxvnni", "avx2", "scalar"],
        "aarch64" => &["neon_i8mm", "neon_dot", "scalar"],
        _ => &["scalar"],
    };
    list.iter().map(|s| s.to_string()).collect()
}

/// Reads, checks, quantizes, packs and generates; writes nothing.
///
/// `placement` says how the generated code will reach the files [`Generated::write_files`]
/// writes (`<name>.blob`, and `<name>.tokenizer.json` when the model has a tokenizer).
pub fn generate(spec_path: &Path, options: &Options, placement: Placement) -> Result<Generated> {
    let spec = SpecFile::load(spec_path)?;
    let weights = Weights::open(&spec.weights_path())?;
    generate_from(&spec, &weights, options, placement)
}

/// The name a generation will use: the override, or `model.name` (+ `_f32` for f32).
pub fn output_name(spec: &SpecFile, options: &Options) -> Result<String> {
    match &options.name {
        Some(n) => {
            let ok = n.starts_with(|c: char| c.is_ascii_lowercase())
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if ok {
                Ok(n.clone())
            } else {
                Err(Error::Options(format!(
                    "name: expected a snake_case Rust identifier such as `digits_f32`, found {n:?}"
                )))
            }
        }
        None => {
            let base = spec.spec.model.name.get_ref();
            Ok(match options.precision {
                Precision::Int8 => base.clone(),
                Precision::F32 => format!("{base}_f32"),
            })
        }
    }
}

/// Adds an f32 tensor to the blob, as f16 when `half` (lossless when the source was f16).
fn store(writer: &mut blob::BlobWriter, t: &weights::Tensor, half: bool) -> (usize, bool) {
    if half {
        (writer.f16s(&t.name, &t.shape, &t.data), true)
    } else {
        (writer.f32s(&t.name, &t.shape, &t.data), false)
    }
}

/// [`generate`] over an already loaded description and weights.
pub fn generate_from(
    spec: &SpecFile,
    weights: &Weights,
    options: &Options,
    placement: Placement,
) -> Result<Generated> {
    let kernels = resolve_kernels(spec, options)?;
    let mut model = load_model(spec, weights, options.precision, kernels)?;
    model.name = output_name(spec, options)?;
    model.type_name = ir::camel_case(&model.name);
    let layouts = pack::Layout::for_kernels(&model.kernels);

    let mut writer = blob::BlobWriter::default();
    // Section indices; offsets are known only once the writer finishes.
    let mut linears = Vec::new();
    let bar = progress::Progress::bar(model.linears().len(), "quantizing");
    for l in model.linears() {
        bar.inc();
        let n = l.out_features;
        let bias = l.bias.as_ref().map(|b| writer.f32s(&b.name, &[n], &b.data));
        let pending = match l.precision {
            LayerPrecision::Int8(granularity) => {
                let q = quantize::quantize_linear(l, granularity, weights.path())?;
                let name = &l.weight.name;
                let packed: Vec<usize> = layouts
                    .iter()
                    .map(|&layout| {
                        writer.i8s(
                            &format!("{name}:{}", layout.name()),
                            &[n, l.in_features],
                            &pack::pack(&q, layout),
                        )
                    })
                    .collect();
                let scales = writer.f32s(&format!("{name}:scales"), &[n], &q.scales);
                let col_sums = writer.i32s(&format!("{name}:col_sums"), &[n], &q.col_sums);
                PendingLinear::Int8 {
                    weight: packed[0],
                    scales,
                    col_sums,
                    bias,
                    stats: q.stats,
                }
            }
            LayerPrecision::F32 => {
                let (weight, f16) = store(
                    &mut writer,
                    &l.weight,
                    l.weight.source == weights::SourceDtype::F16,
                );
                PendingLinear::F32 { weight, f16, bias }
            }
        };
        linears.push((l.name.clone(), pending));
    }
    // Other tensors (norms, embeddings), by name.
    let mut tensors = Vec::new();
    let mut word_table = None;
    let kind = model.body.kind();
    if let Some((table, storage)) = kind.table() {
        word_table = Some(store_table(&mut writer, table, storage));
    }
    for t in kind.small_tensors() {
        tensors.push((t.name.clone(), store(&mut writer, t, false)));
    }
    drop(bar);
    let finished = writer.finish();
    let s = &finished.sections;
    let linears = linears
        .into_iter()
        .map(|(name, p)| {
            let sections = match p {
                PendingLinear::Int8 {
                    weight,
                    scales,
                    col_sums,
                    bias,
                    stats,
                } => LinearSections::Int8 {
                    weight: s[weight],
                    scales: s[scales],
                    col_sums: s[col_sums],
                    bias: bias.map(|b| s[b]),
                    stats,
                },
                PendingLinear::F32 { weight, f16, bias } => LinearSections::F32 {
                    weight: s[weight],
                    f16,
                    bias: bias.map(|b| s[b]),
                },
            };
            (name, sections)
        })
        .collect();
    let tensors = tensors
        .into_iter()
        .map(|(name, (i, f16))| (name, codegen::Stored { section: s[i], f16 }))
        .collect();
    let word_table = word_table.map(|t| match t {
        PendingTable::F32(i) => codegen::TableSections::F32(s[i]),
        PendingTable::F16(i) => codegen::TableSections::F16(s[i]),
        PendingTable::Int8 {
            rows,
            scales,
            stats,
        } => codegen::TableSections::Int8 {
            rows: s[rows],
            scales: s[scales],
            stats,
        },
    });
    let layout = codegen::Layout {
        placement,
        weights: resolve_weights(spec, options),
        forward: resolve_forward(spec, options, &model)?,
        blob_id: finished.id.clone(),
        blob_len: finished.bytes.len(),
        linears,
        tensors,
        word_table,
    };
    let code = codegen::format_file(codegen::generate(&model, &layout), &model.name)?;
    let (weights_storage, forward) = (layout.weights, layout.forward);
    let tokenizer = model.body.kind().tokenizer().map(str::to_string);
    Ok(Generated {
        name: model.name.clone(),
        type_name: model.type_name.clone(),
        code,
        blob: finished,
        tokenizer,
        weights: weights_storage,
        forward,
        model,
    })
}

/// Adds an embedding table `[rows][width]` to the blob as `storage` says. The word table is the
/// bulk of a small BERT; `F32` keeps an f16 checkpoint's table in f16 (lossless).
fn store_table(
    writer: &mut blob::BlobWriter,
    t: &weights::Tensor,
    storage: EmbeddingStorage,
) -> PendingTable {
    let (rows, width) = (t.shape[0], t.shape[1]);
    match storage {
        EmbeddingStorage::Int8 => {
            let q = quantize::quantize_table(&t.data, rows, width);
            PendingTable::Int8 {
                rows: writer.i8s(&format!("{}:rows", t.name), &t.shape, &q.q),
                scales: writer.f32s(&format!("{}:scales", t.name), &[rows], &q.scales),
                stats: q.stats,
            }
        }
        EmbeddingStorage::F16 => PendingTable::F16(writer.f16s(&t.name, &t.shape, &t.data)),
        EmbeddingStorage::F32 => match store(writer, t, t.source == weights::SourceDtype::F16) {
            (i, true) => PendingTable::F16(i),
            (i, false) => PendingTable::F32(i),
        },
    }
}

/// Section indices of a table; offsets are known only once the writer finishes.
enum PendingTable {
    F32(usize),
    F16(usize),
    Int8 {
        rows: usize,
        scales: usize,
        stats: quantize::ErrorStats,
    },
}

enum PendingLinear {
    Int8 {
        weight: usize,
        scales: usize,
        col_sums: usize,
        bias: Option<usize>,
        stats: quantize::ErrorStats,
    },
    F32 {
        weight: usize,
        f16: bool,
        bias: Option<usize>,
    },
}

impl Generated {
    /// Writes `<name>.blob`, `<name>.tokenizer.json` (if any) and then `<name>.rs` into `dir`,
    /// each only if its contents changed; returns the path of the `.rs` file.
    pub fn write_files(&self, dir: &Path) -> Result<PathBuf> {
        self.write_files_with_blob_in(dir, dir)
    }

    /// [`Generated::write_files`] with the blob in `blob_dir` instead: a weights file
    /// (`[target] weights = "file"`) goes where the executable will look for it, not beside
    /// the source.
    pub fn write_files_with_blob_in(&self, dir: &Path, blob_dir: &Path) -> Result<PathBuf> {
        for d in [dir, blob_dir] {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, "cannot create directory", e))?;
        }
        write_if_changed(&self.blob_path(blob_dir), &self.blob.bytes)?;
        if let Some(t) = &self.tokenizer {
            write_if_changed(
                &dir.join(format!("{}.tokenizer.json", self.name)),
                t.as_bytes(),
            )?;
        }
        let rs = dir.join(format!("{}.rs", self.name));
        write_if_changed(&rs, self.code.as_bytes())?;
        Ok(rs)
    }

    /// Where [`Generated::write_files`] puts the blob in `dir`: `<dir>/<name>.blob`.
    pub fn blob_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.blob", self.name))
    }
}

/// Writes `contents` to `path` unless it already holds exactly that (prost's habit: unchanged
/// files keep their mtime, so nothing downstream rebuilds). Writes through a temporary file and
/// a rename, so a concurrent reader never sees half a file.
pub fn write_if_changed(path: &Path, contents: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    std::fs::write(&tmp, contents).map_err(|e| Error::io(&tmp, "cannot write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "cannot write", e))
}

/// Build-script front end, in the spirit of `prost_build::Config`.
///
/// ```no_run
/// // build.rs
/// dynq_build::Config::new()
///     .precision(dynq_build::Precision::F32)
///     .compile("models/digits.toml")
///     .unwrap_or_else(|e| panic!("{e}"));
/// // lib.rs: include!(concat!(env!("OUT_DIR"), "/digits_f32.rs"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Config {
    options: Options,
    out_dir: Option<PathBuf>,
}

impl Config {
    /// Default options: INT8, the TOML's name, output in `OUT_DIR`.
    pub fn new() -> Self {
        Config::default()
    }

    /// Chooses INT8 or the f32 reference.
    pub fn precision(&mut self, precision: Precision) -> &mut Self {
        self.options.precision = precision;
        self
    }

    /// Overrides the generated module name (and so the file names and the type name).
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.options.name = Some(name.into());
        self
    }

    /// Writes into `dir` instead of `OUT_DIR`; the generated code then includes the blob by a
    /// path relative to itself.
    pub fn out_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Generates `<name>.rs` and `<name>.blob` for the model described by `toml`; returns the
    /// path of the `.rs` file. In a build script it also prints the `rerun-if-changed` lines
    /// and targets `CARGO_CFG_TARGET_ARCH`, not the host.
    pub fn compile(&self, toml: impl AsRef<Path>) -> Result<PathBuf> {
        let toml = toml.as_ref();
        let in_build_script = std::env::var_os("OUT_DIR").is_some() && self.out_dir.is_none();
        let dir = match (&self.out_dir, std::env::var_os("OUT_DIR")) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => PathBuf::from(d),
            (None, None) => return Err(Error::Options(
                "OUT_DIR is not set: call Config::compile from build.rs, or set Config::out_dir"
                    .into(),
            )),
        };
        let spec = SpecFile::load(toml)?;
        let weights_path = spec.weights_path();
        if in_build_script {
            println!("cargo:rerun-if-changed={}", toml.display());
            println!("cargo:rerun-if-changed={}", weights_path.display());
        }
        let weights = Weights::open(&weights_path)?;
        let mut options = self.options.clone();
        if options.target_arch.is_none() {
            options.target_arch = std::env::var("CARGO_CFG_TARGET_ARCH").ok();
        }
        let placement = if in_build_script {
            Placement::OutDir
        } else {
            Placement::Relative
        };
        let g = generate_from(&spec, &weights, &options, placement)?;
        g.write_files(&dir)
    }
}
