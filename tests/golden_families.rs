//! Golden tests of the encoder families against PyTorch (scripts/make_family_goldens.py):
//! tiny random RoBERTa, XLM-R, DistilBERT, MPNet and ELECTRA checkpoints with odd sizes (hidden
//! 36 or 40, heads of 12 or 8, vocabularies 97-103, ELECTRA's embeddings 24 wide and projected),
//! twelve sequences of 1 to 30 tokens padded to 30 with attention masks, pooled and
//! logits heads, saved as their `*For*` checkpoints (with the prefix) and, for XLM-R and MPNet,
//! as base models without the prefix in f16 and f32 (MPNet's full checkpoint is bf16).
//!
//! * f32 builds match PyTorch FP32 within 1e-5 relative L2 per sequence;
//! * INT8 builds are no further from PyTorch FP32 than PyTorch's own `quantize_dynamic` on the
//!   same inputs: per family and head, the mean of the per-sequence errors and the error of
//!   all twelve outputs taken together. (The worst single sequence is printed, not asserted:
//!   these random heads give logits near zero, where one sequence's relative error is noise
//!   for both engines: dynq and PyTorch trade places on it from one random checkpoint to the
//!   next.)
//!
//! The goldens are built with the runtime's shared forward, compiled once for every model (the
//! inlined forward, instantiated per model and kernel, made this file's test binary the
//! slowest to compile); `the_inlined_forward_gives_the_shared_bits` holds two of them, built
//! inlined, to the same bits.

use std::path::PathBuf;

use dynq_runtime::BertInput;
use dynq_tests::{assert_same_bits, mean, read_f32, read_ids, rel_l2, rel_l2_rows, worst};

dynq_macros::dynq_model!(
    "golden/families/roberta_pooled.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/roberta_pooled.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/roberta_logits.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/roberta_logits.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/xlm_roberta_pooled.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/xlm_roberta_pooled.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/xlm_roberta_logits.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/xlm_roberta_logits.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/distilbert_pooled.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/distilbert_pooled.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/distilbert_logits.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/distilbert_logits.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/mpnet_pooled.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/mpnet_pooled.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/mpnet_logits.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/mpnet_logits.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/electra_pooled.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/electra_pooled.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/electra_logits.toml",
    kernels = "native",
    forward = "shared"
);
dynq_macros::dynq_model!(
    "golden/families/electra_logits.toml",
    precision = "f32",
    kernels = "native",
    forward = "shared"
);

/// Two of the models above with the default inlined forward (sizes as constants), for
/// `the_inlined_forward_gives_the_shared_bits`: MPNet's relative position bias, ELECTRA's
/// embedding projection, INT8 and f32. The goldens run the shared forward: the same driver
/// (`dynq_runtime::models::encoder::forward`), compiled once in the runtime.
mod inlined {
    dynq_macros::dynq_model!("golden/families/mpnet_logits.toml", kernels = "native");
    dynq_macros::dynq_model!(
        "golden/families/electra_pooled.toml",
        precision = "f32",
        kernels = "native"
    );
}

const SEQ: usize = 30;

/// The padded batch of one family and PyTorch's outputs.
struct Golden {
    family: &'static str,
    ids: Vec<u32>,
    mask: Vec<u32>,
    types: Option<Vec<u32>>,
    batch: usize,
}

fn io(family: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden/families")
        .join(family)
        .join("io.safetensors")
}

fn golden(family: &'static str) -> Golden {
    let path = io(family);
    let (shape, ids) = read_ids(&path, "input_ids");
    assert_eq!(shape[1], SEQ);
    let has_types = safetensors::SafeTensors::deserialize(&std::fs::read(&path).unwrap())
        .unwrap()
        .names()
        .contains(&"token_type_ids");
    Golden {
        family,
        ids,
        mask: read_ids(&path, "attention_mask").1,
        types: has_types.then(|| read_ids(&path, "token_type_ids").1),
        batch: shape[0],
    }
}

