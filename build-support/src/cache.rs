//! The proc macro's cache: generated source and blob under the target directory, keyed by a
//! content hash of everything that decides them.
//!
//! A proc macro has no `OUT_DIR`. It calls [`expand_cached`], which hashes the TOML, the weights,
//! the config.json and tokenizer.json the TOML names, and the options, and re-quantizes only
//! when no cache entry has that key.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::spec::SpecFile;
use crate::weights::Weights;
use crate::{generate_from, Options, Placement};

/// What the macro emits: the generated source and the files rustc must track.
#[derive(Debug, Clone)]
pub struct Expansion {
    /// Generated source (includes the blob by absolute path).
    pub code: String,
    /// Files whose change must re-run the macro (the TOML, the weights, and the config.json and
    /// tokenizer.json it names).
    pub tracked: Vec<PathBuf>,
    /// Whether the cache already held this expansion.
    pub cache_hit: bool,
}

/// The cache root for a crate: `$CARGO_TARGET_DIR/dynq-cache`, or `target/dynq-cache` next to
/// the nearest `Cargo.lock` above `manifest_dir` (the workspace root), or under `manifest_dir`.
pub fn cache_root(manifest_dir: &Path) -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let t = PathBuf::from(t);
        let t = if t.is_absolute() {
            t
        } else {
            manifest_dir.join(t)
        };
        return t.join("dynq-cache");
    }
    let root = manifest_dir
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or(manifest_dir);
    root.join("target").join("dynq-cache")
}

/// Loads the expansion for `spec_path` from the cache under `root`, generating it on a miss.
pub fn expand_cached(spec_path: &Path, options: &Options, root: &Path) -> Result<Expansion> {
    let spec = SpecFile::load(spec_path)?;
    let weights_path = spec.weights_path();
    let weights = Weights::open(&weights_path)?;
    let name = crate::output_name(&spec, options)?;

    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(env!("DYNQ_BUILD_FINGERPRINT").as_bytes());
    h.update(format!("{options:?}\0{}\0", std::env::consts::ARCH).as_bytes());
    h.update((spec.source.len() as u64).to_le_bytes());
    h.update(spec.source.as_bytes());
    h.update(weights.bytes());
    // The files the description points to besides the weights decide the output too.
    let mut tracked = vec![spec_path.to_path_buf(), weights_path];
    let bert = spec.encoder_section().map(|b| b.get_ref());
    let extra = [
        spec.spec.model.config.as_ref(),
        bert.and_then(|b| b.tokenizer.as_ref()),
    ];
    for rel in extra.into_iter().flatten() {
        let path = spec.resolve(rel.get_ref());
        // An unreadable file hashes as empty; generation then reports it.
        let bytes = std::fs::read(&path).unwrap_or_default();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
        tracked.push(path);
    }
    let key: String = h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let dir = root.join(format!("{name}-{key}"));
    let rs = dir.join(format!("{name}.rs"));
    if let Ok(code) = std::fs::read_to_string(&rs) {
        return Ok(Expansion {
            code,
            tracked,
            cache_hit: true,
        });
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(&dir, "cannot create cache directory", e))?;
    let g = generate_from(&spec, &weights, options, Placement::Dir(dir.clone()))?;
    // Blob and tokenizer first: a cache entry is complete once its .rs exists.
    g.write_files(&dir)?;
    Ok(Expansion {
        code: g.code,
        tracked,
        cache_hit: false,
    })
}
