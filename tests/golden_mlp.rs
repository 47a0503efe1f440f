//! Golden tests against PyTorch (scripts/make_goldens.py): a random 4-layer MLP with every
//! activation and a bias-free layer, fed rows whose magnitudes span 1e-3 to 1e3.
//!
//! * the f32 build matches PyTorch FP32 within 1e-5 relative L2 per row;
//! * the INT8 build is, row by row, at least as close to FP32 as PyTorch's own
//!   `quantize_dynamic` (per-channel weights) output is, wherever activation quantization
//!   decides the error.
//!
//! Both engines round the weights to int8 per output channel; that error alone
//! (`int8_weights_only`, the float model with rounded weights) is a floor neither can go below.
//! On rows where PyTorch's error sits at that floor (the saturated rows of magnitude 1e2-1e3,
//! where its per-tensor range is set by the row itself) the two are equal up to rounding luck,
//! so there the test asks ours to stay within 2x the floor; on every other row ours must be
//! strictly closer, and over the whole batch too.

use std::path::Path;

use dynq_tests::{read_f32, rel_l2};

dynq_macros::dynq_model!("golden/mlp.toml", kernels = "native");
dynq_macros::dynq_model!("golden/mlp.toml", precision = "f32", kernels = "native");
dynq_macros::dynq_model!("golden/mlp_asym.toml", kernels = "native");
dynq_macros::dynq_model!("golden/mlp_per_tensor.toml", kernels = "native");

mod from_build_rs {
    include!(concat!(env!("OUT_DIR"), "/golden_mlp_build_rs.rs"));
}

struct Io {
    input: Vec<f32>,
    fp32: Vec<f32>,
    torch_int8: Vec<f32>,
    weights_only: Vec<f32>,
    rows: usize,
}

fn io() -> Io {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/mlp_io.safetensors");
    let (shape, input) = read_f32(&p, "input");
    assert_eq!(shape, [shape[0], GoldenMlp::INPUT_SIZE]);
    let (_, fp32) = read_f32(&p, "fp32");
    let (_, torch_int8) = read_f32(&p, "torch_int8");
    let (_, weights_only) = read_f32(&p, "int8_weights_only");
    Io {
        input,
        fp32,
        torch_int8,
        weights_only,
        rows: shape[0],
    }
}

fn run(
    f: impl Fn(&[f32], usize, &mut [f32]) -> Result<(), dynq_runtime::Error>,
    io: &Io,
) -> Vec<f32> {
    let mut out = vec![0.0; io.rows * GoldenMlp::OUTPUT_SIZE];
    f(&io.input, io.rows, &mut out).unwrap();
    out
}

fn rows(v: &[f32]) -> std::slice::ChunksExact<'_, f32> {
    v.chunks_exact(GoldenMlp::OUTPUT_SIZE)
}

#[test]
fn f32_matches_pytorch_fp32() {
    let io = io();
    let ours = run(|i, r, o| GoldenMlpF32.forward(i, r, o), &io);
    for (i, (a, b)) in rows(&ours).zip(rows(&io.fp32)).enumerate() {
        let e = rel_l2(a, b);
        assert!(
            e <= 1e-5,
            "row {i}: relative L2 {e:.2e} > 1e-5\n ours {a:?}\n torch {b:?}"
        );
    }
}

fn assert_int8_at_least_as_close_as_torch(name: &str, ours: &[f32], io: &Io) {
    let mut failures = Vec::new();
    let per_row = rows(ours)
        .zip(rows(&io.torch_int8))
        .zip(rows(&io.fp32))
        .zip(rows(&io.weights_only));
    for (i, (((a, t), f), w)) in per_row.enumerate() {
        let (e_ours, e_torch, floor) = (rel_l2(a, f), rel_l2(t, f), rel_l2(w, f));
        let at_floor = e_torch <= 2.0 * floor;
        println!(
            "{name} row {i:2}: dynq {e_ours:.2e}  torch {e_torch:.2e}  int8-weight floor {floor:.2e}{}",
            if at_floor { "  (torch at the floor)" } else { "" }
        );
        let ok = if at_floor {
            e_ours <= 2.0 * floor
        } else {
            e_ours < e_torch
        };
        if !ok {
            failures.push(i);
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: rows {failures:?} are further from FP32 than allowed"
    );
    let (e_ours, e_torch) = (rel_l2(ours, &io.fp32), rel_l2(&io.torch_int8, &io.fp32));
    assert!(
        e_ours < e_torch,
        "{name}: whole batch dynq {e_ours:.2e} >= torch {e_torch:.2e}"
    );
}

#[test]
fn int8_is_at_least_as_close_to_fp32_as_pytorch_int8() {
    let io = io();
    let ours = run(|i, r, o| GoldenMlp.forward(i, r, o), &io);
    assert_int8_at_least_as_close_as_torch("symmetric per token", &ours, &io);
    let ours = run(|i, r, o| GoldenMlpAsym.forward(i, r, o), &io);
    assert_int8_at_least_as_close_as_torch("asymmetric per token", &ours, &io);
}

#[test]
fn per_tensor_activations_stay_bounded() {
    // Per tensor, rows of magnitude 1e-3 share a scale with rows of 1e3: the error of the small
    // rows is large for PyTorch too. The batch as a whole must still be as close as PyTorch's.
    let io = io();
    let ours = run(|i, r, o| GoldenMlpPerTensor.forward(i, r, o), &io);
    let (e_ours, e_torch) = (rel_l2(&ours, &io.fp32), rel_l2(&io.torch_int8, &io.fp32));
    println!("per tensor, whole batch: dynq {e_ours:.2e} torch {e_torch:.2e}");
    assert!(e_ours <= e_torch, "dynq {e_ours:.2e} > torch {e_torch:.2e}");
}

#[test]
fn build_rs_and_macro_generate_the_same_model() {
    let io = io();
    let a = run(|i, r, o| GoldenMlp.forward(i, r, o), &io);
    let b = run(
        |i, r, o| from_build_rs::GoldenMlpBuildRs.forward(i, r, o),
        &io,
    );
    assert_eq!(a, b);
}

#[test]
fn per_token_rows_do_not_depend_on_the_batch() {
    let io = io();
    let batch = run(|i, r, o| GoldenMlp.forward(i, r, o), &io);
    for (i, (x, y)) in io
        .input
        .chunks_exact(GoldenMlp::INPUT_SIZE)
        .zip(rows(&batch))
        .enumerate()
    {
        let one = GoldenMlp.forward_one(x.try_into().unwrap()).unwrap();
        assert_eq!(one.as_slice(), y, "row {i}");
    }
}

#[test]
fn bad_calls_are_errors() {
    let mut out = [0.0; 7];
    let e = GoldenMlp.forward(&[0.0; 23], 1, &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "input length: expected 24 values (1 rows x 24), found 23"
    );
    let e = GoldenMlp.forward(&[0.0; 24], 1, &mut out[..6]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "output length: expected 7 values (1 rows x 7), found 6"
    );
    let mut x = [0.0; 24];
    x[3] = f32::NAN;
    let e = GoldenMlp.forward(&x, 1, &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "input value at index 3 is NaN: inputs must be finite"
    );
    let e = GoldenMlp.forward(&[], 0, &mut []).unwrap_err();
    assert_eq!(e, dynq_runtime::Error::NoRows);
}
