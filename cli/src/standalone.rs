//! `dynq build`: a standalone inference executable for one model.
//!
//! It writes a small Cargo project (generated model, blob, a `main.rs` that serves JSON lines
//! through `dynq_runtime::serve`), compiles it in release and copies the executable out.

use std::path::{Path, PathBuf};
use std::process::Command;

use dynq_build::{generate, write_if_changed, Options, Placement};
use dynq_build::{Error, Result};

/// Where this checkout's `dynq-runtime` is, when `dynq` runs from a checkout of the workspace
/// (the standalone project then depends on it by path). `None` for an installed `dynq`: the
/// project depends on the crates.io release of the same version.
pub fn default_runtime_path() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("dynq-runtime");
    path.join("Cargo.toml").is_file().then_some(path)
}

/// The file that marks a directory as written by `dynq build` (safe to write into again).
pub const MARKER: &str = ".dynq-build";

/// The Cargo target directory all standalone builds share unless told otherwise:
/// `<user cache dir>/dynq/target` (`~/.cache/dynq/target` on Linux), so that the runtime and its
/// dependencies are compiled once per machine, not once per model. `None` when the system has
/// no cache directory.
pub fn shared_target_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("dynq").join("target"))
}

/// Refuses an output directory that holds files `dynq build` did not write (without `force`):
/// only a new or empty directory, or one with the marker of an earlier build, is written into.
fn check_out_dir(dir: &Path, force: bool) -> Result<()> {
    if force || dir.join(MARKER).is_file() {
        return Ok(());
    }
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        if dir.exists() {
            return Err(Error::Options(format!(
                "{}: exists and is not a directory; choose another output directory",
                dir.display()
            )));
        }
        return Ok(());
    };
    match entries.next() {
        None => Ok(()),
        Some(entry) => {
            let found = entry
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .unwrap_or_default();
            Err(Error::Options(format!(
                "{}: the output directory is not empty (it holds `{found}`) and was not written by \
                 `dynq build` (no {MARKER} file); choose a new or empty directory, or pass --force \
                 to write Cargo.toml, src/ and the executable into it anyway",
                dir.display()
            )))
        }
    }
}

/// What [`StandaloneBuild::write_project`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The executable's name (the model's `name`).
    pub bin: String,
    /// The weights file the executable reads at start (`[target] weights = "file"`), written
    /// next to where the executable will be; `None` when the weights are embedded.
    pub weights_file: Option<PathBuf>,
}

/// Settings of one standalone build.
#[derive(Debug, Clone)]
pub struct StandaloneBuild {
    /// The model description.
    pub toml: PathBuf,
    /// Output directory: the Cargo project and the executable land here.
    pub out_dir: PathBuf,
    /// Generation options.
    pub options: Options,
    /// `dynq-runtime` to depend on by path; `None`: the crates.io release of this version.
    pub runtime_path: Option<PathBuf>,
    /// Cargo target directory for the compile (default [`shared_target_dir`]).
    pub target_dir: Option<PathBuf>,
    /// Write into `out_dir` even if it holds files an earlier build did not write.
    pub force: bool,
    /// Print cargo's output.
    pub verbose: bool,
    /// Cargo profile to compile with; `None` is `release`. (`dev` compiles several times
    /// faster and runs some 60 times slower: for checking a build, not for using it.)
    pub profile: Option<String>,
}

impl StandaloneBuild {
    /// Generates the project, compiles it, and returns the executable's path
    /// (`<out_dir>/<model name>`).
    pub fn run(&self) -> Result<PathBuf> {
        let project = self.write_project()?;
        self.compile(&project.bin)
    }

