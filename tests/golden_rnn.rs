//! Golden tests of the `lstm` and `gru` presets against PyTorch (scripts/make_rnn_goldens.py):
//! LSTM and GRU with 1 and 2 layers, uni- and bidirectional, with and without biases,
//! `batch_first` both ways; sequences of 1, 7 and 64 steps with inputs of magnitude 1e-3 to 30,
//! zero and given initial states, and one batch of 3 sequences.
//!
//! * the f32 build matches PyTorch FP32 within 1e-5 relative L2, output and final states;
//! * the INT8 build is, sequence by sequence, at least as close to FP32 (relative L2 of the
//!   output) as PyTorch's own `quantize_dynamic` output is, and over all sequences at most 0.6x
//!   as far.
//!
//! Any scheme with int8 per-channel weights shares one error floor: the FP32 model with its
//! weights rounded the way dynq stores them (`w8`, made by the script). Where PyTorch lands
//! below that floor (one sequence in 32: small inputs, where its coarser per-tensor weights
//! happened to round favorably), nothing with int8 per-channel weights can be strictly closer by
//! design; there the test asks ours to sit within 1.1x the floor. PyTorch refuses to quantize
//! a bias-free LSTM/GRU; for those cases the script quantizes the same model with zero biases,
//! which computes the same function.

use std::path::{Path, PathBuf};

use dynq_runtime::{RecurrentModel, RnnInput, RnnOutput};
use dynq_tests::{read_f32, rel_l2};

dynq_macros::dynq_model!("golden/rnn/lstm_a.toml", kernels = "native");
dynq_macros::dynq_model!(
    "golden/rnn/lstm_a.toml",
    precision = "f32",
    kernels = "native"
);
dynq_macros::dynq_model!("golden/rnn/lstm_b.toml", kernels = "native");
dynq_macros::dynq_model!(
    "golden/rnn/lstm_b.toml",
    precision = "f32",
    kernels = "native"
);
dynq_macros::dynq_model!("golden/rnn/lstm_c.toml", kernels = "native");
dynq_macros::dynq_model!(
    "golden/rnn/lstm_c.toml",
    precision = "f32",
    kernels = "native"
);
dynq_macros::dynq_model!("golden/rnn/lstm_d.toml", kernels = "native");
dynq_macros::dynq_model!(
    "golden/rnn/lstm_d.toml",
    precision = "f32",
    kernels = "native"
);
dynq_macros::dynq_model!("golden/rnn/gru_a.toml", kernels = "native");
dynq_macros::dynq_model!(
    "golden/rnn/gru_a.toml",
    precision = "f32",
    kernels = "native"
);
dynq_macros::dynq_model!("golden/rnn/gru_b.toml", kernels = "native");
dynq_macros::dynq_model!(
    "golden/rnn/gru_b.toml",
    precision = "f32",
    kernels = "native"
);
dynq_macros::dynq_model!("golden/rnn/gru_c.toml", kernels = "native");
dynq_macros::dynq_model!(
    "golden/rnn/gru_c.toml",
    precision = "f32",
    kernels = "native"
);
dynq_macros::dynq_model!("golden/rnn/gru_d.toml", kernels = "native");
dynq_macros::dynq_model!(
    "golden/rnn/gru_d.toml",
    precision = "f32",
    kernels = "native"
);

fn golden(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("golden/rnn/{case}.safetensors"))
}

fn tensor_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read golden");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.names().into_iter().map(String::from).collect()
}

/// One golden sequence: inputs and PyTorch's results.
struct Sequence {
    name: String,
    input: Vec<f32>,
    steps: usize,
    batch: usize,
    h0: Option<Vec<f32>>,
    c0: Option<Vec<f32>>,
    fp32: [Vec<f32>; 3],
    qdyn: [Vec<f32>; 3],
    w8: [Vec<f32>; 3],
}

