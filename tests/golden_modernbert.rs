//! Golden tests of ModernBERT against PyTorch (scripts/make_modernbert_goldens.py): two tiny
//! random `ModernBertForSequenceClassification` checkpoints with odd sizes (hidden 36 and 40,
//! heads of 12 and 8), global and sliding-window layers with short windows (8 and 5 tokens
//! each way), two rotary bases each, no biases (the default) or every bias, mean and CLS head
//! pooling, GELU and tanh-GELU; seven sequences of 1 to 90 tokens padded to 90 with masks,
//! so sequences run past the windows and through both attention paths (one thread per short
//! sequence, query blocks over the threads for long ones).
//!
//! * f32 builds match PyTorch FP32 within 1e-5 relative L2 per sequence;
//! * INT8 builds are no further from PyTorch FP32 than PyTorch's own `quantize_dynamic`
//!   (the mean of the per-sequence errors and the error of all outputs together);
//! * each sequence gives bit-identical results alone, in a ragged batch and in the reversed
//!   batch;
//! * the rotary inverse frequencies are transformers' bit for bit;
//! * built with the runtime's shared forward (compiled once), two of them built inlined give
//!   the same bits.

use std::path::PathBuf;

use dynq_runtime::{BertInput, EncoderModel};
use dynq_tests::{assert_same_bits, mean, read_f32, read_ids, rel_l2, rel_l2_rows, worst};

dynq_macros::dynq_model!(
    "golden/modernbert/modernbert_pooled.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/modernbert/modernbert_pooled.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/modernbert/modernbert_logits.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/modernbert/modernbert_logits.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/modernbert/modernbert_bias_cls.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/modernbert/modernbert_bias_cls.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/modernbert/modernbert_bias_logits.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/modernbert/modernbert_bias_logits.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/modernbert/modernbert_dims.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);

/// Two of the models above with the default inlined forward (sizes as constants): the goldens
/// run the shared forward, the same driver compiled once in the runtime.
mod inlined {
    dynq_macros::dynq_model!(
        "golden/modernbert/modernbert_bias_logits.toml",
        kernels = "native"
    );
    dynq_macros::dynq_model!(
        "golden/modernbert/modernbert_pooled.toml",
        precision = "f32",
        kernels = "native"
    );
}

const SEQ: usize = 90;

fn io(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden/modernbert")
        .join(name)
        .join("io.safetensors")
}

/// The padded batch of one checkpoint.
struct Golden {
    name: &'static str,
    ids: Vec<u32>,
    mask: Vec<u32>,
    batch: usize,
}

fn golden(name: &'static str) -> Golden {
    let (shape, ids) = read_ids(&io(name), "input_ids");
    assert_eq!(shape[1], SEQ);
    Golden {
        name,
        ids,
        mask: read_ids(&io(name), "attention_mask").1,
        batch: shape[0],
    }
}

impl Golden {
    fn padded(&self, b: usize) -> BertInput<'_> {
        let r = b * SEQ..(b + 1) * SEQ;
        BertInput {
            input_ids: &self.ids[r.clone()],
            attention_mask: Some(&self.mask[r]),
            token_type_ids: None,
        }
    }

    fn unpadded(&self, b: usize) -> BertInput<'_> {
        let len = self.mask[b * SEQ..(b + 1) * SEQ]
            .iter()
            .filter(|&&m| m == 1)
            .count();
        BertInput::new(&self.ids[b * SEQ..b * SEQ + len])
    }

    /// Per-sequence relative L2 errors of `m` (padded inputs) against `reference`, and of
    /// all outputs together.
    fn errors<M: EncoderModel>(&self, m: &M, reference: &str) -> (Vec<f64>, f64) {
        let w = M::OUTPUT_SIZE;
        let (_, expected) = read_f32(&io(self.name), reference);
        let mut all = vec![0.0; self.batch * w];
        for (b, out) in all.chunks_exact_mut(w).enumerate() {
            m.forward(&self.padded(b), out).unwrap();
        }
        rel_l2_rows(&all, &expected, w)
    }
}

