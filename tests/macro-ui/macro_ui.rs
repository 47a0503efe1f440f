//! Compile-fail tests of `dynq_model!`: bad descriptions and arguments give a `compile_error!`
//! at the call with the library's message, and one mistake does not cascade.

#[path = "../../cli/tests/common/bad_cases.rs"]
mod bad_cases;

use std::path::Path;

use bad_cases::{cases, Content, MACRO_CASES};

// trybuild compiles each case in its own project under target/tests/trybuild/dynq-macro-ui,
// and the macro resolves paths against that project's CARGO_MANIFEST_DIR, so the cases name
// their TOML files from there (`../../../../tests/macro-ui/ui/...`).
#[test]
fn macro_errors_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}

/// The macro cases of the bad-input table (cli/tests/common/bad_cases.rs) are
/// committed under ui/bad_input/<case>/ with a `ui/bad_input_<case>.rs` calling the macro on
/// them; this checks that they are the table's files and that the `.stderr` trybuild compares
/// starts with the table's message. `DYNQ_BLESS=1` rewrites the files (then
/// `TRYBUILD=overwrite` the `.stderr`).
#[test]
fn macro_bad_input_cases_match_the_table() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    let bless = std::env::var_os("DYNQ_BLESS").is_some();
    let mut stale = Vec::new();
    for case in cases()
        .into_iter()
        .filter(|c| MACRO_CASES.contains(&c.name))
    {
        let rel = format!("../../../../tests/macro-ui/ui/bad_input/{}", case.name);
        let call = format!("dynq_macros::dynq_model!(\"{rel}/model.toml\");\n\nfn main() {{}}\n");
        let mut files = vec![(
            ui.join(format!("bad_input_{}.rs", case.name)),
            call.into_bytes(),
        )];
        for (name, content) in &case.files {
            let Content::Bytes(b) = content else {
                panic!("{}: a macro case cannot hold a directory", case.name)
            };
            files.push((ui.join("bad_input").join(case.name).join(name), b.clone()));
        }
        for (path, bytes) in files {
            if std::fs::read(&path).ok().as_ref() != Some(&bytes) {
                if bless {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, &bytes).unwrap();
                } else {
                    stale.push(path.display().to_string());
                }
            }
        }
        let stderr = ui.join(format!("bad_input_{}.stderr", case.name));
        let first = std::fs::read_to_string(&stderr).unwrap_or_default();
        let expected = format!("error: {}\n", case.message_in(&rel));
        if !bless && !first.starts_with(&expected) {
            stale.push(format!(
                "{} (expected it to start with {expected:?})",
                stderr.display()
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "stale macro cases (DYNQ_BLESS=1 rewrites them, TRYBUILD=overwrite the .stderr):\n{}",
        stale.join("\n")
    );
}
