//! `dynq init`: a working model description for a Hugging Face encoder checkpoint (any family
//! in [`dynq_build::presets::family::FAMILIES`]), from its `config.json` and `model.safetensors`.

use std::path::{Component, Path, PathBuf};

use dynq_build::hf_config::EncoderConfig;
use dynq_build::ir::Precision;
use dynq_build::presets::family::{self, Family, PositionKind};
use dynq_build::spec::{BertOutputSpec, SpecFile};
use dynq_build::weights::Weights;
use dynq_build::{Error, Result};

/// A description written by [`describe`], with what it detected.
#[derive(Debug, Clone)]
pub struct Described {
    /// The TOML text; it passes `dynq check` when saved at the path it was made for.
    pub toml: String,
    /// `model.name`.
    pub name: String,
    /// `encoder.family`.
    pub family: &'static str,
    /// `encoder.prefix`: `""` or the family's (`"bert."`, `"roberta."`, ...).
    pub prefix: String,
    /// `encoder.output`: `logits` with a classification head and labels, else `mean_pooled`.
    pub output: BertOutputSpec,
    /// The `tokenizer.json` found next to the config, if any.
    pub tokenizer: Option<PathBuf>,
}

/// The family of a checkpoint: its config's `model_type`, else its `architectures`.
fn detect_family(config_path: &Path) -> Result<&'static Family> {
    let (model_type, architectures) = dynq_build::hf_config::model_type(config_path)?;
    let unsupported = |what: String| Error::Weights {
        file: config_path.to_path_buf(),
        message: format!(
            "{what} is not a family dynq compiles; supported model types: {}",
            family::model_types()
        ),
    };
    match model_type {
        Some(t) => {
            family::by_model_type(&t).ok_or_else(|| unsupported(format!("key `model_type`: {t:?}")))
        }
        None => {
            let by_arch = architectures.iter().find_map(|a| {
                family::FAMILIES.iter().find(|f| {
                    let stem = a.split("For").next().unwrap_or(a).trim_end_matches("Model");
                    stem.eq_ignore_ascii_case(&f.display.replace('-', ""))
                })
            });
            by_arch.ok_or_else(|| {
                unsupported(format!(
                    "a config without `model_type` (architectures {architectures:?})"
                ))
            })
        }
    }
}