/// The f32 build within 1e-5 of PyTorch FP32, the INT8 build no further than PyTorch INT8,
/// and every sequence bit-identical alone and in ragged batches.
fn check<A: EncoderModel, B: EncoderModel>(name: &'static str, reference: &str, int8: &A, f32: &B) {
    let g = golden(name);
    let (f, _) = g.errors(f32, reference);
    let (q, q_all) = g.errors(int8, reference);
    let (_, fp32) = read_f32(&io(name), reference);
    let (_, qd) = read_f32(&io(name), &format!("qd_{reference}"));
    let (peer, peer_all) = rel_l2_rows(&qd, &fp32, A::OUTPUT_SIZE);
    println!(
        "{name} {reference}: f32 worst {:.2e}; INT8 all {q_all:.2e} mean {:.2e} worst {:.2e}; PyTorch INT8 all {peer_all:.2e} mean {:.2e} worst {:.2e}",
        worst(&f),
        mean(&q),
        worst(&q),
        mean(&peer),
        worst(&peer)
    );
    assert!(worst(&f) <= 1e-5, "{name} {reference}: f32 build {f:?}");
    assert!(
        q_all <= peer_all && mean(&q) <= mean(&peer),
        "{name} {reference}: INT8 {q:?} against PyTorch INT8 {peer:?}"
    );
    ragged(&g, int8);
    ragged(&g, f32);
}

/// Each unpadded sequence alone equals its padded run (f32 within 1e-6), and its output in
/// a ragged batch, forwards and reversed, is bit-identical to it alone.
fn ragged<M: EncoderModel>(g: &Golden, m: &M) {
    let w = M::OUTPUT_SIZE;
    let inputs: Vec<BertInput<'_>> = (0..g.batch).map(|b| g.unpadded(b)).collect();
    let reversed: Vec<BertInput<'_>> = inputs.iter().rev().copied().collect();
    let (mut batch, mut back) = (vec![0.0; g.batch * w], vec![0.0; g.batch * w]);
    m.forward_batch(&inputs, &mut batch).unwrap();
    m.forward_batch(&reversed, &mut back).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (b, input) in inputs.iter().enumerate() {
        let (mut alone, mut padded) = (vec![0.0; w], vec![0.0; w]);
        m.forward(input, &mut alone).unwrap();
        m.forward(&g.padded(b), &mut padded).unwrap();
        if M::PRECISION == "f32" {
            assert!(rel_l2(&alone, &padded) < 1e-6, "{} sequence {b}", M::NAME);
        }
        assert_eq!(
            bits(&batch[b * w..(b + 1) * w]),
            bits(&alone),
            "{} {b}",
            M::NAME
        );
        let r = g.batch - 1 - b;
        assert_eq!(
            bits(&back[r * w..(r + 1) * w]),
            bits(&alone),
            "{} {b}",
            M::NAME
        );
    }
}

#[test]
fn modernbert_pooled_and_logits() {
    check(
        "modernbert",
        "mean_pooled",
        &TinyModernbertPooled,
        &TinyModernbertPooledF32,
    );
    check(
        "modernbert",
        "logits",
        &TinyModernbertLogits,
        &TinyModernbertLogitsF32,
    );
}

#[test]
fn modernbert_with_biases_cls_and_logits() {
    check(
        "modernbert-bias",
        "cls",
        &TinyModernbertBiasCls,
        &TinyModernbertBiasClsF32,
    );
    check(
        "modernbert-bias",
        "logits",
        &TinyModernbertBiasLogits,
        &TinyModernbertBiasLogitsF32,
    );
}

#[test]
fn the_inlined_forward_gives_the_shared_bits() {
    // Padded with masks, then unpadded, per checkpoint.
    fn both(g: &Golden) -> [Vec<BertInput<'_>>; 2] {
        [
            (0..g.batch).map(|b| g.padded(b)).collect(),
            (0..g.batch).map(|b| g.unpadded(b)).collect(),
        ]
    }
    let (plain, bias) = (golden("modernbert"), golden("modernbert-bias"));
    for inputs in both(&plain) {
        let (a, b) = (&inlined::TinyModernbertPooledF32, &TinyModernbertPooledF32);
        assert_same_bits("modernbert", a, b, &inputs);
    }
    for inputs in both(&bias) {
        let (a, b) = (
            &inlined::TinyModernbertBiasLogits,
            &TinyModernbertBiasLogits,
        );
        assert_same_bits("modernbert-bias", a, b, &inputs);
    }
}

