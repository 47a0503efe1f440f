//! The bad-input cases, each defined once: the files of a model directory (the description is
//! always `model.toml`) and the exact message the library gives for them.
//!
//! Three suites run this table: cli/tests/bad_input.rs through the library and the
//! `dynq` command line, and tests/macro-ui/macro_ui.rs through `dynq_model!` (trybuild) for the cases in
//! [`MACRO_CASES`], whose files are committed under tests/macro-ui/ui/bad_input/.
//!
//! Safetensors files are written by hand here (a JSON header and the data), so that a case can
//! put anything in the header: overlapping offsets, unknown dtypes, huge shapes.

// Each suite uses part of the table.
#![allow(dead_code)]

/// Stands for the case's directory in [`Case::message`].
pub const DIR: &str = "$DIR";

/// The cases the macro suite compiles (trybuild), with their files under tests/macro-ui/ui/bad_input/.
pub const MACRO_CASES: [&str; 9] = [
    "toml_wrong_type",
    "missing_weights_file",
    "st_truncated_header",
    "st_invalid_header_json",
    "st_overlapping_offsets",
    "unsupported_dtype",
    "nan_weight",
    "lstm_gate_dimension",
    "bert_config_disagrees",
];

/// One file of a case's directory.
pub enum Content {
    /// A file with these bytes.
    Bytes(Vec<u8>),
    /// A directory where a file is expected (a file that cannot be read, even by root).
    Dir,
}

/// One bad input.
pub struct Case {
    /// A snake_case name, unique in the table.
    pub name: &'static str,
    /// What to write into a fresh directory.
    pub files: Vec<(&'static str, Content)>,
    /// The exact error message, with [`DIR`] for the directory.
    pub message: String,
}

impl Case {
    /// The message for the case written into `dir` (as the path will be shown).
    pub fn message_in(&self, dir: &str) -> String {
        self.message.replace(DIR, dir)
    }

    /// Writes the case's files into `dir`.
    pub fn write(&self, dir: &std::path::Path) {
        for (name, content) in &self.files {
            let p = dir.join(name);
            match content {
                Content::Bytes(b) => std::fs::write(&p, b).expect("write case file"),
                Content::Dir => std::fs::create_dir_all(&p).expect("create case directory"),
            }
        }
    }
}

// ---- safetensors by hand ----------------------------------------------------------------------

/// A tensor to write: name, dtype as the header spells it, shape, bytes.
#[derive(Clone)]
pub struct T {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// An f32 tensor with small deterministic values (distinct per tensor through `seed`).
pub fn f32t(name: &str, shape: &[usize], seed: usize) -> T {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| (((i * 7 + seed * 13) % 17) as f32 - 8.0) / 20.0)
        .collect();
    f32v(name, shape, &values)
}

/// An f32 tensor with the given values.
pub fn f32v(name: &str, shape: &[usize], values: &[f32]) -> T {
    T {
        name: name.into(),
        dtype: "F32",
        shape: shape.to_vec(),
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// An f32 tensor converted to F16 or BF16 (truncating: the values need not round-trip).
pub fn half(t: &T, dtype: &'static str) -> T {
    let bytes = t
        .bytes
        .chunks_exact(4)
        .flat_map(|b| {
            let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let v = f32::from_bits(bits);
            let h: u16 = if dtype == "BF16" {
                (bits >> 16) as u16
            } else {
                f16_bits(v)
            };
            h.to_le_bytes()
        })
        .collect();
    T {
        name: t.name.clone(),
        dtype,
        shape: t.shape.clone(),
        bytes,
    }
}

/// IEEE half bits of a small normal (or zero) f32, truncating the mantissa.
fn f16_bits(v: f32) -> u16 {
    if v == 0.0 {
        return 0;
    }
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mantissa = ((bits >> 13) & 0x3ff) as u16;
    sign | ((exp as u16) << 10) | mantissa
}

/// A header entry: name, dtype, shape, data offsets.
pub fn entry(name: &str, dtype: &str, shape: &[usize], offsets: [usize; 2]) -> String {
    let shape: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!(
        "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
        shape.join(","),
        offsets[0],
        offsets[1]
    )
}

/// A safetensors file from a header's JSON text and the data after it.
pub fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A valid safetensors file holding `tensors`, in order.
pub fn safetensors(tensors: &[T]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for t in tensors {
        let start = data.len();
        data.extend_from_slice(&t.bytes);
        entries.push(entry(&t.name, t.dtype, &t.shape, [start, data.len()]));
    }
    raw_safetensors(&format!("{{{}}}", entries.join(",")), &data)
}

// ---- the models the cases break ---------------------------------------------------------------

/// An MLP 4 -> 3 (relu) -> 2, tensors `net.0` and `net.2`.
pub const MLP_TOML: &str = r#"[model]
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

/// The weights of [`MLP_TOML`].
pub fn mlp_tensors() -> Vec<T> {
    vec![
        f32t("net.0.weight", &[3, 4], 0),
        f32t("net.0.bias", &[3], 1),
        f32t("net.2.weight", &[2, 3], 2),
        f32t("net.2.bias", &[2], 3),
    ]
}

/// A two-layer bidirectional LSTM, input 3, hidden 2, tensors under `rnn.`.
pub const LSTM_TOML: &str = r#"[model]
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

/// [`LSTM_TOML`] as a GRU.
pub fn gru_toml() -> String {
    LSTM_TOML
        .replace("\"lstm\"", "\"gru\"")
        .replace("[lstm]", "[gru]")
}

/// The state dict of `nn.LSTM(3, 2, num_layers=layers, bidirectional=directions == 2)` (a GRU
/// with `gates = 3`).
pub fn rnn_tensors(gates: usize, layers: usize, directions: usize) -> Vec<T> {
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
            let seed = out.len();
            out.push(f32t(&format!("rnn.weight_ih_{s}"), &[g, k], seed));
            out.push(f32t(&format!("rnn.weight_hh_{s}"), &[g, h], seed + 1));
            out.push(f32t(&format!("rnn.bias_ih_{s}"), &[g], seed + 2));
            out.push(f32t(&format!("rnn.bias_hh_{s}"), &[g], seed + 3));
        }
    }
    out
}

/// A one-layer BERT (vocab 10, hidden 4, 2 heads, FFN 8, 8 positions) with a 3-class head.
pub const BERT_TOML: &str = r#"[model]
name = "tiny"
preset = "bert"
weights = "tiny.safetensors"
config = "config.json"

[bert]
prefix = "bert."
output = "logits"
"#;

/// The `config.json` of [`BERT_TOML`].
pub const BERT_CONFIG: &str = r#"{
  "hidden_act": "gelu",
  "hidden_size": 4,
  "id2label": {"0": "a", "1": "b", "2": "c"},
  "intermediate_size": 8,
  "max_position_embeddings": 8,
  "num_attention_heads": 2,
  "num_hidden_layers": 1,
  "type_vocab_size": 2,
  "vocab_size": 10
}
"#;

