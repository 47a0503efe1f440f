//! The recurrent layers: every kernel this machine can run gives the scalar kernel's results
//! bit for bit (INT8 and f32), and the f32 path follows PyTorch's equations, computed here
//! independently in f64, for LSTM and GRU, 1 to 3 layers, both directions, batches and
//! `batch_first`.

use dynq_runtime::kernels::Kernel;
use dynq_runtime::ops::rnn::{forward, scratch_lens, Cell, RnnDirection, RnnLayer, RnnShape};
use dynq_runtime::ops::{ActQuant, QuantScratch};
use dynq_runtime::{Granularity, RnnInput, RnnOutput, Scheme, Workspace};
use proptest::prelude::*;

mod common;
use common::{Matrix, Rng};

/// A random `n x k` layer, with a bias when `bias`.
fn matrix(n: usize, k: usize, rng: &mut Rng, bias: bool) -> Matrix {
    let w = rng.vec(n * k, 0.6);
    let bias = bias.then(|| rng.vec(n, 0.3));
    Matrix::new(n, k, w, bias)
}

/// `W x + b` of `m` in f64.
fn apply(m: &Matrix, x: &[f64]) -> Vec<f64> {
    (0..m.n)
        .map(|j| {
            let dot: f64 = (0..m.k).map(|k| f64::from(m.w[j * m.k + k]) * x[k]).sum();
            dot + m.bias.as_ref().map_or(0.0, |b| f64::from(b[j]))
        })
        .collect()
}

struct Model {
    shape: RnnShape,
    /// [layer][direction] = (W_ih, W_hh)
    mats: Vec<Vec<(Matrix, Matrix)>>,
}

impl Model {
    fn new(shape: RnnShape, bias: bool, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let g = shape.cell.gates() * shape.hidden_size;
        let mats = (0..shape.num_layers)
            .map(|l| {
                let k = if l == 0 {
                    shape.input_size
                } else {
                    shape.output_size()
                };
                (0..shape.directions)
                    .map(|_| {
                        (
                            matrix(g, k, &mut rng, bias),
                            matrix(g, shape.hidden_size, &mut rng, bias),
                        )
                    })
                    .collect()
            })
            .collect();
        Model { shape, mats }
    }