/// `dims = 24`: PyTorch's mean-pooled vector cut to 24 values and L2-normalized.
#[test]
fn matryoshka_dims() {
    let g = golden("modernbert");
    assert_eq!(tiny_modernbert_dims_f32::OUTPUT_SIZE, 24);
    let (_, pooled) = read_f32(&io("modernbert"), "mean_pooled");
    for b in 0..g.batch {
        let mut want: Vec<f32> = pooled[b * 36..b * 36 + 24].to_vec();
        let norm = want
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        for v in &mut want {
            *v = (f64::from(*v) / norm) as f32;
        }
        let got = TinyModernbertDimsF32
            .embed_masked(g.padded(b).input_ids, g.padded(b).attention_mask.unwrap())
            .unwrap();
        assert!(
            rel_l2(&got, &want) <= 1e-5,
            "sequence {b}: {got:?} against {want:?}"
        );
    }
}

/// The rotary tables start from transformers' inverse frequencies: dynq's, recomputed at
/// build time, are the same f32 values.
#[test]
fn rotary_frequencies_match_transformers() {
    for (name, d, global, local) in [
        ("modernbert", 12, 160_000.0, 10_000.0),
        ("modernbert-bias", 8, 80_000.0, 5_000.0),
    ] {
        for (kind, theta) in [("global", global), ("local", local)] {
            let (_, expected) = read_f32(&io(name), &format!("inv_freq_{kind}"));
            let ours = dynq_build::presets::rotary_inverse_frequencies(theta, d);
            assert_eq!(ours, expected, "{name} {kind}");
        }
    }
}

/// A config asking for what dynq does not compute is refused with the key named, never run
/// approximately: rotary scaling, a partial rotary factor, an unknown pooling or activation,
/// `layer_types` of the wrong length, a head width RoPE cannot split.
#[test]
fn configs_dynq_does_not_compute_are_refused() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/modernbert/modernbert");
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let cases: [(&str, serde_json::Value, &str); 8] = [
        (
            "rope_parameters",
            serde_json::json!({"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 160000.0},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
            "key `rope_parameters.full_attention.rope_type`",
        ),
        (
            "rope_scaling",
            serde_json::json!({"type": "dynamic", "factor": 4.0}),
            "key `rope_scaling.type`",
        ),
        (
            "partial_rotary_factor",
            serde_json::json!(0.5),
            "key `partial_rotary_factor`",
        ),
        (
            "classifier_pooling",
            serde_json::json!("max"),
            "key `classifier_pooling`: expected \"cls\" or \"mean\", found \"max\"",
        ),
        (
            "hidden_activation",
            serde_json::json!("silu"),
            "key `hidden_activation`",
        ),
        (
            "classifier_activation",
            serde_json::json!("swish"),
            "key `classifier_activation`",
        ),
        (
            "layer_types",
            serde_json::json!(["full_attention", "sliding_attention"]),
            "key `layer_types`: expected 4 entries",
        ),
        (
            "num_attention_heads",
            serde_json::json!(4),
            "key `hidden_size`",
        ),
    ];
    for (key, value, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut config = base.clone();
        config[key] = value;
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        std::fs::copy(
            src.join("model.safetensors"),
            dir.path().join("model.safetensors"),
        )
        .unwrap();
        let toml = dir.path().join("model.toml");
        std::fs::write(
            &toml,
            "[model]\nname = \"m\"\npreset = \"encoder\"\nweights = \"model.safetensors\"\nconfig = \"config.json\"\n\n[encoder]\nprefix = \"model.\"\noutput = \"logits\"\n",
        )
        .unwrap();
        let options = dynq_build::Options::default();
        let e = match dynq_build::generate(&toml, &options, dynq_build::Placement::Relative) {
            Ok(_) => panic!("{key}: built"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(expected), "{key}: {e}");
        assert!(e.contains("config.json"), "{key}: {e}");
    }
}
