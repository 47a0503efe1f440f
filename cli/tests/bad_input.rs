//! Bad input through the library and the `dynq` command line: every case of the shared table
//! (tests/common/bad_cases.rs) gives its exact message, naming the file and the thing at fault,
//! with exit code 1 and no panic, and leaves no file behind.
//!
//! The suite lives in this package because only its own tests get `CARGO_BIN_EXE_dynq`; the
//! macro runs the same table from tests/macro_ui.rs.

#[path = "common/bad_cases.rs"]
mod bad_cases;

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;

use bad_cases::{cases, controls, Case};
use dynq_build::{generate, Options, Placement};
use dynq_cli::summary;

/// The case written into a fresh directory.
fn setup(case: &Case) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    case.write(dir.path());
    dir
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn case_files(case: &Case) -> BTreeSet<String> {
    case.files.iter().map(|(n, _)| n.to_string()).collect()
}

/// Runs `f` and describes how it differs from the expected error, if it does.
fn expect_error<T>(expected: &str, f: impl FnOnce() -> dynq_build::Result<T>) -> Option<String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Err(_) => Some("panicked".into()),
        Ok(Ok(_)) => Some("succeeded".into()),
        Ok(Err(e)) if e.to_string() == expected => None,
        Ok(Err(e)) => Some(format!("expected: {expected}\n    found:    {e}")),
    }
}

#[test]
fn case_names_are_unique() {
    let all = cases();
    let names: BTreeSet<&str> = all.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), all.len());
    for m in bad_cases::MACRO_CASES {
        assert!(names.contains(m), "{m}");
    }
}

#[test]
fn controls_generate() {
    for case in controls() {
        let dir = setup(&case);
        let toml = dir.path().join("model.toml");
        let r = generate(&toml, &Options::default(), Placement::Relative);
        assert!(r.is_ok(), "{}: {}", case.name, r.unwrap_err());
    }
}

#[test]
fn library_gives_the_exact_message() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = setup(&case);
        let toml = dir.path().join("model.toml");
        let expected = case.message_in(&dir.path().display().to_string());
        let g = expect_error(&expected, || {
            generate(&toml, &Options::default(), Placement::Relative)
        });
        let c = expect_error(&expected, || summary::check(&toml));
        for (front, diff) in [("generate", g), ("check", c)] {
            if let Some(d) = diff {
                failures.push(format!("{} ({front}): {d}", case.name));
            }
        }
        assert_eq!(listing(dir.path()), case_files(&case), "{}", case.name);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `dynq check`, `dynq expand` and `dynq build` (and `dynq inspect` for the cases about the
/// weights file itself): exit code 1, `error: <message>` and nothing else on stderr, nothing on
/// stdout, and no file written, neither next to the model nor in `build`'s output directory.
#[test]
fn command_line_exits_1_with_the_message_and_writes_nothing() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = setup(&case);
        let shown = dir.path().display().to_string();
        let expected = format!("error: {}\n", case.message_in(&shown));
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let toml = dir.path().join("model.toml");
        let weights = dir.path().join("tiny.safetensors");
        let mut runs = vec![
            vec!["check".as_ref(), toml.as_os_str()],
            vec!["expand".as_ref(), toml.as_os_str()],
            vec![
                "expand".as_ref(),
                "--precision".as_ref(),
                "f32".as_ref(),
                toml.as_os_str(),
            ],
            vec![
                "build".as_ref(),
                "-o".as_ref(),
                out.as_os_str(),
                toml.as_os_str(),
            ],
        ];
        let about_weights_file = case.name.starts_with("st_")
            || ["missing_weights_file", "weights_is_a_directory"].contains(&case.name);
        if about_weights_file {
            runs.push(vec!["inspect".as_ref(), weights.as_os_str()]);
        }
        for args in runs {
            let o = Command::new(env!("CARGO_BIN_EXE_dynq"))
                .args(&args)
                .output()
                .unwrap();
            let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
            let sub = args[0].to_string_lossy();
            if o.status.code() != Some(1) || stderr != expected || !stdout.is_empty() {
                failures.push(format!(
                    "{} (dynq {sub}): exit {:?}\n    expected: {expected}    stderr:   {stderr}    stdout:   {stdout}",
                    case.name,
                    o.status.code()
                ));
            }
        }
        let mut files = case_files(&case);
        files.insert("out".into());
        assert_eq!(listing(dir.path()), files, "{}", case.name);
        assert!(
            listing(&out).is_empty(),
            "{}: dynq build left files",
            case.name
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The macro's cache key covers config.json: a config that no longer fits the weights is an
/// error on the next expansion, not a stale cache hit.
#[test]
fn macro_cache_sees_a_changed_config_json() {
    let good = controls()
        .into_iter()
        .find(|c| c.name == "control_bert")
        .unwrap();
    let bad = cases()
        .into_iter()
        .find(|c| c.name == "bert_config_disagrees")
        .unwrap();
    let dir = setup(&good);
    let cache = tempfile::tempdir().unwrap();
    let toml = dir.path().join("model.toml");
    let expand = || dynq_build::cache::expand_cached(&toml, &Options::default(), cache.path());
    let first = expand().unwrap();
    assert!(first.tracked.contains(&dir.path().join("config.json")));
    assert!(expand().unwrap().cache_hit);
    bad.write(dir.path());
    let e = expand().unwrap_err().to_string();
    assert_eq!(e, bad.message_in(&dir.path().display().to_string()));
}
