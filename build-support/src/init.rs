//! `dynq init`: a working model description for a Hugging Face BERT checkpoint, from its
//! `config.json` and `model.safetensors`.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::hf_config::BertConfig;
use crate::ir::Precision;
use crate::spec::{BertOutputSpec, SpecFile};
use crate::weights::Weights;

/// A description written by [`describe_bert`], with what it detected.
#[derive(Debug, Clone)]
pub struct Described {
    /// The TOML text; it passes `dynq check` when saved at the path it was made for.
    pub toml: String,
    /// `model.name`.
    pub name: String,
    /// `bert.prefix`: `""` or `"bert."`.
    pub prefix: String,
    /// `bert.output`: `logits` with a classification head and labels, else `mean_pooled`.
    pub output: BertOutputSpec,
    /// The `tokenizer.json` found next to the config, if any.
    pub tokenizer: Option<PathBuf>,
}

/// Writes the description of a BERT checkpoint to be saved at `toml_path` (paths in it are
/// relative to that file's directory, which must exist), and checks it as `dynq check` would.
///
/// Detects the tensor prefix (`bert.` for `BertFor*` checkpoints, none for `BertModel` and
/// sentence-transformers), the output (`logits` when the weights have `classifier.weight` and
/// a pooler and the config names its labels in `id2label`, else `mean_pooled`, L2-normalized
/// when a sentence-transformers `modules.json` says so), `max_seq_len` from
/// `sentence_bert_config.json`, and a `tokenizer.json` next to the config.
///
/// ```no_run
/// use std::path::Path;
/// let d = dynq_build::init::describe_bert(
///     Path::new("models/minilm/config.json"),
///     Path::new("models/minilm/model.safetensors"),
///     Path::new("models/minilm/minilm.toml"),
///     None,
/// ).unwrap();
/// assert_eq!(d.prefix, "");
/// ```
pub fn describe_bert(
    config_path: &Path,
    weights_path: &Path,
    toml_path: &Path,
    name: Option<&str>,
) -> Result<Described> {
    let config = BertConfig::load(config_path)?;
    let weights = Weights::open(weights_path)?;
    let word = "embeddings.word_embeddings.weight";
    let Some(prefix) = ["", "bert."]
        .into_iter()
        .find(|p| weights.contains(&format!("{p}{word}")))
    else {
        let names = weights.names();
        return Err(Error::Weights {
            file: weights_path.to_path_buf(),
            message: format!(
                "not a BERT checkpoint: expected `{word}` or `bert.{word}`, found {} tensors: {}{}",
                names.len(),
                names.iter().take(6).cloned().collect::<Vec<_>>().join(", "),
                if names.len() > 6 { ", ..." } else { "" }
            ),
        });
    };
    let config_dir = config_path.parent().unwrap_or(Path::new(""));
    let has_head = weights.contains("classifier.weight")
        && weights.contains(&format!("{prefix}pooler.dense.weight"));
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
    let normalize = output == BertOutputSpec::MeanPooled
        && read("modules.json").is_some_and(|m| m.contains("models.Normalize"));
    let max_seq_len = read("sentence_bert_config.json")
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["max_seq_length"].as_u64())
        .map(|n| n as usize)
        .filter(|&n| n > 0 && n <= config.max_position_embeddings);
    let tokenizer = Some(config_dir.join("tokenizer.json")).filter(|p| p.is_file());

    let toml_dir = match toml_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let rel = |p: &Path| -> Result<String> {
        let base = toml_dir
            .canonicalize()
            .map_err(|e| Error::io(&toml_dir, "cannot open the output directory", e))?;
        let target = p
            .canonicalize()
            .map_err(|e| Error::io(p, "cannot resolve", e))?;
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
    let mut toml = format!(
        "# Written by `dynq init` from {} and {}.\n[model]\nname = {}\npreset = \"bert\"\nweights = {}\nconfig = {}\n\n[bert]\n",
        origin(config_path),
        origin(weights_path),
        quoted(&name),
        rel(weights_path)?,
        rel(config_path)?,
    );
    // `key = value`, its reason aligned in a comment column.
    let line = |setting: String, why: &str| format!("{setting:<29} # {why}\n");
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
            format!("# max_seq_len = {}", config.max_position_embeddings),
            "the default: max_position_embeddings",
        ),
    };
    toml += &line(
        format!("output = {}", quoted(output.name())),
        &format!("the weights have {output_note}"),
    );
    if output == BertOutputSpec::MeanPooled {
        let why = if normalize {
            "modules.json ends with a Normalize step"
        } else {
            "true for cosine-similarity embeddings"
        };
        toml += &line(format!("normalize = {normalize}"), why);
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
        "recommended for BERT: GELU and LayerNorm outputs are skewed",
    );

    // The description must work as written: check it like `dynq check` does.
    let spec = SpecFile::parse(toml_path, toml.clone())?;
    let checked = Weights::open(&spec.weights_path())?;
    crate::load_model(&spec, &checked, Precision::Int8, vec!["scalar".into()])?;
    Ok(Described {
        toml,
        name,
        prefix: prefix.to_string(),
        output,
        tokenizer,
    })
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
    crate::write_if_changed(path, contents.as_bytes())
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
