//! Snapshot tests of generated code (reviewed like code) and of the blob manifest, plus
//! reproducibility: the same TOML and weights give byte-identical code and blob.

use std::path::Path;

use dynq_build::{generate, Options, Placement};
use dynq_tests::{mlp_tensors, write_safetensors, write_toml};

const KEEP_F32: &str = r#"[model]
name = "snap_keep"
preset = "mlp"
weights = "snap_keep.safetensors"

[mlp]
input_size = 8
layers = [
  { tensor = "net.0", activation = "relu" },
  { tensor = "net.2", activation = "gelu" },
  { tensor = "net.4" },
]

[quantize]
keep_f32 = ["net.2"]

[target]
kernels = ["scalar"]
"#;

const ASYMMETRIC: &str = r#"[model]
name = "snap_asym"
preset = "mlp"
weights = "snap_asym.safetensors"

[mlp]
input_size = 6
layers = [
  { tensor = "net.0", activation = "tanh" },
  { tensor = "net.2", activation = "none" },
]

[quantize]
weights = "per_tensor"
activations = "per_tensor"
scheme = "asymmetric"

[target]
kernels = ["scalar"]
"#;

fn generate_in(dir: &Path, name: &str, toml: &str, widths: &[usize]) -> dynq_build::Generated {
    write_safetensors(
        &dir.join(format!("{name}.safetensors")),
        &mlp_tensors(7, widths),
    );
    let path = write_toml(dir, name, toml);
    generate(&path, &Options::default(), Placement::Relative).unwrap()
}

#[test]
fn keep_f32_mlp() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate_in(dir.path(), "snap_keep", KEEP_F32, &[8, 16, 12, 4]);
    insta::assert_snapshot!("keep_f32_code", g.code);
    insta::assert_snapshot!("keep_f32_manifest", g.blob.manifest);
}

#[test]
fn weights_in_a_file() {
    // The asymmetric MLP with its weights beside the binary: the same code but for where the
    // blob comes from (no include_bytes!, a WeightsFile) and the type's `load_weights`.
    let dir = tempfile::tempdir().unwrap();
    let toml = ASYMMETRIC.replace("[target]\n", "[target]\nweights = \"file\"\n");
    let g = generate_in(dir.path(), "snap_asym", &toml, &[6, 5, 3]);
    assert_eq!(g.weights, dynq_build::spec::WeightsStorage::File);
    assert!(!g.code.contains("include_bytes!"));
    insta::assert_snapshot!("weights_file_code", g.code);
    // The same blob either way.
    let embedded = generate_in(dir.path(), "snap_asym", ASYMMETRIC, &[6, 5, 3]);
    assert_eq!(g.blob.bytes, embedded.blob.bytes);
}

#[test]
fn embedded_from_out_dir() {
    // From a build script (or the macro's cache, or `dynq build`'s project): the blob by an
    // absolute path, embedded by the assembler's `.incbin` through `embedded_blob!`.
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(
        &dir.path().join("snap_asym.safetensors"),
        &mlp_tensors(7, &[6, 5, 3]),
    );
    let path = write_toml(dir.path(), "snap_asym", ASYMMETRIC);
    let g = generate(&path, &Options::default(), Placement::OutDir).unwrap();
    assert!(!g.code.contains("include_bytes!"));
    insta::assert_snapshot!("embedded_out_dir_code", g.code);
    let relative = generate(&path, &Options::default(), Placement::Relative).unwrap();
    assert!(relative.code.contains("include_bytes!(\"snap_asym.blob\")"));
}

#[test]
fn per_tensor_asymmetric_mlp() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate_in(dir.path(), "snap_asym", ASYMMETRIC, &[6, 5, 3]);
    insta::assert_snapshot!("asymmetric_code", g.code);
    insta::assert_snapshot!("asymmetric_manifest", g.blob.manifest);
}

#[test]
fn generation_is_byte_identical_across_directories() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/digits");
    let run = || {
        let dir = tempfile::tempdir().unwrap();
        for f in ["digits.toml", "digits.safetensors"] {
            std::fs::copy(examples.join(f), dir.path().join(f)).unwrap();
        }
        let out = dir.path().join("out");
        let rs = dynq_build::Config::new()
            .out_dir(&out)
            .compile(dir.path().join("digits.toml"))
            .unwrap();
        (
            std::fs::read(&rs).unwrap(),
            std::fs::read(out.join("digits.blob")).unwrap(),
        )
    };
    let (code_a, blob_a) = run();
    let (code_b, blob_b) = run();
    assert!(code_a == code_b, "generated code differs between two runs");
    assert!(blob_a == blob_b, "blob differs between two runs");
    let text = String::from_utf8(code_a).unwrap();
    assert!(!text.contains("/tmp"), "generated code holds a path");
}