/// The weights of [`BERT_TOML`], with `layers` encoder layers.
pub fn bert_tensors(layers: usize) -> Vec<T> {
    let mut t = Vec::new();
    let mut add = |name: &str, shape: &[usize]| {
        let seed = t.len();
        t.push(f32t(name, shape, seed));
    };
    add("bert.embeddings.word_embeddings.weight", &[10, 4]);
    add("bert.embeddings.position_embeddings.weight", &[8, 4]);
    add("bert.embeddings.token_type_embeddings.weight", &[2, 4]);
    let linear = |add: &mut dyn FnMut(&str, &[usize]), name: &str, n: usize, k: usize| {
        add(&format!("{name}.weight"), &[n, k]);
        add(&format!("{name}.bias"), &[n]);
    };
    linear(&mut add, "bert.embeddings.LayerNorm", 4, 0);
    for l in 0..layers {
        let b = format!("bert.encoder.layer.{l}");
        for p in ["query", "key", "value"] {
            linear(&mut add, &format!("{b}.attention.self.{p}"), 4, 4);
        }
        linear(&mut add, &format!("{b}.attention.output.dense"), 4, 4);
        linear(&mut add, &format!("{b}.attention.output.LayerNorm"), 4, 0);
        linear(&mut add, &format!("{b}.intermediate.dense"), 8, 4);
        linear(&mut add, &format!("{b}.output.dense"), 4, 8);
        linear(&mut add, &format!("{b}.output.LayerNorm"), 4, 0);
    }
    linear(&mut add, "bert.pooler.dense", 4, 4);
    linear(&mut add, "classifier", 3, 4);
    // LayerNorm weights and biases are vectors: drop the 0 column the helper gave them.
    for x in &mut t {
        if x.shape.last() == Some(&0) {
            let n = x.shape[0];
            *x = f32t(&x.name, &[n], n);
        }
    }
    t
}

fn toml(text: impl Into<String>) -> (&'static str, Content) {
    ("model.toml", Content::Bytes(text.into().into_bytes()))
}

fn weights(bytes: Vec<u8>) -> (&'static str, Content) {
    ("tiny.safetensors", Content::Bytes(bytes))
}

fn config(text: impl Into<String>) -> (&'static str, Content) {
    ("config.json", Content::Bytes(text.into().into_bytes()))
}

/// An MLP case: [`MLP_TOML`] edited by `edit`, over `tensors`.
fn mlp(name: &'static str, toml_text: String, tensors: &[T], message: String) -> Case {
    Case {
        name,
        files: vec![toml(toml_text), weights(safetensors(tensors))],
        message,
    }
}

/// An MLP case whose description is broken: the weights are good.
fn spec(name: &'static str, toml_text: String, message: &str) -> Case {
    mlp(
        name,
        toml_text,
        &mlp_tensors(),
        format!("{DIR}/model.toml:{message}"),
    )
}

/// An MLP case whose weights file is `bytes`.
fn st(name: &'static str, bytes: Vec<u8>, message: &str) -> Case {
    Case {
        name,
        files: vec![toml(MLP_TOML), weights(bytes)],
        message: format!("{DIR}/tiny.safetensors: {message}"),
    }
}