/// Writes the description of an encoder checkpoint to be saved at `toml_path` (paths in it
/// are relative to that file's directory, which must exist), or, with `None`, to be printed
/// (paths in it absolute, so that it works wherever it is saved), and checks it as
/// `dynq check` would.
///
/// Detects the family from the config's `model_type` (or `architectures`), the tensor prefix
/// (the family's, such as `bert.` or `roberta.`, for `*For*` checkpoints; none for base models
/// and sentence-transformers), the output (`logits` when the weights have the family's
/// classification head and the config names its labels in `id2label`, else `mean_pooled`,
/// L2-normalized when a sentence-transformers `modules.json` says so), `max_seq_len` from
/// `sentence_bert_config.json`, and a `tokenizer.json` next to the config. `dims` truncates
/// pooled embeddings (Matryoshka, `[encoder] dims`).
///
/// ```no_run
/// use std::path::Path;
/// let d = dynq_cli::init::describe(
///     Path::new("models/minilm/config.json"),
///     Path::new("models/minilm/model.safetensors"),
///     Some(Path::new("models/minilm/minilm.toml")),
///     None,
///     None,
/// ).unwrap();
/// assert_eq!((d.family, d.prefix.as_str()), ("bert", ""));
/// ```
pub fn describe(
    config_path: &Path,
    weights_path: &Path,
    toml_path: Option<&Path>,
    name: Option<&str>,
    dims: Option<usize>,
) -> Result<Described> {
    let f = detect_family(config_path)?;
    let config = EncoderConfig::load(config_path, f)?;
    let weights = Weights::open(weights_path)?;
    let word = f.tensors.word;
    let Some(prefix) = [f.prefix, ""]
        .into_iter()
        .find(|p| weights.contains(&format!("{p}{word}")))
    else {
        let names = weights.names();
        return Err(Error::Weights {
            file: weights_path.to_path_buf(),
            message: format!(
                "not a {} checkpoint: expected `{word}` or `{}{word}`, found {} tensors: {}{}",
                f.display,
                f.prefix,
                names.len(),
                names.iter().take(6).cloned().collect::<Vec<_>>().join(", "),
                if names.len() > 6 { ", ..." } else { "" }
            ),
        });
    };
    let config_dir = config_path.parent().unwrap_or(Path::new(""));
    let has_head = weights.contains(&format!("{}.weight", f.head.out))
        && weights.contains(&format!(
            "{}.weight",
            f.head.dense.replace("{prefix}", prefix)
        ));
    let (output, output_note) = match (has_head, config.id2label.is_empty()) {
        (true, false) => (
            BertOutputSpec::Logits,
            format!("a classifier and {} labels", config.id2label.len()),
        ),
        (true, true) => (
            BertOutputSpec::MeanPooled,
            "a classifier but no id2label in the config".into(),
        ),
        (false, _) => (BertOutputSpec::MeanPooled, "no classifier head".into()),
    };
    let read = |file: &str| std::fs::read_to_string(config_dir.join(file)).ok();
    let (output, output_note) = match (output, pooling_mode(config_dir)?) {
        (BertOutputSpec::MeanPooled, Some((mode, file))) => (
            mode,
            format!("{output_note}; {file} pools by {}", mode.name()),
        ),
        (o, _) => (o, output_note),
    };
    let normalize = matches!(output, BertOutputSpec::MeanPooled | BertOutputSpec::Cls)
        && read("modules.json").is_some_and(|m| m.contains("models.Normalize"));
    let reach = match f.positions {
        PositionKind::Absolute | PositionKind::Rotary => config.max_position_embeddings,
        PositionKind::AfterPadding => config
            .max_position_embeddings
            .saturating_sub(config.pad_token_id.unwrap_or(0) as usize + 1),
    };
    let max_seq_len = read("sentence_bert_config.json")
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["max_seq_length"].as_u64())
        .map(|n| n as usize)
        .filter(|&n| n > 0 && n <= reach);
    let tokenizer = Some(config_dir.join("tokenizer.json")).filter(|p| p.is_file());

    // Printed (no file): absolute paths, and a check as if saved in the current directory.
    let printed = toml_path.is_none();
    let toml_path = toml_path.unwrap_or(Path::new("model.toml"));
    let toml_dir = match toml_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let rel = |p: &Path| -> Result<String> {
        let target = p
            .canonicalize()
            .map_err(|e| Error::io(p, "cannot resolve", e))?;
        if printed {
            return Ok(quoted(&target.to_string_lossy()));
        }
        let base = toml_dir
            .canonicalize()
            .map_err(|e| Error::io(&toml_dir, "cannot open the output directory", e))?;
        Ok(quoted(&relative(&base, &target)))
    };
    let name = match name {
        Some(n) => n.to_string(),
        None => derive_name(toml_path, config_dir),
    };
    let origin = |p: &Path| {
        p.file_name()
            .map_or(String::new(), |f| f.to_string_lossy().into_owned())
    };
    let paths_note = if printed {
        "# Paths are absolute (`dynq init -o FILE` writes them relative to FILE).\n"
    } else {
        ""
    };
    let mut toml = format!(
        "# Written by `dynq init` from {} and {}.\n{paths_note}[model]\nname = {}\npreset = \"encoder\"\nweights = {}\nconfig = {}\n\n[encoder]\n",
        origin(config_path),
        origin(weights_path),
        quoted(&name),
        rel(weights_path)?,
        rel(config_path)?,
    );
    // `key = value`, its reason aligned in a comment column.
    let line = |setting: String, why: &str| format!("{setting:<29} # {why}\n");
    let type_note = match &config.model_type {
        Some(t) => format!("config.json's model_type {t:?}"),
        None => "config.json's architectures".to_string(),
    };
    toml += &line(format!("family = {}", quoted(f.name)), &type_note);
    toml += &line(
        format!("prefix = {}", quoted(prefix)),
        &format!("tensor names start with `{prefix}embeddings.`"),
    );
    toml += &match max_seq_len {
        Some(n) => line(
            format!("max_seq_len = {n}"),
            "sentence_bert_config.json's max_seq_length",
        ),
        None => line(
            format!("# max_seq_len = {reach}"),
            &format!(
                "the default: the positions the checkpoint has ({})",
                config.keys.max_positions
            ),
        ),
    };
    toml += &line(
        format!("output = {}", quoted(output.name())),
        &format!("the weights have {output_note}"),
    );
    if matches!(output, BertOutputSpec::MeanPooled | BertOutputSpec::Cls) {
        let why = if normalize {
            "modules.json ends with a Normalize step"
        } else {
            "true for cosine-similarity embeddings"
        };
        toml += &line(format!("normalize = {normalize}"), why);
    }
    if let Some(d) = dims {
        if !matches!(output, BertOutputSpec::MeanPooled | BertOutputSpec::Cls) {
            return Err(Error::Options(format!(
                "--dims {d}: truncates pooled embeddings, but this checkpoint's output is {} (a classifier)",
                output.name()
            )));
        }
        toml += &line(
            format!("dims = {d}"),
            "Matryoshka: the first values only, L2-normalized again",
        );
    }
    if let Some(t) = &tokenizer {
        toml += &line(
            format!("tokenizer = {}", rel(t)?),
            "for {\"text\": ...} input",
        );
    }
    toml += "\n[quantize]\n";
    toml += &line(
        "scheme = \"asymmetric\"".into(),
        "recommended for encoders: GELU and LayerNorm outputs are skewed",
    );

    // The description must work as written: check it like `dynq check` does.
    let spec = SpecFile::parse(toml_path, toml.clone())?;
    let checked = Weights::open(&spec.weights_path())?;
    dynq_build::load_model(&spec, &checked, Precision::Int8, vec!["scalar".into()])?;
    Ok(Described {
        toml,
        name,
        family: f.name,
        prefix: prefix.to_string(),
        output,
        tokenizer,
    })
}