fn sequences<M: RecurrentModel>(case: &str) -> Vec<Sequence> {
    let path = golden(case);
    let names = tensor_names(&path);
    let has = |n: &str| names.iter().any(|x| x == n);
    let get = |n: &str| has(n).then(|| read_f32(&path, n).1);
    let lstm = M::SHAPE.cell == dynq_runtime::ops::rnn::Cell::Lstm;
    let results = |kind: &str, j: usize| -> Option<[Vec<f32>; 3]> {
        Some([
            get(&format!("s{j}.{kind}.output"))?,
            get(&format!("s{j}.{kind}.h_n"))?,
            if lstm {
                get(&format!("s{j}.{kind}.c_n"))?
            } else {
                Vec::new()
            },
        ])
    };
    let mut out = Vec::new();
    for j in 0.. {
        let name = format!("s{j}.input");
        if !has(&name) {
            break;
        }
        let (shape, input) = read_f32(&path, &name);
        let (steps, batch) = match shape[..] {
            [t, _] => (t, 1),
            [a, b, _] if M::SHAPE.batch_first => (b, a),
            [a, b, _] => (a, b),
            _ => panic!("{case} {name}: shape {shape:?}"),
        };
        out.push(Sequence {
            name: format!("{case}/s{j} (T={steps}, batch {batch})"),
            input,
            steps,
            batch,
            h0: get(&format!("s{j}.h0")),
            c0: get(&format!("s{j}.c0")),
            fp32: results("fp32", j).expect("fp32 results"),
            qdyn: results("qdyn", j).expect("qdyn results"),
            w8: results("w8", j).expect("w8 results"),
        });
    }
    assert!(out.len() >= 7, "{case}: {} sequences", out.len());
    out
}

fn run<M: RecurrentModel>(model: &M, s: &Sequence) -> [Vec<f32>; 3] {
    let shape = M::SHAPE;
    let state = shape.state_len(s.batch);
    let mut r = [
        vec![0.0; s.steps * s.batch * shape.output_size()],
        vec![0.0; state],
        vec![0.0; if s.fp32[2].is_empty() { 0 } else { state }],
    ];
    let [output, h_n, c_n] = &mut r;
    let input = RnnInput {
        input: &s.input,
        steps: s.steps,
        batch: s.batch,
        h0: s.h0.as_deref(),
        c0: s.c0.as_deref(),
    };
    model
        .forward(&input, RnnOutput { output, h_n, c_n })
        .unwrap_or_else(|e| panic!("{}: {e}", s.name));
    r
}

/// f32 within 1e-5 of PyTorch FP32; INT8 at least as close to FP32 as PyTorch's INT8.
fn check<Q: RecurrentModel, F: RecurrentModel>(case: &str, q: &Q, f: &F) {
    let mut report = Vec::new();
    // Sums of the INT8 errors over the sequences, ours and PyTorch's.
    let mut totals = (0.0, 0.0);
    for s in sequences::<Q>(case) {
        let ours_f32 = run(f, &s);
        for (what, ours, theirs) in [
            ("output", &ours_f32[0], &s.fp32[0]),
            ("h_n", &ours_f32[1], &s.fp32[1]),
            ("c_n", &ours_f32[2], &s.fp32[2]),
        ] {
            let e = rel_l2(ours, theirs);
            assert!(e < 1e-5, "{}: f32 {what} {e:.2e} from PyTorch FP32", s.name);
        }
        let ours_q = run(q, &s);
        let ours = rel_l2(&ours_q[0], &s.fp32[0]);
        let floor = rel_l2(&s.w8[0], &s.fp32[0]);
        let theirs = rel_l2(&s.qdyn[0], &s.fp32[0]);
        let ok = if theirs < floor {
            ours <= 1.1 * floor
        } else {
            ours <= theirs
        };
        totals.0 += ours;
        totals.1 += theirs;
        report.push(format!(
            "{:<32} int8 {ours:.2e}  PyTorch int8 {theirs:.2e}  int8-weights floor {floor:.2e}{}",
            s.name,
            if ok { "" } else { "  <-- fails" }
        ));
    }
    let report = report.join("\n");
    println!("{report}");
    assert!(!report.contains("fails"), "INT8 error too large:\n{report}");
    assert!(
        totals.0 <= 0.6 * totals.1,
        "{case}: INT8 errors sum to {:.3e}, PyTorch's to {:.3e}",
        totals.0,
        totals.1
    );
}

