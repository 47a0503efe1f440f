//! The proc macro's cache: generated source and blob under the target directory, keyed by a
//! content hash of everything that decides them.
//!
//! A proc macro has no `OUT_DIR`. It calls [`expand_cached`], which hashes the TOML, the weights,
//! the config.json and tokenizer.json the TOML names, and the options, and re-quantizes only
//! when no cache entry has that key.
//!
//! The cache stays bounded: an entry is written whole (into a temporary folder, then renamed,
//! so a failed or interrupted generation leaves nothing behind), each use marks it recent,
//! and after each new entry the older ones of the same model name beyond
//! [`KEEP_PER_NAME`], and any unused for [`MAX_AGE`], are removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::spec::SpecFile;
use crate::weights::Weights;
use crate::{generate_from, Options, Placement};

/// Entries kept per model name: the current one and a few recent edits (switching between
/// branches or options does not regenerate).
pub const KEEP_PER_NAME: usize = 4;

/// Entries unused for this long are removed.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

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
    // `native` kernels depend on the machine, not on the options' text.
    if let Some(k) = &options.kernels {
        if k.iter().any(|k| k == "native") {
            h.update(format!("{:?}\0", crate::native_kernels()).as_bytes());
        }
    }
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
        // Mark the entry recent for eviction; a read-only cache only loses that.
        if let Ok(f) = std::fs::File::options().append(true).open(&rs) {
            let _ = f.set_modified(SystemTime::now());
        }
        return Ok(Expansion {
            code,
            tracked,
            cache_hit: true,
        });
    }
    // Written into a temporary folder and renamed: a complete entry or none.
    let tmp = root.join(format!(".tmp-{name}-{key}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)
        .map_err(|e| Error::io(&tmp, "cannot create cache directory", e))?;
    let written = generate_from(&spec, &weights, options, Placement::Dir(dir.clone()))
        .and_then(|g| g.write_files(&tmp).map(|_| g));
    let g = match written {
        Ok(g) => g,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another build made the same entry meanwhile (same key, same contents): keep it.
        let _ = std::fs::remove_dir_all(&tmp);
        if !rs.is_file() {
            return Err(Error::Build(format!(
                "cannot move the generated model into the cache at {}",
                dir.display()
            )));
        }
    }
    evict(root, &dir, SystemTime::now());
    Ok(Expansion {
        code: g.code,
        tracked,
        cache_hit: false,
    })
}

/// The model name of a cache entry folder (`<name>-<24 hex digits>`), if it is one.
fn entry_name(folder: &str) -> Option<&str> {
    let (name, key) = folder.rsplit_once('-')?;
    (key.len() == 24 && key.bytes().all(|b| b.is_ascii_hexdigit())).then_some(name)
}

/// Removes, under `root`, the entries of `keep`'s model name beyond the [`KEEP_PER_NAME`] most
/// recently used, entries unused for [`MAX_AGE`], temporary folders older than a day (an
/// interrupted build), and empty folders. `keep` itself is never removed. Errors are ignored:
/// eviction only saves space.
pub fn evict(root: &Path, keep: &Path, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let keep_name = keep
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(entry_name)
        .map(str::to_owned);
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    let mut same_name = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path == keep || !path.is_dir() {
            continue;
        }
        let folder = e.file_name().to_string_lossy().into_owned();
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if folder.starts_with(".tmp-") {
            if modified(&path).is_some_and(|t| age(t) > Duration::from_secs(24 * 3600)) {
                let _ = std::fs::remove_dir_all(&path);
            }
            continue;
        }
        let Some(name) = entry_name(&folder) else {
            continue;
        };
        let rs = path.join(format!("{name}.rs"));
        // An entry without its source is incomplete (an older dynq, or a crash): remove it.
        let Some(used) = modified(&rs) else {
            let _ = std::fs::remove_dir_all(&path);
            continue;
        };
        if age(used) > MAX_AGE {
            let _ = std::fs::remove_dir_all(&path);
        } else if keep_name.as_deref() == Some(name) {
            same_name.push((used, path));
        }
    }
    // Newest first; the kept entry counts as one of KEEP_PER_NAME.
    same_name.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, path) in same_name.into_iter().skip(KEEP_PER_NAME.saturating_sub(1)) {
        let _ = std::fs::remove_dir_all(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(root: &Path, name: &str, key: u32, used: SystemTime) -> PathBuf {
        let dir = root.join(format!("{name}-{key:024x}"));
        std::fs::create_dir_all(&dir).unwrap();
        let rs = dir.join(format!("{name}.rs"));
        std::fs::write(&rs, "// code").unwrap();
        std::fs::write(dir.join(format!("{name}.blob")), [0u8; 64]).unwrap();
        let f = std::fs::File::options().append(true).open(&rs).unwrap();
        f.set_modified(used).unwrap();
        dir
    }

    #[test]
    fn eviction_keeps_recent_entries_and_leaves_no_empty_folders() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let now = SystemTime::now();
        let ago = |s: u64| now - Duration::from_secs(s);
        let old: Vec<PathBuf> = (0..6)
            .map(|i| entry(root, "m", i, ago(100 + i as u64)))
            .collect();
        let other = entry(root, "other", 1, ago(1000));
        let stale = entry(root, "gone", 1, ago(MAX_AGE.as_secs() + 10));
        std::fs::create_dir_all(root.join("broken-000000000000000000000000")).unwrap();
        std::fs::create_dir_all(root.join("not-an-entry")).unwrap();
        let current = entry(root, "m", 99, now);
        evict(root, &current, now);
        // The current entry and the three most recent others of `m` stay.
        assert!(current.is_dir());
        for (i, dir) in old.iter().enumerate() {
            assert_eq!(dir.is_dir(), i < KEEP_PER_NAME - 1, "entry {i}");
        }
        assert!(other.is_dir(), "another model's recent entry stays");
        assert!(!stale.exists(), "an entry unused for MAX_AGE goes");
        assert!(!root.join("broken-000000000000000000000000").exists());
        assert!(root.join("not-an-entry").is_dir(), "folders not ours stay");
    }
}