impl Golden {
    fn input(&self, b: usize) -> BertInput<'_> {
        let r = b * SEQ..(b + 1) * SEQ;
        BertInput {
            input_ids: &self.ids[r.clone()],
            attention_mask: Some(&self.mask[r.clone()]),
            token_type_ids: self.types.as_ref().map(|t| &t[r]),
        }
    }

    fn len(&self, b: usize) -> usize {
        self.mask[b * SEQ..(b + 1) * SEQ]
            .iter()
            .filter(|&&m| m == 1)
            .count()
    }

    /// Relative L2 error per sequence of `f` against `reference` (`width` values each), and of
    /// all sequences together.
    fn errors(
        &self,
        reference: &str,
        width: usize,
        f: &dyn Fn(&BertInput<'_>, &mut [f32]),
    ) -> (Vec<f64>, f64) {
        let (_, expected) = read_f32(&io(self.family), reference);
        let mut all = vec![0.0; self.batch * width];
        for (b, out) in all.chunks_exact_mut(width).enumerate() {
            f(&self.input(b), out);
        }
        rel_l2_rows(&all, &expected, width)
    }

    /// PyTorch `quantize_dynamic`'s errors, as [`Self::errors`].
    fn peer_errors(&self, reference: &str, width: usize) -> (Vec<f64>, f64) {
        let (_, fp32) = read_f32(&io(self.family), reference);
        let (_, qd) = read_f32(&io(self.family), &format!("qd_{reference}"));
        rel_l2_rows(&qd, &fp32, width)
    }
}