/// An MLP case with these tensors; the message is about `tiny.safetensors`.
fn tensors(name: &'static str, t: &[T], message: &str) -> Case {
    mlp(
        name,
        MLP_TOML.into(),
        t,
        format!("{DIR}/tiny.safetensors: {message}"),
    )
}

fn rnn(name: &'static str, toml_text: String, t: &[T], message: String) -> Case {
    Case {
        name,
        files: vec![toml(toml_text), weights(safetensors(t))],
        message,
    }
}

fn bert(name: &'static str, config_text: &str, t: &[T], message: String) -> Case {
    Case {
        name,
        files: vec![
            toml(BERT_TOML),
            weights(safetensors(t)),
            config(config_text),
        ],
        message,
    }
}

/// The MLP weights with tensor `i` replaced.
fn mlp_with(i: usize, t: T) -> Vec<T> {
    let mut v = mlp_tensors();
    v[i] = t;
    v
}

/// Every case.
pub fn cases() -> Vec<Case> {
    let good = safetensors(&mlp_tensors());
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    // net.0.weight [3, 4] f32 is 48 bytes, net.0.bias [3] 12.
    let offsets = |second: [usize; 2]| {
        let h = format!(
            "{{{},{}}}",
            entry("w", "F32", &[3, 4], [0, 48]),
            entry("b", "F32", &[3], second)
        );
        raw_safetensors(&h, &[0; 60])
    };
    let nan = {
        let mut w = vec![0.5f32; 6];
        w[4] = f32::NAN;
        w
    };
    vec![
        // ---- the description (TOML) ----
        spec(
            "toml_syntax_error",
            MLP_TOML.replace("input_size = 4", "input_size = = 4"),
            "7:14: key `input_size`: extra `=`, expected nothing",
        ),
        spec(
            "toml_unclosed_table",
            MLP_TOML.replace("[mlp]", "[mlp"),
            "6:5: unclosed table, expected `]`",
        ),
        spec(
            "toml_duplicate_key",
            MLP_TOML.replace("input_size = 4", "input_size = 4\ninput_size = 5"),
            "8:1: duplicate key",
        ),
        spec(
            "toml_unknown_key",
            MLP_TOML.replace("[mlp]", "[mlp]\nhidden_size = 3"),
            "7:1: unknown field `hidden_size`, expected `input_size` or `layers`",
        ),
        spec(
            "toml_unknown_section",
            format!("{MLP_TOML}\n[training]\nepochs = 3\n"),
            "13:2: unknown field `training`, expected one of `model`, `mlp`, `bert`, `encoder`, `lstm`, `gru`, `quantize`, `target`",
        ),
        spec(
            "toml_unknown_activation",
            MLP_TOML.replace("\"relu\"", "\"swish\""),
            "9:36: key `activation`: unknown variant `swish`, expected one of `none`, `relu`, `gelu`, `gelu_tanh`, `tanh`, `sigmoid`",
        ),
        spec(
            "toml_unknown_preset",
            MLP_TOML.replace("\"mlp\"", "\"cnn\""),
            "3:10: key `preset`: unknown variant `cnn`, expected one of `mlp`, `bert`, `encoder`, `lstm`, `gru`",
        ),
        spec(
            "toml_unknown_kernel",
            format!("{MLP_TOML}\n[target]\nkernels = [\"sse9\"]\n"),
            "14:12: key `target.kernels`: unknown kernel \"sse9\", expected one of scalar, avx2, amx, avx512vnni, avxvnni, neon_dot, neon_i8mm",
        ),
        spec(
            "toml_shared_forward_of_an_mlp",
            format!("{MLP_TOML}\n[target]\nforward = \"shared\"\n"),
            "14:11: key `target.forward`: expected \"inlined\" for preset \"mlp\", found \"shared\" (the shared forward is for encoders: \"bert\" and \"encoder\")",
        ),
        spec(
            "toml_unknown_weights_storage",
            format!("{MLP_TOML}\n[target]\nweights = \"disk\"\n"),
            "14:11: key `weights`: unknown variant `disk`, expected `embedded` or `file`",
        ),
        spec(
            "toml_wrong_type",
            MLP_TOML.replace("input_size = 4", "input_size = \"4\""),
            "7:14: key `input_size`: invalid type: string \"4\", expected usize",
        ),
        spec(
            "toml_wrong_type_layers",
            MLP_TOML.replace("{ tensor = \"net.2\" }", "\"net.2\""),
            "10:3: invalid type: string \"net.2\", expected a layer like { tensor = \"fc1\", activation = \"relu\" }",
        ),
        spec(
            "toml_negative_size",
            MLP_TOML.replace("input_size = 4", "input_size = -4"),
            "7:14: key `input_size`: invalid value: integer `-4`, expected usize",
        ),
        spec(
            "toml_zero_size",
            MLP_TOML.replace("input_size = 4", "input_size = 0"),
            "7:14: key `mlp.input_size`: expected a positive width, found 0",
        ),
        spec(
            "toml_bad_model_name",
            MLP_TOML.replace("\"tiny\"", "\"Tiny-2\""),
            "2:8: key `model.name`: expected a snake_case Rust identifier such as `digits`, found \"Tiny-2\"",
        ),
        spec(
            "toml_missing_section",
            MLP_TOML.split("[mlp]").next().unwrap().to_string(),
            "3:10: key `model.preset`: preset \"mlp\" needs an [mlp] section with `input_size` and `layers`",
        ),
        spec(
            "toml_missing_model_section",
            MLP_TOML.split("[mlp]").nth(1).map(|s| format!("[mlp]{s}")).unwrap(),
            "1:1: missing field `model`",
        ),
        spec(
            "toml_missing_key",
            MLP_TOML.replace("weights = \"tiny.safetensors\"\n", ""),
            "1:1: missing field `weights`",
        ),
        spec(
            "toml_section_for_another_preset",
            format!("{MLP_TOML}\n[lstm]\ninput_size = 3\nhidden_size = 2\n"),
            "13:1: section [lstm] is for preset \"lstm\", but `model.preset` is \"mlp\"",
        ),
        spec(
            "toml_embeddings_without_table",
            format!("{MLP_TOML}\n[quantize]\nembeddings = \"int8\"\n"),
            "14:14: key `quantize.embeddings`: preset \"mlp\" has no embedding table (only \"bert\" and \"encoder\" have one); remove the key",
        ),
        spec(
            "toml_keep_f32_matches_nothing",
            format!("{MLP_TOML}\n[quantize]\nkeep_f32 = [\"net.9\"]\n"),
            "14:13: key `quantize.keep_f32`: \"net.9\" matches no layer; layers are net.0, net.2",
        ),
        Case {
            name: "toml_not_utf8",
            files: vec![
                // A Latin-1 comment at the end: not UTF-8.
                ("model.toml", Content::Bytes([MLP_TOML.as_bytes(), b"# caf\xe9\n"].concat())),
                weights(good.clone()),
            ],
            message: format!("{DIR}/model.toml: cannot read: stream did not contain valid UTF-8"),
        },
        // ---- missing and unreadable files ----
        Case {
            name: "missing_toml_file",
            files: vec![weights(good.clone())],
            message: format!("{DIR}/model.toml: cannot read: No such file or directory (os error 2)"),
        },
        Case {
            name: "toml_is_a_directory",
            files: vec![("model.toml", Content::Dir), weights(good.clone())],
            message: format!("{DIR}/model.toml: cannot read: Is a directory (os error 21)"),
        },
        Case {
            name: "missing_weights_file",
            files: vec![toml(MLP_TOML)],
            message: format!(
                "{DIR}/tiny.safetensors: cannot open weights: No such file or directory (os error 2)"
            ),
        },
        Case {
            name: "weights_is_a_directory",
            files: vec![toml(MLP_TOML), ("tiny.safetensors", Content::Dir)],
            message: format!("{DIR}/tiny.safetensors: cannot open weights: is a directory"),
        },
        // ---- the safetensors container ----
        st(
            "st_shorter_than_length_prefix",
            b"abc".to_vec(),
            "not a safetensors file: expected at least 8 bytes (the header length), found 3",
        ),
        st(
            "st_empty_file",
            Vec::new(),
            "not a safetensors file: expected at least 8 bytes (the header length), found 0",
        ),
        st(
            "st_truncated_header",
            good[..8 + header_len / 2].to_vec(),
            &format!(
                "truncated safetensors file: the header claims {header_len} bytes but only {} follow the length prefix",
                header_len / 2
            ),
        ),
        st(
            "st_header_longer_than_file",
            {
                let mut b = good.clone();
                b[..8].copy_from_slice(&10_000u64.to_le_bytes());
                b
            },
            &format!(
                "truncated safetensors file: the header claims 10000 bytes but only {} follow the length prefix",
                good.len() - 8
            ),
        ),
        st(
            "st_header_length_u64_max",
            {
                let mut b = good.clone();
                b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                b
            },
            &format!(
                "truncated safetensors file: the header claims 18446744073709551615 bytes but only {} follow the length prefix",
                good.len() - 8
            ),
        ),
        st(
            "st_truncated_data",
            good[..good.len() - 10].to_vec(),
            "tensor `net.2.weight`: data offsets [60, 84] run past the end of the data (82 bytes after the header): truncated file?",
        ),
        st(
            "st_trailing_bytes",
            [good.as_slice(), &[0; 5]].concat(),
            "5 bytes follow the last tensor's data (`net.2.bias` ends at 92 of 97): trailing garbage or a wrong offset",
        ),
        st(
            "st_invalid_header_json",
            raw_safetensors("{nope!!}", &[]),
            "the header is not valid safetensors JSON: key must be a string at line 1 column 2",
        ),
        st(
            "st_header_not_utf8",
            [&6u64.to_le_bytes()[..], b"{\"\xff\xfe\"}"].concat(),
            "the header is not valid UTF-8",
        ),
        st(
            "st_header_not_an_object",
            raw_safetensors("[1, 2, 3]", &[]),
            "the header is not valid safetensors JSON: invalid type: sequence, expected struct HashMetadata at line 1 column 0",
        ),
        st(
            "st_header_missing_offsets",
            raw_safetensors("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", &[0; 4]),
            "the header is not valid safetensors JSON: missing field `data_offsets` at line 1 column 33",
        ),
        st(
            "st_unknown_dtype",
            raw_safetensors(&format!("{{{}}}", entry("w", "F128", &[1], [0, 16])), &[0; 16]),
            "the header is not valid safetensors JSON: unknown variant `F128`, expected one of `BOOL`, `F4`, `F6_E2M3`, `F6_E3M2`, `U8`, `I8`, `F8_E5M2`, `F8_E4M3`, `F8_E8M0`, `F8_E4M3FNUZ`, `F8_E5M2FNUZ`, `I16`, `U16`, `F16`, `BF16`, `I32`, `U32`, `F32`, `C64`, `F64`, `I64`, `U64` at line 1 column 56",
        ),
        st(
            "st_overlapping_offsets",
            offsets([40, 52]),
            "tensor `b`: data offsets [40, 52] overlap the previous tensor `w`, which ends at 48",
        ),
        st(
            "st_gap_between_offsets",
            offsets([50, 62]),
            "tensor `b`: data offsets [50, 62] leave a gap of 2 bytes after the previous tensor `w`, which ends at 48",
        ),
        st(
            "st_reversed_offsets",
            offsets([60, 48]),
            "tensor `b`: data offsets [60, 48] end before they start",
        ),
        st(
            "st_out_of_range_offsets",
            offsets([48, 1_000_000]),
            "tensor `b`: data offsets [48, 1000000] do not match its shape [3] and dtype F32 (12 bytes)",
        ),
        st(
            "st_offsets_past_the_data",
            {
                let h = format!(
                    "{{{},{}}}",
                    entry("w", "F32", &[3, 4], [0, 48]),
                    entry("b", "F32", &[3], [48, 60])
                );
                raw_safetensors(&h, &[0; 50])
            },
            "tensor `b`: data offsets [48, 60] run past the end of the data (50 bytes after the header): truncated file?",
        ),
        st(
            "st_shape_overflow",
            raw_safetensors(
                &format!("{{{}}}", entry("w", "F32", &[1 << 40, 1 << 40], [0, 4])),
                &[0; 4],
            ),
            "tensor `w`: shape [1099511627776, 1099511627776] overflows",
        ),
        // ---- tensors ----
        tensors(
            "unsupported_dtype",
            &mlp_with(0, T { name: "net.0.weight".into(), dtype: "I64", shape: vec![3, 4], bytes: vec![0; 96] }),
            "tensor `net.0.weight`: unsupported dtype I64, expected F32, F16 or BF16",
        ),
        tensors(
            "unsupported_dtype_f64",
            &mlp_with(3, T { name: "net.2.bias".into(), dtype: "F64", shape: vec![2], bytes: vec![0; 16] }),
            "tensor `net.2.bias`: unsupported dtype F64, expected F32, F16 or BF16",
        ),
        tensors(
            "missing_tensor",
            &mlp_tensors()[..2],
            "tensor `net.2.weight`: not found; the file has 2 tensors: net.0.bias, net.0.weight",
        ),
        tensors(
            "missing_bias",
            &[&mlp_tensors()[..3]].concat(),
            "tensor `net.2.bias`: not found; tensors with prefix `net.2`: net.2.weight (set `bias = false` on layer 1 for a layer without bias)",
        ),
        tensors(
            "wrong_shape",
            &mlp_with(0, f32t("net.0.weight", &[3, 5], 0)),
            "tensor `net.0.weight`: expected shape [out, 4] (layer 0 of [mlp] layers, fed by mlp.input_size), found [3, 5]",
        ),
        tensors(
            "wrong_shape_chained",
            &mlp_with(2, f32t("net.2.weight", &[2, 4], 0)),
            "tensor `net.2.weight`: expected shape [out, 3] (layer 1 of [mlp] layers, fed by layer 0), found [2, 4]",
        ),
        tensors(
            "wrong_bias_shape",
            &mlp_with(1, f32t("net.0.bias", &[4], 0)),
            "tensor `net.0.bias`: expected shape [3], found [4]",
        ),
        tensors(
            "nan_weight",
            &mlp_with(2, f32v("net.2.weight", &[2, 3], &nan)),
            "tensor `net.2.weight`: non-finite value NaN at index [1, 1]",
        ),
        tensors(
            "inf_bias",
            &mlp_with(3, f32v("net.2.bias", &[2], &[f32::INFINITY, 0.0])),
            "tensor `net.2.bias`: non-finite value inf at index [0]",
        ),
        tensors(
            "neg_inf_f16_weight",
            &mlp_with(
                0,
                T {
                    name: "net.0.weight".into(),
                    dtype: "F16",
                    shape: vec![3, 4],
                    bytes: (0..12).flat_map(|i| if i == 7 { [0x00, 0xfc] } else { [0x00, 0x3c] }).collect(),
                },
            ),
            "tensor `net.0.weight`: non-finite value -inf at index [1, 3]",
        ),
        // ---- recurrent presets ----
        rnn(
            "lstm_missing_layer",
            LSTM_TOML.into(),
            &rnn_tensors(4, 1, 2),
            format!("{DIR}/tiny.safetensors: tensor `rnn.weight_ih_l1`: not found; tensors with prefix `rnn`: rnn.bias_hh_l0, rnn.bias_hh_l0_reverse, rnn.bias_ih_l0, rnn.bias_ih_l0_reverse, rnn.weight_hh_l0, rnn.weight_hh_l0_reverse, rnn.weight_ih_l0, rnn.weight_ih_l0_reverse (needed for layer 1 of [lstm] (num_layers = 2))"),
        ),
        rnn(
            "lstm_missing_direction",
            LSTM_TOML.into(),
            &rnn_tensors(4, 2, 1),
            format!("{DIR}/tiny.safetensors: tensor `rnn.weight_ih_l0_reverse`: not found; tensors with prefix `rnn`: rnn.bias_hh_l0, rnn.bias_hh_l1, rnn.bias_ih_l0, rnn.bias_ih_l1, rnn.weight_hh_l0, rnn.weight_hh_l1, rnn.weight_ih_l0, rnn.weight_ih_l1 (needed for layer 0, reverse direction of [lstm] (num_layers = 2, bidirectional = true))"),
        ),
        rnn(
            "lstm_gate_dimension",
            LSTM_TOML.into(),
            &rnn_tensors(3, 2, 2),
            format!("{DIR}/tiny.safetensors: tensor `rnn.weight_ih_l0`: expected shape [8, 3] (4 gates (i, f, g, o) x hidden_size 2 by input_size), found [6, 3]; 3 x hidden_size rows is a GRU: is `preset` right?"),
        ),
        rnn(
            "gru_gate_dimension",
            gru_toml(),
            &rnn_tensors(4, 2, 2),
            format!("{DIR}/tiny.safetensors: tensor `rnn.weight_ih_l0`: expected shape [6, 3] (3 gates (r, z, n) x hidden_size 2 by input_size), found [8, 3]; 4 x hidden_size rows is an LSTM: is `preset` right?"),
        ),
        rnn(
            "lstm_extra_layer",
            LSTM_TOML.into(),
            &rnn_tensors(4, 3, 2),
            format!("{DIR}/tiny.safetensors: tensor `rnn.weight_ih_l2`: present in the file, but num_layers = 2 in [lstm] of {DIR}/model.toml; the model would ignore it"),
        ),
        rnn(
            "lstm_hidden_weight_shape",
            LSTM_TOML.into(),
            &{
                let mut t = rnn_tensors(4, 2, 2);
                let i = t.iter().position(|t| t.name == "rnn.weight_hh_l1").unwrap();
                t[i] = f32t("rnn.weight_hh_l1", &[8, 3], 0);
                t
            },
            format!("{DIR}/tiny.safetensors: tensor `rnn.weight_hh_l1`: expected shape [8, 2] (4 gates (i, f, g, o) x hidden_size 2 by hidden_size), found [8, 3]"),
        ),
        rnn(
            "lstm_missing_bias",
            LSTM_TOML.into(),
            &rnn_tensors(4, 2, 2).into_iter().filter(|t| !t.name.contains("bias")).collect::<Vec<_>>(),
            format!("{DIR}/tiny.safetensors: tensor `rnn.bias_ih_l0`: not found; tensors with prefix `rnn`: rnn.weight_hh_l0, rnn.weight_hh_l0_reverse, rnn.weight_hh_l1, rnn.weight_hh_l1_reverse, rnn.weight_ih_l0, rnn.weight_ih_l0_reverse, rnn.weight_ih_l1, rnn.weight_ih_l1_reverse (needed for layer 0 of [lstm] (num_layers = 2); set `bias = false` in [lstm] for a model without biases)"),
        ),
        rnn(
            "lstm_reverse_not_in_toml",
            LSTM_TOML.replace("bidirectional = true", "bidirectional = false"),
            &rnn_tensors(4, 2, 2),
            format!("{DIR}/tiny.safetensors: tensor `rnn.weight_ih_l0_reverse`: present in the file, but bidirectional = false in [lstm] of {DIR}/model.toml; the model would ignore it"),
        ),
        rnn(
            "lstm_bias_not_in_toml",
            format!("{LSTM_TOML}bias = false\n"),
            &rnn_tensors(4, 2, 2),
            format!("{DIR}/tiny.safetensors: tensor `rnn.bias_ih_l0`: present in the file, but bias = false in [lstm] of {DIR}/model.toml; the model would ignore it"),
        ),
        rnn(
            "lstm_section_for_gru",
            LSTM_TOML.replace("[lstm]", "[gru]"),
            &rnn_tensors(4, 2, 2),
            format!("{DIR}/model.toml:6:1: section [gru] is for preset \"gru\", but `model.preset` is \"lstm\""),
        ),
        rnn(
            "lstm_zero_hidden_size",
            LSTM_TOML.replace("hidden_size = 2", "hidden_size = 0"),
            &rnn_tensors(4, 2, 2),
            format!("{DIR}/model.toml:9:15: key `lstm.hidden_size`: expected a positive number, found 0"),
        ),
        // Found by the fuzzer (tests/fuzz.rs): 4 x hidden_size overflowed, and num_layers sized
        // an allocation.
        rnn(
            "gru_huge_hidden_size",
            gru_toml().replace("hidden_size = 2", "hidden_size = 18446744073709551615"),
            &rnn_tensors(3, 2, 2),
            format!("{DIR}/model.toml:9:15: key `gru.hidden_size`: expected at most 4294967296, found 18446744073709551615"),
        ),
        rnn(
            "lstm_huge_num_layers",
            LSTM_TOML.replace("num_layers = 2", "num_layers = 4294967296"),
            &rnn_tensors(4, 2, 2),
            format!("{DIR}/tiny.safetensors: tensor `rnn.weight_ih_l2`: not found; tensors with prefix `rnn`: rnn.bias_hh_l0, rnn.bias_hh_l0_reverse, rnn.bias_hh_l1, rnn.bias_hh_l1_reverse, rnn.bias_ih_l0, rnn.bias_ih_l0_reverse, rnn.bias_ih_l1, rnn.bias_ih_l1_reverse (needed for layer 2 of [lstm] (num_layers = 4294967296))"),
        ),
        rnn(
            "lstm_unknown_key",
            LSTM_TOML.replace("num_layers", "layers"),
            &rnn_tensors(4, 2, 2),
            format!("{DIR}/model.toml:10:1: unknown field `layers`, expected one of `prefix`, `input_size`, `hidden_size`, `num_layers`, `bidirectional`, `bias`, `batch_first`"),
        ),
        rnn(
            "lstm_missing_section",
            LSTM_TOML.split("[lstm]").next().unwrap().into(),
            &rnn_tensors(4, 2, 2),
            format!("{DIR}/model.toml:3:10: key `model.preset`: preset \"lstm\" needs an [lstm] section with `input_size` and `hidden_size`"),
        ),
        rnn(
            "lstm_wrong_type",
            LSTM_TOML.replace("bidirectional = true", "bidirectional = 2"),
            &rnn_tensors(4, 2, 2),
            format!("{DIR}/model.toml:11:17: key `bidirectional`: invalid type: integer `2`, expected a boolean"),
        ),
        // ---- BERT and its config.json ----
        bert(
            "bert_config_disagrees",
            &BERT_CONFIG.replace("\"hidden_size\": 4", "\"hidden_size\": 8"),
            &bert_tensors(1),
            format!("{DIR}/tiny.safetensors: tensor `bert.embeddings.word_embeddings.weight`: expected shape [10, 8], found [10, 4] (as {DIR}/config.json says: vocab_size 10, hidden_size 8, num_hidden_layers 1, intermediate_size 8, max_position_embeddings 8, type_vocab_size 2)"),
        ),
        bert(
            "bert_config_fewer_layers",
            BERT_CONFIG,
            &bert_tensors(2),
            format!("{DIR}/tiny.safetensors: has more encoder layers than num_hidden_layers = 1 in {DIR}/config.json"),
        ),
        bert(
            "bert_config_more_layers",
            &BERT_CONFIG.replace("\"num_hidden_layers\": 1", "\"num_hidden_layers\": 2"),
            &bert_tensors(1),
            format!("{DIR}/tiny.safetensors: tensor `bert.encoder.layer.1.attention.self.query.weight`: not found; the file has 25 tensors: bert.embeddings.LayerNorm.bias, bert.embeddings.LayerNorm.weight, bert.embeddings.position_embeddings.weight, bert.embeddings.token_type_embeddings.weight, bert.embeddings.word_embeddings.weight, bert.encoder.layer.0.attention.output.LayerNorm.bias, bert.encoder.layer.0.attention.output.LayerNorm.weight, bert.encoder.layer.0.attention.output.dense.bias, ... (as {DIR}/config.json says: vocab_size 10, hidden_size 4, num_hidden_layers 2, intermediate_size 8, max_position_embeddings 8, type_vocab_size 2)"),
        ),
        bert(
            "bert_config_labels_disagree",
            &BERT_CONFIG.replace(", \"2\": \"c\"", ""),
            &bert_tensors(1),
            format!("{DIR}/tiny.safetensors: tensor `classifier.weight`: 3 classes, but id2label in {DIR}/config.json names 2"),
        ),
        bert(
            "bert_config_invalid_json",
            "{\"hidden_size\": 4,",
            &bert_tensors(1),
            format!("{DIR}/config.json: not a valid config.json: EOF while parsing a value at line 1 column 18"),
        ),
        bert(
            "bert_config_missing_key",
            &BERT_CONFIG.replace("\"vocab_size\": 10", "\"vocab\": 10"),
            &bert_tensors(1),
            format!("{DIR}/config.json: key `vocab_size`: missing (a BERT config.json has it)"),
        ),
        bert(
            "bert_config_bad_heads",
            &BERT_CONFIG.replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 3"),
            &bert_tensors(1),
            format!("{DIR}/config.json: key `hidden_size`: expected a positive multiple of num_attention_heads (3), found 4"),
        ),
        // ---- encoder families: a checkpoint that is not what the family computes ----
        bert(
            "encoder_model_type_disagrees",
            &BERT_CONFIG.replace("{\n", "{\n  \"model_type\": \"roberta\",\n"),
            &bert_tensors(1),
            format!("{DIR}/config.json: key `model_type`: \"roberta\" is the RoBERTa family, but the description says family \"bert\"; a RoBERTa checkpoint read as BERT would compute something else: write preset = \"encoder\" and an [encoder] section with family = \"roberta\""),
        ),
        bert(
            "encoder_unknown_model_type",
            &BERT_CONFIG.replace("{\n", "{\n  \"model_type\": \"gpt2\",\n"),
            &bert_tensors(1),
            format!("{DIR}/config.json: key `model_type`: \"gpt2\" is not a family dynq compiles; supported model types: \"bert\", \"roberta\", \"xlm-roberta\", \"distilbert\", \"mpnet\", \"electra\", \"modernbert\""),
        ),
        bert(
            "encoder_leftover_tensor",
            BERT_CONFIG,
            &{
                let mut t = bert_tensors(1);
                t.push(f32t("bert.encoder.relative_attention_bias.weight", &[32, 2], 3));
                t
            },
            format!("{DIR}/tiny.safetensors: tensor `bert.encoder.relative_attention_bias.weight`: not part of the BERT encoder as {DIR}/config.json describes it (1 such tensor): is this checkpoint of another family?"),
        ),
        Case {
            name: "encoder_unknown_family",
            files: vec![
                toml(BERT_TOML.replace("preset = \"bert\"", "preset = \"encoder\"").replace("[bert]", "[encoder]\nfamily = \"gpt\"")),
                weights(safetensors(&bert_tensors(1))),
                config(BERT_CONFIG),
            ],
            message: format!("{DIR}/model.toml:8:10: key `encoder.family`: unknown family \"gpt\", expected one of \"bert\", \"roberta\", \"xlm-roberta\", \"distilbert\", \"mpnet\", \"electra\", \"modernbert\""),
        },
        Case {
            name: "encoder_family_without_model_type",
            files: vec![
                toml(BERT_TOML.replace("preset = \"bert\"", "preset = \"encoder\"").replace("[bert]", "[encoder]")),
                weights(safetensors(&bert_tensors(1))),
                config(BERT_CONFIG),
            ],
            message: format!("{DIR}/model.toml:7:1: key `encoder.family`: {DIR}/config.json has no `model_type`; name the family, one of \"bert\", \"roberta\", \"xlm-roberta\", \"distilbert\", \"mpnet\", \"electra\", \"modernbert\""),
        },
        Case {
            name: "bert_unknown_embeddings",
            files: vec![
                toml(format!("{BERT_TOML}\n[quantize]\nembeddings = \"int4\"\n")),
                weights(safetensors(&bert_tensors(1))),
                config(BERT_CONFIG),
            ],
            message: format!("{DIR}/model.toml:12:14: key `embeddings`: unknown variant `int4`, expected one of `int8`, `f16`, `f32`"),
        },
        Case {
            name: "bert_missing_config",
            files: vec![toml(BERT_TOML), weights(safetensors(&bert_tensors(1)))],
            message: format!("{DIR}/config.json: cannot read: No such file or directory (os error 2)"),
        },
        Case {
            name: "bert_config_is_a_directory",
            files: vec![toml(BERT_TOML), weights(safetensors(&bert_tensors(1))), ("config.json", Content::Dir)],
            message: format!("{DIR}/config.json: cannot read: Is a directory (os error 21)"),
        },
    ]
}