/// The pooling of a sentence-transformers checkpoint: the `Pooling` module that
/// `modules.json` lists, read from its `config.json`. Mean and first-token pooling are what
/// dynq computes; another mode (max, last token, weighted mean, several at once) is refused,
/// since a description that pooled otherwise would give different embeddings.
fn pooling_mode(dir: &Path) -> Result<Option<(BertOutputSpec, String)>> {
    let Ok(text) = std::fs::read_to_string(dir.join("modules.json")) else {
        return Ok(None);
    };
    let Ok(modules) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(None);
    };
    let Some(path) = modules.as_array().and_then(|m| {
        m.iter()
            .find(|m| {
                m["type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("models.Pooling"))
            })
            .and_then(|m| m["path"].as_str().map(String::from))
    }) else {
        return Ok(None);
    };
    let file = dir.join(&path).join("config.json");
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Weights {
        file: file.clone(),
        message: format!("not a valid pooling config: {e}"),
    })?;
    let on: Vec<&str> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, x)| k.starts_with("pooling_mode") && x.as_bool() == Some(true))
                .map(|(k, _)| k.as_str())
                .collect()
        })
        .unwrap_or_default();
    let name = format!("{path}/config.json");
    match on.as_slice() {
        ["pooling_mode_mean_tokens"] => Ok(Some((BertOutputSpec::MeanPooled, name))),
        ["pooling_mode_cls_token"] => Ok(Some((BertOutputSpec::Cls, name))),
        [] => Ok(None),
        other => Err(Error::Weights {
            file,
            message: format!(
                "pooling {other:?}: dynq pools by the mean (pooling_mode_mean_tokens) or the first token (pooling_mode_cls_token) only"
            ),
        }),
    }
}

/// Writes `contents` to `path` (through a temporary file and a rename), refusing to replace an
/// existing file unless `force`.
pub fn write_new(path: &Path, contents: &str, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::Options(format!(
            "{}: already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    dynq_build::write_if_changed(path, contents.as_bytes())
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `to` relative to the directory `base` (both absolute), with `/` separators.
fn relative(base: &Path, to: &Path) -> String {
    let (b, t): (Vec<Component>, Vec<Component>) =
        (base.components().collect(), to.components().collect());
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let parts: Vec<String> = std::iter::repeat_n("..".to_string(), b.len() - common)
        .chain(
            t[common..]
                .iter()
                .map(|c| c.as_os_str().to_string_lossy().into_owned()),
        )
        .collect();
    parts.join("/")
}

/// A snake_case model name from the output file's stem, else the checkpoint's directory.
///
/// `all-MiniLM-L6-v2/config.json` gives `all_minilm_l6_v2`.
fn derive_name(toml_path: &Path, config_dir: &Path) -> String {
    let stem = toml_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned());
    let dir = config_dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|s| s.to_string_lossy().into_owned()));
    [stem.filter(|s| s != "model"), dir]
        .into_iter()
        .flatten()
        .map(|s| snake(&s))
        .find(|s| SpecFile::is_model_name(s))
        .unwrap_or_else(|| "model".into())
}

fn snake(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_')
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '_')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(snake("all-MiniLM-L6-v2"), "all_minilm_l6_v2");
        assert_eq!(snake("2-bert--base"), "bert_base");
        assert_eq!(
            relative(Path::new("/a/b/c"), Path::new("/a/d/m.safetensors")),
            "../../d/m.safetensors"
        );
        assert_eq!(relative(Path::new("/a"), Path::new("/a/x.json")), "x.json");
    }
}