/// One family and head: the f32 build within 1e-5, the INT8 build at or below PyTorch INT8.
fn check(
    family: &'static str,
    reference: &str,
    width: usize,
    f32_build: &dyn Fn(&BertInput<'_>, &mut [f32]),
    int8_build: &dyn Fn(&BertInput<'_>, &mut [f32]),
) {
    let g = golden(family);
    let (f, _) = g.errors(reference, width, f32_build);
    let (q, q_all) = g.errors(reference, width, int8_build);
    let (peer, peer_all) = g.peer_errors(reference, width);
    println!(
        "{family} {reference}: f32 worst {:.2e}; INT8 all {q_all:.2e} mean {:.2e} worst {:.2e}; PyTorch INT8 all {peer_all:.2e} mean {:.2e} worst {:.2e}",
        worst(&f),
        mean(&q),
        worst(&q),
        mean(&peer),
        worst(&peer)
    );
    assert!(
        worst(&f) <= 1e-5,
        "{family} {reference}: f32 build {f:?} > 1e-5"
    );
    assert!(
        q_all <= peer_all && mean(&q) <= mean(&peer),
        "{family} {reference}: INT8 {q:?} against PyTorch INT8 {peer:?}"
    );
}

macro_rules! family_test {
    ($test:ident, $family:literal, $pooled:ident, $pooled32:ident, $logits:ident, $logits32:ident, $labels:literal) => {
        #[test]
        fn $test() {
            let h = $pooled::HIDDEN_SIZE;
            check(
                $family,
                "mean_pooled",
                h,
                &|i, o| $pooled32.forward(i, o).unwrap(),
                &|i, o| $pooled.forward(i, o).unwrap(),
            );
            check(
                $family,
                "logits",
                $labels,
                &|i, o| $logits32.forward(i, o).unwrap(),
                &|i, o| $logits.forward(i, o).unwrap(),
            );
            // Unpadded, each sequence alone gives its padded result.
            let g = golden($family);
            for b in 0..g.batch {
                let full = g.input(b);
                let len = g.len(b);
                let short = BertInput {
                    input_ids: &full.input_ids[..len],
                    attention_mask: None,
                    token_type_ids: full.token_type_ids.map(|t| &t[..len]),
                };
                let (mut a, mut p) = (vec![0.0; h], vec![0.0; h]);
                $pooled32.forward(&full, &mut a).unwrap();
                $pooled32.forward(&short, &mut p).unwrap();
                assert!(rel_l2(&a, &p) < 1e-6, "{} sequence {b}", $family);
            }
            // Unpadded and ragged, all sequences as one batch (and in reverse order): each
            // output is bit-identical to the sequence run alone, INT8 and f32, both heads.
            let shorts: Vec<BertInput<'_>> = (0..g.batch)
                .map(|b| {
                    let full = g.input(b);
                    let len = g.len(b);
                    BertInput {
                        input_ids: &full.input_ids[..len],
                        attention_mask: None,
                        token_type_ids: full.token_type_ids.map(|t| &t[..len]),
                    }
                })
                .collect();
            let reversed: Vec<BertInput<'_>> = shorts.iter().rev().copied().collect();
            fn ragged<M: dynq_runtime::EncoderModel>(
                family: &str,
                m: &M,
                inputs: &[BertInput<'_>],
                reversed: &[BertInput<'_>],
            ) {
                let w = M::OUTPUT_SIZE;
                let mut batch = vec![0.0; inputs.len() * w];
                m.forward_batch(inputs, &mut batch).unwrap();
                let mut back = vec![0.0; inputs.len() * w];
                m.forward_batch(reversed, &mut back).unwrap();
                let n = inputs.len();
                for (b, input) in inputs.iter().enumerate() {
                    let mut alone = vec![0.0; w];
                    m.forward(input, &mut alone).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&batch[b * w..(b + 1) * w]),
                        bits(&alone),
                        "{family} {}: sequence {b} in the batch",
                        M::NAME
                    );
                    let r = n - 1 - b;
                    assert_eq!(
                        bits(&back[r * w..(r + 1) * w]),
                        bits(&alone),
                        "{family} {}: sequence {b} in the reversed batch",
                        M::NAME
                    );
                }
            }
            ragged($family, &$pooled, &shorts, &reversed);
            ragged($family, &$pooled32, &shorts, &reversed);
            ragged($family, &$logits, &shorts, &reversed);
            ragged($family, &$logits32, &shorts, &reversed);
        }
    };
}

family_test!(
    roberta,
    "roberta",
    TinyRobertaPooled,
    TinyRobertaPooledF32,
    TinyRobertaLogits,
    TinyRobertaLogitsF32,
    3
);
family_test!(
    xlm_roberta,
    "xlm-roberta",
    TinyXlmRobertaPooled,
    TinyXlmRobertaPooledF32,
    TinyXlmRobertaLogits,
    TinyXlmRobertaLogitsF32,
    2
);
family_test!(
    distilbert,
    "distilbert",
    TinyDistilbertPooled,
    TinyDistilbertPooledF32,
    TinyDistilbertLogits,
    TinyDistilbertLogitsF32,
    3
);
family_test!(
    mpnet,
    "mpnet",
    TinyMpnetPooled,
    TinyMpnetPooledF32,
    TinyMpnetLogits,
    TinyMpnetLogitsF32,
    2
);
family_test!(
    electra,
    "electra",
    TinyElectraPooled,
    TinyElectraPooledF32,
    TinyElectraLogits,
    TinyElectraLogitsF32,
    3
);

#[test]
fn the_inlined_forward_gives_the_shared_bits() {
    fn padded(g: &Golden) -> Vec<BertInput<'_>> {
        (0..g.batch).map(|b| g.input(b)).collect()
    }
    let (mpnet, electra) = (golden("mpnet"), golden("electra"));
    assert_same_bits(
        "mpnet",
        &inlined::TinyMpnetLogits,
        &TinyMpnetLogits,
        &padded(&mpnet),
    );
    assert_same_bits(
        "electra",
        &inlined::TinyElectraPooledF32,
        &TinyElectraPooledF32,
        &padded(&electra),
    );
}

/// MPNet's relative position buckets, against `MPNetEncoder.relative_position_bucket` for
/// every relative position from -600 to 600 (the f32 logarithm decides the bucket edges).
#[test]
fn mpnet_buckets_match_transformers() {
    let (_, expected) = read_ids(&io("mpnet"), "buckets");
    for (i, &e) in expected.iter().enumerate() {
        let relative = i as i64 - 600;
        assert_eq!(
            dynq_runtime::ops::bert::relative_position_bucket(relative, 32, 128),
            e as usize,
            "relative position {relative}"
        );
    }
}

#[test]
fn families_are_in_the_generated_code() {
    assert_eq!(tiny_mpnet_pooled::FAMILY, "mpnet");
    assert_eq!(tiny_xlm_roberta_logits::FAMILY, "xlm-roberta");
    assert_eq!(tiny_electra_pooled::EMBEDDING_SIZE, 24);
    assert_eq!(tiny_electra_pooled::HIDDEN_SIZE, 40);
    assert_eq!(tiny_distilbert_pooled::TYPE_VOCAB_SIZE, 0);
    assert_eq!(
        tiny_roberta_logits::LABELS,
        ["negative", "neutral", "positive"]
    );
}

#[test]
fn token_types_where_they_mean_nothing() {
    use dynq_runtime::Error;
    let ids = [0, 5, 7, 2];
    let mut out = [0.0; 36];
    let mut plain = [0.0; 36];
    // MPNet has no token types: zeros are accepted (as a tokenizer may produce them), and give
    // the same result as none; anything else is an error.
    TinyMpnetPooledF32
        .forward(&BertInput::new(&ids), &mut plain)
        .unwrap();
    let zeros = BertInput {
        token_type_ids: Some(&[0, 0, 0, 0]),
        ..BertInput::new(&ids)
    };
    TinyMpnetPooledF32.forward(&zeros, &mut out).unwrap();
    assert_eq!(out, plain);
    let ones = BertInput {
        token_type_ids: Some(&[0, 1, 0, 0]),
        ..BertInput::new(&ids)
    };
    let e = TinyMpnetPooledF32.forward(&ones, &mut out).unwrap_err();
    assert!(matches!(e, Error::TokenOutOfRange { .. }), "{e}");
    // RoBERTa's positions start after the padding id: the longest input is 34 - 1 - 1 = 32.
    assert_eq!(tiny_roberta_pooled::MAX_SEQ_LEN, 32);
    let long = [5u32; 33];
    let mut out = [0.0; 36];
    assert!(TinyRobertaPooled
        .forward(&BertInput::new(&long), &mut out)
        .is_err());
    TinyRobertaPooled
        .forward(&BertInput::new(&long[..32]), &mut out)
        .unwrap();
}

/// A copy of a family's checkpoint in a temporary directory, edited: the tensors of `file`
/// passed through `edit`, and a description written by hand.
fn edited_checkpoint(
    family: &str,
    file: &str,
    toml: &str,
    edit: impl Fn(&mut Vec<dynq_tests::RawTensor>),
) -> (tempfile::TempDir, PathBuf) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden/families")
        .join(family);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(src.join(file)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<dynq_tests::RawTensor> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| dynq_tests::RawTensor {
            name,
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            bytes: t.data().to_vec(),
        })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    edit(&mut tensors);
    dynq_tests::write_safetensors(&dir.path().join("model.safetensors"), &tensors);
    let path = dir.path().join("model.toml");
    std::fs::write(&path, toml).unwrap();
    (dir, path)
}