    fn layers(&self, int8: bool) -> Vec<RnnLayer<'_>> {
        self.mats
            .iter()
            .map(|dirs| {
                let d = |i: usize| RnnDirection {
                    input: dirs[i].0.view(int8),
                    hidden: dirs[i].1.view(int8),
                };
                RnnLayer {
                    forward: d(0),
                    reverse: (dirs.len() > 1).then(|| d(1)),
                }
            })
            .collect()
    }

    /// Runs the model with `kernel`: (output, h_n, c_n). Inlined into [`Dispatched`]'s `run`,
    /// so into the kernel's target-feature entry point: compiled with the kernel's features, as
    /// in generated models, and in the kernel's own codegen unit. (Out of line, all kernels'
    /// instantiations shared this crate's one codegen unit, compiled without them.)
    #[inline(always)]
    fn run<K: Kernel>(
        &self,
        kernel: K,
        int8: bool,
        x: &RnnInput<'_>,
        aq: ActQuant,
    ) -> [Vec<f32>; 3] {
        let s = &self.shape;
        let state = s.state_len(x.batch);
        let mut r = [
            vec![f32::NAN; x.steps * x.batch * s.output_size()],
            vec![f32::NAN; state],
            vec![f32::NAN; if s.cell == Cell::Lstm { state } else { 0 }],
        ];
        let [output, h_n, c_n] = &mut r;
        let mut ws = Workspace::new();
        let (f, q, rows) = scratch_lens(s, x.steps, x.batch);
        let b = ws.buffers(f, q, rows);
        b.f32.fill(f32::NAN);
        let mut quant = QuantScratch {
            quant: b.quant,
            scales: b.scales,
            zero_points: b.zero_points,
        };
        let layers = self.layers(int8);
        dynq_runtime::ops::rnn::check_rnn_io(s, x, &RnnOutput { output, h_n, c_n }).unwrap();
        macro_rules! call {
            ($in:literal, $h:literal, $g:literal, $dh:literal) => {
                forward::<K, $in, $h, $g, $dh>(
                    kernel,
                    s,
                    &layers,
                    aq,
                    x,
                    RnnOutput { output, h_n, c_n },
                    b.f32,
                    &mut quant,
                )
            };
        }
        match (s.cell, s.directions) {
            (Cell::Lstm, 1) => call!(5, 6, 24, 6),
            (Cell::Lstm, _) => call!(5, 6, 24, 12),
            (Cell::Gru, 1) => call!(5, 6, 18, 6),
            (Cell::Gru, _) => call!(5, 6, 18, 12),
        }
        r
    }

    /// PyTorch's equations in f64, sequence by sequence, time-major internally.
    fn reference(&self, x: &RnnInput<'_>) -> [Vec<f64>; 3] {
        let s = &self.shape;
        let (steps, batch, h) = (x.steps, x.batch, s.hidden_size);
        let at = |t: usize, b: usize, w: usize| {
            if s.batch_first {
                (b * steps + t) * w
            } else {
                (t * batch + b) * w
            }
        };
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let mut out = vec![0.0; steps * batch * s.output_size()];
        let (mut h_n, mut c_n) = (vec![0.0; s.state_len(batch)], vec![0.0; s.state_len(batch)]);
        for b in 0..batch {
            let mut layer_in: Vec<Vec<f64>> = (0..steps)
                .map(|t| {
                    x.input[at(t, b, s.input_size)..][..s.input_size]
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect()
                })
                .collect();
            for (l, dirs) in self.mats.iter().enumerate() {
                let mut layer_out = vec![vec![0.0; s.output_size()]; steps];
                for (d, (wi, wh)) in dirs.iter().enumerate() {
                    let idx = ((l * s.directions + d) * batch + b) * h;
                    let mut hs: Vec<f64> = x.h0.map_or(vec![0.0; h], |h0| {
                        h0[idx..idx + h].iter().map(|&v| f64::from(v)).collect()
                    });
                    let mut cs: Vec<f64> = x.c0.map_or(vec![0.0; h], |c0| {
                        c0[idx..idx + h].iter().map(|&v| f64::from(v)).collect()
                    });
                    for step in 0..steps {
                        let t = if d == 0 { step } else { steps - 1 - step };
                        let (gx, gh) = (apply(wi, &layer_in[t]), apply(wh, &hs));
                        for j in 0..h {
                            match s.cell {
                                Cell::Lstm => {
                                    let i = sig(gx[j] + gh[j]);
                                    let f = sig(gx[h + j] + gh[h + j]);
                                    let g = (gx[2 * h + j] + gh[2 * h + j]).tanh();
                                    let o = sig(gx[3 * h + j] + gh[3 * h + j]);
                                    cs[j] = f * cs[j] + i * g;
                                    hs[j] = o * cs[j].tanh();
                                }
                                Cell::Gru => {
                                    let r = sig(gx[j] + gh[j]);
                                    let z = sig(gx[h + j] + gh[h + j]);
                                    let n = (gx[2 * h + j] + r * gh[2 * h + j]).tanh();
                                    hs[j] = (1.0 - z) * n + z * hs[j];
                                }
                            }
                        }
                        layer_out[t][d * h..(d + 1) * h].copy_from_slice(&hs);
                    }
                    h_n[idx..idx + h].copy_from_slice(&hs);
                    c_n[idx..idx + h].copy_from_slice(&cs);
                }
                layer_in = layer_out;
            }
            for (t, row) in layer_in.iter().enumerate() {
                out[at(t, b, s.output_size())..][..s.output_size()].copy_from_slice(row);
            }
        }
        if s.cell == Cell::Gru {
            c_n.clear();
        }
        [out, h_n, c_n]
    }
}

fn shape(lstm: bool, layers: usize, bidirectional: bool, batch_first: bool) -> RnnShape {
    RnnShape {
        cell: if lstm { Cell::Lstm } else { Cell::Gru },
        input_size: 5,
        hidden_size: 6,
        num_layers: layers,
        directions: if bidirectional { 2 } else { 1 },
        batch_first,
    }
}