#[test]
fn tiny_bert() {
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/bert_logits.toml");
    let g = generate(&toml, &Options::default(), Placement::Relative).unwrap();
    insta::assert_snapshot!("tiny_bert_code", g.code);
    insta::assert_snapshot!("tiny_bert_manifest", g.blob.manifest);
}

#[test]
fn tiny_bert_shared_forward() {
    // The runtime's shared forward: the same module but for the driver call, which passes the
    // sizes as values, and the compile-time check of the runtime's feature.
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/bert_logits.toml");
    let options = Options {
        forward: Some(dynq_build::spec::ForwardKind::Shared),
        ..Options::default()
    };
    let g = generate(&toml, &options, Placement::Relative).unwrap();
    let inlined = generate(&toml, &Options::default(), Placement::Relative).unwrap();
    assert_eq!(g.blob.bytes, inlined.blob.bytes);
    assert!(!g.code.contains("ConstDims") && !g.code.contains("KernelMask"));
    insta::assert_snapshot!("tiny_bert_shared_code", g.code);
    // Not for an MLP: an error that names the key.
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(
        &dir.path().join("snap_asym.safetensors"),
        &mlp_tensors(7, &[6, 5, 3]),
    );
    let mlp = write_toml(dir.path(), "snap_asym", ASYMMETRIC);
    let e = generate(&mlp, &options, Placement::Relative)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "snap_asym.toml: forward: expected \"inlined\" for preset \"mlp\", found \"shared\""
        ),
        "{e}"
    );
}

#[test]
fn tiny_bert_int8_embeddings() {
    // The word table as INT8 rows plus one scale per row (`Table::I8`).
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/bert_int8_embeddings.toml");
    let g = generate(&toml, &Options::default(), Placement::Relative).unwrap();
    insta::assert_snapshot!("int8_embeddings_code", g.code);
    insta::assert_snapshot!("int8_embeddings_manifest", g.blob.manifest);
}

#[test]
fn tiny_mpnet() {
    // A non-BERT family: MPNet's positions after the padding id, no token types, the relative
    // position bias, the RoBERTa-style head, bf16 weights.
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/families/mpnet_logits.toml");
    let g = generate(&toml, &Options::default(), Placement::Relative).unwrap();
    insta::assert_snapshot!("tiny_mpnet_code", g.code);
    insta::assert_snapshot!("tiny_mpnet_manifest", g.blob.manifest);
}

#[test]
fn tiny_electra() {
    // ELECTRA: embeddings narrower than the hidden width and projected.
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/families/electra_pooled.toml");
    let g = generate(&toml, &Options::default(), Placement::Relative).unwrap();
    insta::assert_snapshot!("tiny_electra_code", g.code);
}

/// ModernBERT with every bias: pre-norm layers (the first without an attention norm), rotary
/// tables per attention kind, global and sliding-window layers, the gated FFN, the final norm,
/// and the head with its norm and CLS pooling.
#[test]
fn tiny_modernbert() {
    let toml =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/modernbert/modernbert_bias_logits.toml");
    let g = generate(&toml, &Options::default(), Placement::Relative).unwrap();
    insta::assert_snapshot!("tiny_modernbert_code", g.code);
    insta::assert_snapshot!("tiny_modernbert_manifest", g.blob.manifest);
}

#[test]
fn bidirectional_two_layer_lstm() {
    // Layer 1 kept in f32 shows both kinds of weight views in one recurrent model.
    let dir = tempfile::tempdir().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/rnn");
    std::fs::copy(
        golden.join("lstm_d.safetensors"),
        dir.path().join("lstm_d.safetensors"),
    )
    .unwrap();
    let toml = std::fs::read_to_string(golden.join("lstm_d.toml")).unwrap()
        + "\n[quantize]\nscheme = \"asymmetric\"\nkeep_f32 = [\"rnn.weight_ih_l1\", \"rnn.weight_hh_l1\"]\n";
    let p = dir.path().join("lstm_d.toml");
    std::fs::write(&p, toml).unwrap();
    let g = dynq_build::generate(
        &p,
        &dynq_build::Options::default(),
        dynq_build::Placement::Relative,
    )
    .unwrap();
    insta::assert_snapshot!("lstm_code", g.code);
    insta::assert_snapshot!("lstm_manifest", g.blob.manifest);
}