fn generate_error(path: &std::path::Path) -> String {
    let options = dynq_build::Options::default();
    match dynq_build::generate(path, &options, dynq_build::Placement::Relative) {
        Ok(_) => panic!("{} built", path.display()),
        Err(e) => e.to_string(),
    }
}

const BASE_TOML: &str = "[model]\nname = \"m\"\npreset = \"encoder\"\nweights = \"model.safetensors\"\nconfig = \"config.json\"\n\n[encoder]\n";

#[test]
fn wrong_checkpoints_are_refused_with_the_tensor_named() {
    // MPNet without its relative position bias.
    let (dir, toml) = edited_checkpoint("mpnet", "base.safetensors", BASE_TOML, |t| {
        t.retain(|t| !t.name.contains("relative_attention_bias"))
    });
    let e = generate_error(&toml);
    let d = dir.path().display();
    assert!(
        e.starts_with(&format!(
            "{d}/model.safetensors: tensor `encoder.relative_attention_bias.weight`: not found"
        )),
        "{e}"
    );
    // A DistilBERT FFN of the wrong width: the expected shape and the config's sizes.
    let (dir, toml) = edited_checkpoint(
        "distilbert",
        "model.safetensors",
        &format!("{BASE_TOML}prefix = \"distilbert.\"\n"),
        |t| {
            let w = t
                .iter_mut()
                .find(|t| t.name == "distilbert.transformer.layer.1.ffn.lin1.weight")
                .unwrap();
            w.shape = vec![40, 56];
        },
    );
    let e = generate_error(&toml);
    let d = dir.path().display();
    assert_eq!(
        e,
        format!("{d}/model.safetensors: tensor `distilbert.transformer.layer.1.ffn.lin1.weight`: expected shape [56, 40], found [40, 56] (as {d}/config.json says: vocab_size 103, dim 40, n_layers 2, hidden_dim 56, max_position_embeddings 32)")
    );
    // An XLM-R checkpoint saved without its prefix has BERT's tensor names: described as BERT
    // it is refused (its positions start after the padding id), not run.
    let (dir, toml) = edited_checkpoint(
        "xlm-roberta",
        "base.safetensors",
        &BASE_TOML
            .replace("\"encoder\"", "\"bert\"")
            .replace("[encoder]", "[bert]"),
        |_| {},
    );
    let e = generate_error(&toml);
    let d = dir.path().display();
    assert!(
        e.starts_with(&format!("{d}/config.json: key `model_type`: \"xlm-roberta\" is the XLM-RoBERTa family, but the description says family \"bert\"")),
        "{e}"
    );
    // A tensor inside the encoder that ELECTRA does not have (a rotary table): refused.
    let (_dir, toml) = edited_checkpoint(
        "electra",
        "model.safetensors",
        &format!("{BASE_TOML}prefix = \"electra.\"\n"),
        |t| {
            t.push(dynq_tests::RawTensor::f32(
                "electra.encoder.layer.0.attention.self.rotary.weight",
                &[2],
                &[0.0, 1.0],
            ))
        },
    );
    let e = generate_error(&toml);
    assert!(
        e.contains("tensor `electra.encoder.layer.0.attention.self.rotary.weight`: not part of the ELECTRA encoder"),
        "{e}"
    );
}
