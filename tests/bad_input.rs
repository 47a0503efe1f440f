//! Bad input through the library: every case gives a clear message naming the file and the
//! thing at fault, with expected and found values; never a panic.

use std::path::{Path, PathBuf};

use dynq_build::{generate, Options, Placement};
use dynq_tests::{mlp_tensors, write_safetensors, write_toml, RawTensor};
use safetensors::Dtype;

const TOML: &str = r#"[model]
name = "tiny"
preset = "mlp"
weights = "tiny.safetensors"

[mlp]
input_size = 4
layers = [
  { tensor = "net.0", activation = "relu" },
  { tensor = "net.2" },
]
"#;

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(tensors: &[RawTensor]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_safetensors(&dir.path().join("tiny.safetensors"), tensors);
        Case { dir }
    }

    fn good() -> Self {
        Case::new(&mlp_tensors(1, &[4, 3, 2]))
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn run(&self, toml: &str) -> Result<dynq_build::Generated, String> {
        let p = write_toml(self.dir.path(), "tiny", toml);
        generate(&p, &Options::default(), Placement::Relative).map_err(|e| e.to_string())
    }

    fn err(&self, toml: &str) -> String {
        match self.run(toml) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn good_model_generates() {
    assert!(Case::good().run(TOML).is_ok());
}

#[test]
fn toml_syntax_error() {
    let c = Case::good();
    let e = c.err(&TOML.replace("input_size = 4", "input_size = = 4"));
    assert_eq!(
        e,
        format!(
            "{}:7:14: key `input_size`: extra `=`, expected nothing",
            shown(&c.path("tiny.toml"))
        )
    );
}

#[test]
fn unknown_key() {
    let c = Case::good();
    let e = c.err(&TOML.replace("[mlp]", "[mlp]\nhidden_size = 3"));
    assert_eq!(
        e,
        format!(
            "{}:7:1: unknown field `hidden_size`, expected `input_size` or `layers`",
            shown(&c.path("tiny.toml"))
        )
    );
}

#[test]
fn unknown_value() {
    let c = Case::good();
    let e = c.err(&TOML.replace("\"relu\"", "\"swish\""));
    assert_eq!(
        e,
        format!(
            "{}:9:36: key `activation`: unknown variant `swish`, expected one of `none`, `relu`, `gelu`, `gelu_tanh`, `tanh`, `sigmoid`",
            shown(&c.path("tiny.toml"))
        )
    );
}

#[test]
fn missing_weights_file() {
    let c = Case::good();
    let e = c.err(&TOML.replace("tiny.safetensors", "missing.safetensors"));
    assert_eq!(
        e,
        format!(
            "{}: cannot open weights: No such file or directory (os error 2)",
            shown(&c.path("missing.safetensors"))
        )
    );
}

#[test]
fn missing_tensor() {
    let c = Case::good();
    let e = c.err(&TOML.replace("net.2", "net.3"));
    assert_eq!(
        e,
        format!(
            "{}: tensor `net.3.weight`: not found; the file has 4 tensors: net.0.bias, net.0.weight, net.2.bias, net.2.weight",
            shown(&c.path("tiny.safetensors"))
        )
    );
}

#[test]
fn missing_bias_suggests_bias_false() {
    let mut t = mlp_tensors(1, &[4, 3, 2]);
    t.retain(|t| t.name != "net.2.bias");
    let e = Case::new(&t).err(TOML);
    assert!(e.ends_with("tensor `net.2.bias`: not found; tensors with prefix `net.2`: net.2.weight (set `bias = false` on layer 1 for a layer without bias)"), "{e}");
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let mut t = mlp_tensors(1, &[4, 3, 2]);
    t[0] = RawTensor::f32("net.0.weight", &[3, 5], &[0.1; 15]);
    let c = Case::new(&t);
    let e = c.err(TOML);
    assert_eq!(
        e,
        format!(
            "{}: tensor `net.0.weight`: expected shape [out, 4] (layer 0 of [mlp] layers, fed by mlp.input_size), found [3, 5]",
            shown(&c.path("tiny.safetensors"))
        )
    );
}

#[test]
fn wrong_bias_shape() {
    let mut t = mlp_tensors(1, &[4, 3, 2]);
    t[1] = RawTensor::f32("net.0.bias", &[4], &[0.1; 4]);
    let e = Case::new(&t).err(TOML);
    assert!(
        e.ends_with("tensor `net.0.bias`: expected shape [3], found [4]"),
        "{e}"
    );
}

#[test]
fn nan_weight_names_the_index() {
    let mut t = mlp_tensors(1, &[4, 3, 2]);
    let mut w = vec![0.5f32; 6];
    w[4] = f32::NAN;
    t[2] = RawTensor::f32("net.2.weight", &[2, 3], &w);
    let e = Case::new(&t).err(TOML);
    assert!(
        e.ends_with("tensor `net.2.weight`: non-finite value NaN at index [1, 1]"),
        "{e}"
    );
    let mut t = mlp_tensors(1, &[4, 3, 2]);
    t[3] = RawTensor::f32("net.2.bias", &[2], &[f32::INFINITY, 0.0]);
    let e = Case::new(&t).err(TOML);
    assert!(
        e.ends_with("tensor `net.2.bias`: non-finite value inf at index [0]"),
        "{e}"
    );
}

#[test]
fn unsupported_dtype() {
    let mut t = mlp_tensors(1, &[4, 3, 2]);
    t[0] = RawTensor {
        name: "net.0.weight".into(),
        dtype: Dtype::I64,
        shape: vec![3, 4],
        bytes: vec![0; 96],
    };
    let e = Case::new(&t).err(TOML);
    assert!(
        e.ends_with("tensor `net.0.weight`: unsupported dtype I64, expected F32, F16 or BF16"),
        "{e}"
    );
}

#[test]
fn f16_bf16_accepted_and_unused_int64_ignored() {
    let mut t = mlp_tensors(1, &[4, 3, 2]);
    let to_half = |t: &RawTensor, bf: bool| RawTensor {
        name: t.name.clone(),
        dtype: if bf { Dtype::BF16 } else { Dtype::F16 },
        shape: t.shape.clone(),
        bytes: t
            .bytes
            .chunks_exact(4)
            .flat_map(|b| {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if bf {
                    half::bf16::from_f32(v).to_le_bytes()
                } else {
                    half::f16::from_f32(v).to_le_bytes()
                }
            })
            .collect(),
    };
    t[0] = to_half(&t[0], false);
    t[2] = to_half(&t[2], true);
    t.push(RawTensor {
        name: "position_ids".into(),
        dtype: Dtype::I64,
        shape: vec![2],
        bytes: vec![0; 16],
    });
    assert!(Case::new(&t).run(TOML).is_ok());
}

#[test]
fn truncated_safetensors_file() {
    let c = Case::good();
    let p = c.path("tiny.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let e = c.err(TOML);
    assert_eq!(
        e,
        format!(
            "{}: tensor `net.2.weight`: data offsets [68, 92] run past the end of the data (82 bytes after the header): truncated file?",
            shown(&p)
        )
    );
}

#[test]
fn header_longer_than_file() {
    let c = Case::good();
    let p = c.path("tiny.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[..8].copy_from_slice(&10_000u64.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = c.err(TOML);
    assert_eq!(
        e,
        format!(
            "{}: truncated safetensors file: the header claims 10000 bytes but only {} follow the length prefix",
            shown(&p),
            bytes.len() - 8
        )
    );
}

#[test]
fn file_shorter_than_length_prefix() {
    let c = Case::good();
    let p = c.path("tiny.safetensors");
    std::fs::write(&p, b"abc").unwrap();
    let e = c.err(TOML);
    assert_eq!(
        e,
        format!(
            "{}: not a safetensors file: expected at least 8 bytes (the header length), found 3",
            shown(&p)
        )
    );
}

#[test]
fn invalid_header_json() {
    let c = Case::good();
    let p = c.path("tiny.safetensors");
    let mut bytes = 8u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{nope!!}");
    std::fs::write(&p, &bytes).unwrap();
    let e = c.err(TOML);
    assert!(
        e.starts_with(&format!(
            "{}: the header is not valid safetensors JSON",
            shown(&p)
        )),
        "{e}"
    );
}

#[test]
fn keep_f32_typo_is_an_error() {
    let c = Case::good();
    let e = c.err(&format!("{TOML}\n[quantize]\nkeep_f32 = [\"net.9\"]\n"));
    assert_eq!(
        e,
        format!(
            "{}:14:13: key `quantize.keep_f32`: \"net.9\" matches no layer; layers are net.0, net.2",
            shown(&c.path("tiny.toml"))
        )
    );
}

#[test]
fn missing_toml_file() {
    let c = Case::good();
    let p = c.path("absent.toml");
    let e = generate(&p, &Options::default(), Placement::Relative)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            shown(&p)
        )
    );
}

// ---- recurrent presets ----------------------------------------------------------------------

const LSTM_TOML: &str = r#"[model]
name = "tiny"
preset = "lstm"
weights = "tiny.safetensors"

[lstm]
prefix = "rnn."
input_size = 3
hidden_size = 2
num_layers = 2
bidirectional = true
"#;

/// The state dict of `nn.LSTM(3, 2, num_layers=layers, bidirectional=...)` (or a GRU with
/// `gates = 3`).
fn rnn_tensors(gates: usize, layers: usize, directions: usize, bias: bool) -> Vec<RawTensor> {
    let h = 2;
    let mut out = Vec::new();
    for l in 0..layers {
        let k = if l == 0 { 3 } else { directions * h };
        for d in 0..directions {
            let s = if d == 0 {
                format!("l{l}")
            } else {
                format!("l{l}_reverse")
            };
            let g = gates * h;
            out.push(RawTensor::f32(
                &format!("rnn.weight_ih_{s}"),
                &[g, k],
                &vec![0.1; g * k],
            ));
            out.push(RawTensor::f32(
                &format!("rnn.weight_hh_{s}"),
                &[g, h],
                &vec![0.2; g * h],
            ));
            if bias {
                out.push(RawTensor::f32(
                    &format!("rnn.bias_ih_{s}"),
                    &[g],
                    &vec![0.3; g],
                ));
                out.push(RawTensor::f32(
                    &format!("rnn.bias_hh_{s}"),
                    &[g],
                    &vec![0.4; g],
                ));
            }
        }
    }
    out
}

#[test]
fn rnn_good_model_generates() {
    let g = Case::new(&rnn_tensors(4, 2, 2, true))
        .run(LSTM_TOML)
        .unwrap();
    assert_eq!(g.model.linears().len(), 8);
    let gru = LSTM_TOML
        .replace("\"lstm\"", "\"gru\"")
        .replace("[lstm]", "[gru]");
    assert!(Case::new(&rnn_tensors(3, 2, 2, true)).run(&gru).is_ok());
}

#[test]
fn rnn_missing_layer() {
    let c = Case::new(&rnn_tensors(4, 1, 2, true));
    let e = c.err(LSTM_TOML);
    assert!(
        e.starts_with(&format!(
            "{}: tensor `rnn.weight_ih_l1`: not found; tensors with prefix `rnn`: ",
            shown(&c.path("tiny.safetensors"))
        )),
        "{e}"
    );
    assert!(
        e.ends_with("(needed for layer 1 of [lstm] (num_layers = 2))"),
        "{e}"
    );
}

#[test]
fn rnn_missing_reverse_direction() {
    let e = Case::new(&rnn_tensors(4, 2, 1, true)).err(LSTM_TOML);
    assert!(
        e.contains("tensor `rnn.weight_ih_l0_reverse`: not found"),
        "{e}"
    );
    assert!(
        e.ends_with("(needed for layer 0, reverse direction of [lstm] (num_layers = 2, bidirectional = true))"),
        "{e}"
    );
}

#[test]
fn rnn_gate_dimension_is_checked() {
    // GRU weights (3H rows) under preset = "lstm" (4H expected).
    let e = Case::new(&rnn_tensors(3, 2, 2, true)).err(LSTM_TOML);
    assert!(
        e.ends_with("tensor `rnn.weight_ih_l0`: expected shape [8, 3] (4 gates (i, f, g, o) x hidden_size 2 by input_size), found [6, 3]; 3 x hidden_size rows is a GRU: is `preset` right?"),
        "{e}"
    );
    let mut t = rnn_tensors(4, 2, 2, true);
    t.retain(|t| t.name != "rnn.weight_hh_l1");
    t.push(RawTensor::f32("rnn.weight_hh_l1", &[8, 3], &[0.1; 24]));
    let e = Case::new(&t).err(LSTM_TOML);
    assert!(
        e.ends_with("tensor `rnn.weight_hh_l1`: expected shape [8, 2] (4 gates (i, f, g, o) x hidden_size 2 by hidden_size), found [8, 3]"),
        "{e}"
    );
}

#[test]
fn rnn_tensors_the_toml_does_not_cover_are_errors() {
    let c = Case::new(&rnn_tensors(4, 3, 2, true));
    let e = c.err(LSTM_TOML);
    assert_eq!(
        e,
        format!(
            "{}: tensor `rnn.weight_ih_l2`: present in the file, but num_layers = 2 in [lstm] of {}; the model would ignore it",
            shown(&c.path("tiny.safetensors")),
            shown(&c.path("tiny.toml"))
        )
    );
    let e = Case::new(&rnn_tensors(4, 2, 2, true)).err(&LSTM_TOML.replace("true", "false"));
    assert!(
        e.contains(
            "tensor `rnn.weight_ih_l0_reverse`: present in the file, but bidirectional = false"
        ),
        "{e}"
    );
    let e = Case::new(&rnn_tensors(4, 2, 2, true)).err(&format!("{LSTM_TOML}bias = false\n"));
    assert!(
        e.contains("tensor `rnn.bias_ih_l0`: present in the file, but bias = false"),
        "{e}"
    );
}

#[test]
fn rnn_missing_bias_suggests_bias_false() {
    let e = Case::new(&rnn_tensors(4, 2, 2, false)).err(LSTM_TOML);
    assert!(e.contains("tensor `rnn.bias_ih_l0`: not found"), "{e}");
    assert!(
        e.ends_with("; set `bias = false` in [lstm] for a model without biases)"),
        "{e}"
    );
}

#[test]
fn rnn_section_and_sizes_are_checked() {
    let c = Case::new(&rnn_tensors(4, 2, 2, true));
    let e = c.err(&LSTM_TOML.replace("[lstm]", "[gru]"));
    assert_eq!(
        e,
        format!(
            "{}:6:1: section [gru] is for preset \"gru\", but `model.preset` is \"lstm\"",
            shown(&c.path("tiny.toml"))
        )
    );
    let e = c.err(&LSTM_TOML.replace("hidden_size = 2", "hidden_size = 0"));
    assert!(
        e.ends_with("key `lstm.hidden_size`: expected a positive number, found 0"),
        "{e}"
    );
    let e = c.err(&LSTM_TOML.replace("bidirectional = true", "bidirectional = 2"));
    assert!(
        e.contains("key `bidirectional`: invalid type: integer `2`, expected a boolean"),
        "{e}"
    );
    let e = c.err(&LSTM_TOML.replace("num_layers", "layers"));
    assert!(e.contains("unknown field `layers`"), "{e}");
    let e = c.err(&LSTM_TOML.replace("[lstm]", "[nothing]"));
    assert!(e.contains("unknown field `nothing`"), "{e}");
}