#[test]
fn lstm_one_layer_unidirectional_with_bias() {
    check("lstm_a", &GoldenLstmA, &GoldenLstmAF32);
}

#[test]
fn lstm_one_layer_bidirectional_without_bias() {
    check("lstm_b", &GoldenLstmB, &GoldenLstmBF32);
}

#[test]
fn lstm_two_layers_unidirectional_without_bias() {
    check("lstm_c", &GoldenLstmC, &GoldenLstmCF32);
}

#[test]
fn lstm_two_layers_bidirectional_with_bias() {
    check("lstm_d", &GoldenLstmD, &GoldenLstmDF32);
}

#[test]
fn gru_one_layer_unidirectional_with_bias() {
    check("gru_a", &GoldenGruA, &GoldenGruAF32);
}

#[test]
fn gru_one_layer_bidirectional_without_bias() {
    check("gru_b", &GoldenGruB, &GoldenGruBF32);
}

#[test]
fn gru_two_layers_unidirectional_without_bias() {
    check("gru_c", &GoldenGruC, &GoldenGruCF32);
}

#[test]
fn gru_two_layers_bidirectional_with_bias() {
    check("gru_d", &GoldenGruD, &GoldenGruDF32);
}

#[test]
fn run_matches_forward_for_one_sequence() {
    let s = &sequences::<GoldenLstmD>("lstm_d")[2];
    let r = GoldenLstmDF32.run(&s.input).unwrap();
    assert!(rel_l2(&r.output, &s.fp32[0]) < 1e-5);
    assert_eq!((r.h_n.len(), r.c_n.len()), (4 * 12, 4 * 12));
    assert!(GoldenGruA.run(&s.input[..10]).unwrap().c_n.is_empty());
}

#[test]
fn bad_calls_are_errors_not_panics() {
    use dynq_runtime::Error;
    let (mut o, mut h, mut c) = (vec![0.0; 24], vec![0.0; 48], vec![0.0; 48]);
    let mut call = |m: &dyn Fn(&RnnInput<'_>, RnnOutput<'_>) -> Result<(), Error>,
                    x: RnnInput<'_>| {
        m(
            &x,
            RnnOutput {
                output: &mut o,
                h_n: &mut h,
                c_n: &mut c,
            },
        )
    };
    let lstm = |x: &RnnInput<'_>, out: RnnOutput<'_>| GoldenLstmD.forward(x, out);
    let input = [0.5f32; 10];
    assert_eq!(
        call(&lstm, RnnInput::sequence(&[], 0)),
        Err(Error::EmptySequence)
    );
    assert_eq!(
        call(&lstm, RnnInput::sequence(&input[..9], 1)),
        Err(Error::InputLength {
            expected: 10,
            rows: 1,
            width: 10,
            found: 9
        })
    );
    let nan = [f32::NAN; 10];
    assert_eq!(
        call(&lstm, RnnInput::sequence(&nan, 1))
            .unwrap_err()
            .to_string(),
        "input value at index 0 is NaN: inputs must be finite"
    );
    let short = [0.0; 3];
    let e = call(
        &lstm,
        RnnInput {
            h0: Some(&short),
            ..RnnInput::sequence(&input, 1)
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "h0 length: expected 48 values (layers x directions x batch x hidden), found 3"
    );
    assert!(call(&lstm, RnnInput::sequence(&input, 1)).is_ok());

    let gru = |x: &RnnInput<'_>, out: RnnOutput<'_>| GoldenGruA.forward(x, out);
    let (mut o, mut h) = (vec![0.0; 12], vec![0.0; 12]);
    let state = [0.0; 12];
    let x = RnnInput {
        c0: Some(&state),
        ..RnnInput::sequence(&input, 1)
    };
    assert_eq!(
        gru(
            &x,
            RnnOutput {
                output: &mut o,
                h_n: &mut h,
                c_n: &mut []
            }
        ),
        Err(Error::StateLength {
            what: "c0",
            expected: 0,
            found: 12
        })
    );
    let mut c = vec![0.0; 12];
    assert_eq!(
        gru(
            &RnnInput::sequence(&input, 1),
            RnnOutput {
                output: &mut o,
                h_n: &mut h,
                c_n: &mut c
            }
        ),
        Err(Error::StateLength {
            what: "c_n",
            expected: 0,
            found: 12
        })
    );
}