/// Good models next to the cases: each must generate (so a case fails for its one fault).
pub fn controls() -> Vec<Case> {
    vec![
        mlp(
            "control_mlp",
            MLP_TOML.into(),
            &mlp_tensors(),
            String::new(),
        ),
        rnn(
            "control_lstm",
            LSTM_TOML.into(),
            &rnn_tensors(4, 2, 2),
            String::new(),
        ),
        rnn(
            "control_gru",
            gru_toml(),
            &rnn_tensors(3, 2, 2),
            String::new(),
        ),
        bert("control_bert", BERT_CONFIG, &bert_tensors(1), String::new()),
        // Every storage of the word table.
        Case {
            name: "control_bert_embeddings",
            files: vec![
                toml(format!("{BERT_TOML}\n[quantize]\nembeddings = \"int8\"\n")),
                weights(safetensors(&bert_tensors(1))),
                config(BERT_CONFIG),
            ],
            message: String::new(),
        },
        Case {
            name: "control_bert_f32_embeddings",
            files: vec![
                toml(format!("{BERT_TOML}\n[quantize]\nembeddings = \"f32\"\n")),
                weights(safetensors(&bert_tensors(1))),
                config(BERT_CONFIG),
            ],
            message: String::new(),
        },
        // f16 and bf16 weights are read; an unused int64 tensor (position ids) is ignored.
        mlp(
            "control_half_precision",
            MLP_TOML.into(),
            &{
                let mut t = mlp_tensors();
                t[0] = half(&t[0], "F16");
                t[2] = half(&t[2], "BF16");
                t.push(T {
                    name: "position_ids".into(),
                    dtype: "I64",
                    shape: vec![2],
                    bytes: vec![0; 16],
                });
                t
            },
            String::new(),
        ),
    ]
}