fn inputs(
    s: &RnnShape,
    steps: usize,
    batch: usize,
    scale: f32,
    states: bool,
    seed: u64,
) -> (Vec<f32>, Option<Vec<f32>>, Option<Vec<f32>>) {
    let mut rng = Rng(seed ^ 0x9e37);
    let x = (0..steps * batch * s.input_size)
        .map(|_| rng.next() * scale)
        .collect();
    let mut state = || {
        states.then(|| {
            (0..s.state_len(batch))
                .map(|_| rng.next() * 0.5)
                .collect::<Vec<f32>>()
        })
    };
    let h0 = state();
    let c0 = if s.cell == Cell::Lstm { state() } else { None };
    (x, h0, c0)
}

/// A forward run through `dispatch`, so the layer code inlines into the kernel's
/// target-feature entry point as in generated models.
struct Dispatched<'a> {
    model: &'a Model,
    int8: bool,
    input: &'a RnnInput<'a>,
    aq: ActQuant,
}

impl dynq_runtime::Job for Dispatched<'_> {
    type Output = [Vec<f32>; 3];
    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) -> Self::Output {
        self.model.run(kernel, self.int8, self.input, self.aq)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn kernels_match_scalar_and_f32_matches_pytorch_equations(
        lstm in any::<bool>(),
        layers in 1usize..=3,
        bidirectional in any::<bool>(),
        batch_first in any::<bool>(),
        bias in any::<bool>(),
        steps in 1usize..=9,
        batch in 1usize..=3,
        scale in prop::sample::select(vec![1e-3f32, 1.0, 30.0]),
        states in any::<bool>(),
        asymmetric in any::<bool>(),
        per_tensor in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let s = shape(lstm, layers, bidirectional, batch_first);
        let model = Model::new(s, bias, seed);
        let (x, h0, c0) = inputs(&s, steps, batch, scale, states, seed);
        let input = RnnInput { input: &x, steps, batch, h0: h0.as_deref(), c0: c0.as_deref() };
        let aq = ActQuant {
            granularity: if per_tensor { Granularity::PerTensor } else { Granularity::PerToken },
            scheme: if asymmetric { Scheme::Asymmetric } else { Scheme::Symmetric },
        };
        let reference = model.reference(&input);
        // Every kernel through `dispatch` (one instantiation each, inlined into its
        // target-feature entry point as in generated models); one this CPU lacks runs scalar.
        let run = |id: dynq_runtime::KernelId, int8: bool| {
            dynq_runtime::dispatch(Dispatched { model: &model, int8, input: &input, aq }, &[id]).unwrap()
        };
        let f32_scalar = run(dynq_runtime::KernelId::Scalar, false);
        for (ours, want) in f32_scalar.iter().zip(&reference) {
            prop_assert_eq!(ours.len(), want.len());
            for (o, w) in ours.iter().zip(want) {
                prop_assert!((f64::from(*o) - w).abs() <= 2e-5 * (1.0 + w.abs()), "{} vs {}", o, w);
            }
        }
        let q_scalar = run(dynq_runtime::KernelId::Scalar, true);
        for (o, w) in q_scalar[0].iter().zip(&reference[0]) {
            prop_assert!((f64::from(*o) - w).abs() < 0.2, "int8 {} vs {}", o, w);
        }
        let mut failure = None;
        for id in dynq_runtime::KernelId::ALL {
            let name = id.name();
            let got = run(id, true);
            if got.iter().flatten().map(|v| v.to_bits()).ne(q_scalar.iter().flatten().map(|v| v.to_bits())) {
                failure.get_or_insert(format!("{name} int8 differs from scalar"));
            }
            let got = run(id, false);
            for (g, w) in got.iter().flatten().zip(f32_scalar.iter().flatten()) {
                if (g - w).abs() > 1e-5 * (1.0 + w.abs()) {
                    failure.get_or_insert(format!("{name} f32 {g} vs scalar {w}"));
                }
            }
        }
        prop_assert!(failure.is_none(), "{:?}", failure);
    }
}