#[test]
fn json_lines_have_pytorch_shapes() {
    use dynq_runtime::serve::{serve_recurrent, ServeOptions};
    // The output, or the first failed line's `line N: error`.
    let first_error = |out: Vec<u8>| {
        let out = String::from_utf8(out).unwrap();
        for l in out.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(e) = v.get("error") {
                return Err(format!("line {}: {}", v["line"], e.as_str().unwrap()));
            }
        }
        Ok(out)
    };
    let serve = |input: &str| {
        let mut out = Vec::new();
        serve_recurrent(
            &GoldenLstmDF32,
            &ServeOptions::default(),
            input.as_bytes(),
            &mut out,
        )
        .unwrap();
        first_error(out)
    };
    let s = &sequences::<GoldenLstmD>("lstm_d")[5];
    let rows = |v: &[f32], w: usize| {
        let r: Vec<String> = v.chunks(w).map(|c| format!("{c:?}")).collect();
        format!("[{}]", r.join(","))
    };
    let line = format!(
        "{{\"input\": {}, \"h0\": {}, \"c0\": {}}}\n",
        rows(&s.input, 10),
        rows(s.h0.as_ref().unwrap(), 12),
        rows(s.c0.as_ref().unwrap(), 12)
    );
    let out = serve(&line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let flat = |k: &str| -> (usize, Vec<f32>) {
        let rows = v[k].as_array().unwrap();
        (
            rows.len(),
            rows.iter()
                .flat_map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                })
                .collect(),
        )
    };
    let (t, output) = flat("output");
    assert_eq!((t, output.len()), (7, 7 * 24));
    assert!(rel_l2(&output, &s.fp32[0]) < 1e-5);
    let (states, h_n) = flat("h_n");
    assert_eq!(states, 4);
    assert!(rel_l2(&h_n, &s.fp32[1]) < 1e-5);
    assert!(rel_l2(&flat("c_n").1, &s.fp32[2]) < 1e-5);

    let row10 = format!("{:?}", [0.5f32; 10]);
    let e = serve(&format!(
        "{{\"input\": [{row10}]}}\n{{\"input\": [{row10}, [1, 2]]}}\n"
    ))
    .unwrap_err();
    assert_eq!(e, "line 2: `input`[1]: expected 10 numbers, found 2");
    assert_eq!(
        serve("{\"input\": []}\n").unwrap_err(),
        "line 1: `input`: the sequence is empty; it needs at least one step"
    );
    let e = serve(&format!("{{\"input\": [{row10}], \"h0\": [[1]]}}\n")).unwrap_err();
    assert_eq!(
        e,
        "line 1: `h0`: expected 4 rows of 12 numbers, found 1 rows"
    );
    let e = serve("{\"inputs\": []}\n").unwrap_err();
    assert_eq!(
        e,
        "line 1: unknown key `inputs`, expected `input`, `h0`, `c0`"
    );
    let mut out = Vec::new();
    serve_recurrent(
        &GoldenGruA,
        &ServeOptions::default(),
        format!("{{\"input\": [{row10}], \"c0\": [[1]]}}\n").as_bytes(),
        &mut out,
    )
    .unwrap();
    let e = first_error(out).unwrap_err();
    assert_eq!(
        e,
        "line 1: unknown key `c0` (a GRU has no cell state), expected `input`, `h0`"
    );
}