    /// Generates the model and writes the Cargo project into `out_dir`; returns the binary's
    /// name and the weights file to ship beside it, if any. Nothing is written when the description or the weights are at fault, or when
    /// `out_dir` holds files an earlier build did not write (unless `force`).
    pub fn write_project(&self) -> Result<Project> {
        check_out_dir(&self.out_dir, self.force)?;
        // The blob by its path under the manifest, so that the assembler embeds it (see
        // `dynq_runtime::embedded_blob!`).
        let placement = Placement::in_project(&self.out_dir, "src");
        let g = generate(&self.toml, &self.options, placement)?;
        let spec_name = dynq_build::spec::SpecFile::load(&self.toml)?
            .spec
            .model
            .name
            .into_inner();
        let runtime = match &self.runtime_path {
            Some(p) => Some(
                p.canonicalize()
                    .map_err(|e| Error::io(p, "cannot find dynq-runtime", e))?,
            ),
            None => None,
        };
        let runtime_dep = match &runtime {
            Some(p) => format!("path = {:?}", p.display().to_string()),
            None => format!("version = \"={}\"", env!("CARGO_PKG_VERSION")),
        };
        let src = self.out_dir.join("src");
        std::fs::create_dir_all(&src).map_err(|e| Error::io(&src, "cannot create directory", e))?;
        write_if_changed(
            &self.out_dir.join(MARKER),
            b"Written by `dynq build`: it may replace the files in this directory.\n",
        )?;
        let package = format!("dynq-standalone-{}", spec_name.replace('_', "-"));
        // One feature set for every model (and one more for the shared forward): the runtime
        // compiled for one standalone binary serves the next from the shared target directory.
        let features = match g.forward {
            dynq_build::spec::ForwardKind::Inlined => r#""serve", "http""#,
            dynq_build::spec::ForwardKind::Shared => r#""serve", "http", "shared-forward""#,
        };
        let serve = g.model.body.kind().serve_main();
        let manifest = format!(
            "# @generated by dynq build. Do not edit.\n[package]\nname = \"{package}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [[bin]]\nname = \"{spec_name}\"\npath = \"src/main.rs\"\n\n\
             [dependencies]\ndynq-runtime = {{ {runtime_dep}, features = [{features}] }}\n\n\
             [profile.release]\npanic = \"abort\"\n\n[workspace]\n",
        );
        let main = format!(
            "// @generated by dynq build. Do not edit.\n//! Standalone `{spec_name}`: JSON lines in, JSON lines out; `serve` for HTTP.\n\n\
             mod model {{\n    include!(\"{}.rs\");\n}}\n\n\
             fn main() -> std::process::ExitCode {{\n    dynq_runtime::serve::{serve}(&model::{})\n}}\n",
            g.name, g.type_name
        );
        write_if_changed(&self.out_dir.join("Cargo.toml"), manifest.as_bytes())?;
        write_if_changed(&src.join("main.rs"), main.as_bytes())?;
        // A weights file goes where the executable will be copied: it looks beside itself.
        let weights_file = (g.weights == dynq_build::spec::WeightsStorage::File)
            .then(|| g.blob_path(&self.out_dir));
        let blob_dir = if weights_file.is_some() {
            &self.out_dir
        } else {
            &src
        };
        g.write_files_with_blob_in(&src, blob_dir)?;
        if weights_file.is_some() {
            // No stale copy in src/ from an earlier embedded build into this directory.
            let stale = g.blob_path(&src);
            match std::fs::remove_file(&stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(&stale, "cannot remove", e))
                }
                _ => {}
            }
        }
        // Reuse the checkout's lock file so the compile picks the versions already tested.
        if let Some(lock) = runtime.map(|r| r.join("..").join("Cargo.lock")) {
            if lock.is_file() && !self.out_dir.join("Cargo.lock").exists() {
                std::fs::copy(&lock, self.out_dir.join("Cargo.lock"))
                    .map_err(|e| Error::io(&lock, "cannot copy", e))?;
            }
        }
        Ok(Project {
            bin: spec_name,
            weights_file,
        })
    }

    /// Compiles the project [`StandaloneBuild::write_project`] wrote and copies the executable
    /// `spec_name` out; returns its path.
    pub fn compile(&self, spec_name: &str) -> Result<PathBuf> {
        let target = self
            .target_dir
            .clone()
            .or_else(shared_target_dir)
            .unwrap_or_else(|| self.out_dir.join("target"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let profile = self.profile.as_deref().unwrap_or("release");
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--profile")
            .arg(profile)
            .arg("--manifest-path")
            .arg(self.out_dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        if !self.verbose {
            cmd.arg("--quiet");
        }
        let spinner = crate::progress::spinner("compiling (cargo build)");
        let out = cmd.output();
        spinner.finish_and_clear();
        let out = out.map_err(|e| {
            Error::Build(format!(
                "cannot run cargo to compile the standalone binary: {e}"
            ))
        })?;
        if self.verbose {
            // Cargo's progress and warnings, which --verbose promises, after the spinner.
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
        if !out.status.success() {
            return Err(Error::Build(format!(
                "cargo build of {} failed ({}):\n{}",
                self.out_dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let exe_name = format!("{spec_name}{}", std::env::consts::EXE_SUFFIX);
        // Cargo's output folder of a profile: `dev` and `test` build into `debug`.
        let folder = match profile {
            "dev" | "test" => "debug",
            "bench" => "release",
            p => p,
        };
        let built = target.join(folder).join(&exe_name);
        let dest = self.out_dir.join(&exe_name);
        std::fs::copy(&built, &dest)
            .map_err(|e| Error::io(&built, "cannot copy the executable", e))?;
        Ok(dest)
    }
}
