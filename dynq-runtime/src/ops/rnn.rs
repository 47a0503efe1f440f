//! LSTM and GRU layers with PyTorch's semantics (the `lstm` and `gru` presets).
//!
//! Per layer and direction, the input-to-hidden products of all time steps are one GEMM
//! (`M = steps * batch`); the hidden-to-hidden products are one small GEMM per step
//! (`M = batch`, a GEMV for one sequence) whose input, the hidden state, is quantized
//! dynamically at every step. With int8 weights both products quantize their activations in
//! two int8 terms, value and residual (see `two_term_product`), so rounding does not compound
//! through the recurrence. The gate equations are PyTorch's, term for term:
//!
//! * LSTM, gates `i, f, g, o`: `c' = f * c + i * g`, `h' = o * tanh(c')`;
//! * GRU, gates `r, z, n`: `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`,
//!   `h' = (h - n) * z + n`.
//!
//! Layouts: inside, activations are time-major, `[steps][batch][features]`; the model's input
//! and output follow its `batch_first` setting. States are `[layers * directions][batch][hidden]`
//! with index `layer * directions + direction`, as PyTorch's `h_n`.

use crate::kernels::Kernel;
use crate::math::{sigmoid, tanh};
use crate::ops::{linear_f32, quantize_activations, ActQuant, QuantScratch};
use crate::quant::padded_k;
use crate::types::{Activation, Linear, QLinear};
use crate::Error;

/// The recurrent cell of a layer.
///
/// ```
/// assert_eq!(dynq_runtime::ops::rnn::Cell::Lstm.gates(), 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Long short-term memory: gates `i, f, g, o`, a cell state next to the hidden state.
    Lstm,
    /// Gated recurrent unit: gates `r, z, n`.
    Gru,
}

impl Cell {
    /// Gate blocks in the weight matrices (4 for LSTM, 3 for GRU).
    pub const fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// One direction of one layer: `W_ih` with `b_ih`, and `W_hh` with `b_hh`, as stored by
/// PyTorch (`[gates * hidden, input]` and `[gates * hidden, hidden]`).
///
/// ```
/// use dynq_runtime::{ops::rnn::RnnDirection, F32Linear, Linear};
/// let input = Linear::F32(F32Linear { n: 4, k: 1, weight: &[1.0; 4], bias: None });
/// let hidden = Linear::F32(F32Linear { n: 4, k: 1, weight: &[0.5; 4], bias: None });
/// let d = RnnDirection { input, hidden };
/// assert_eq!(d.hidden.n(), 4);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RnnDirection<'a> {
    /// Input-to-hidden weights and bias.
    pub input: Linear<'a>,
    /// Hidden-to-hidden weights and bias.
    pub hidden: Linear<'a>,
}

/// One layer: the forward direction and, for bidirectional models, the reverse one.
///
/// ```
/// use dynq_runtime::{ops::rnn::{RnnDirection, RnnLayer}, F32Linear, Linear};
/// let l = Linear::F32(F32Linear { n: 3, k: 1, weight: &[1.0; 3], bias: None });
/// let layer = RnnLayer { forward: RnnDirection { input: l, hidden: l }, reverse: None };
/// assert!(layer.reverse.is_none());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RnnLayer<'a> {
    /// Left to right.
    pub forward: RnnDirection<'a>,
    /// Right to left (bidirectional models).
    pub reverse: Option<RnnDirection<'a>>,
}

/// The constant shape of a recurrent model.
///
/// ```
/// use dynq_runtime::ops::rnn::{Cell, RnnShape};
/// let s = RnnShape { cell: Cell::Gru, input_size: 20, hidden_size: 40, num_layers: 2,
///     directions: 2, batch_first: true };
/// assert_eq!((s.output_size(), s.state_len(3)), (80, 2 * 2 * 3 * 40));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RnnShape {
    /// LSTM or GRU.
    pub cell: Cell,
    /// Features per input step.
    pub input_size: usize,
    /// Hidden state width per direction.
    pub hidden_size: usize,
    /// Stacked layers.
    pub num_layers: usize,
    /// 1, or 2 for bidirectional models.
    pub directions: usize,
    /// Input and output are `[batch][steps][..]` rather than `[steps][batch][..]`.
    pub batch_first: bool,
}

impl RnnShape {
    /// Width of one output step: `directions * hidden_size`.
    pub const fn output_size(&self) -> usize {
        self.directions * self.hidden_size
    }

    /// Length of `h0`/`h_n` (and `c0`/`c_n` for LSTM) for `batch` sequences.
    pub const fn state_len(&self, batch: usize) -> usize {
        self.num_layers * self.directions * batch * self.hidden_size
    }
}

/// Inputs of a recurrent forward call.
///
/// `input` holds `steps * batch` rows of the model's input size, `[batch][steps]` when the
/// model is `batch_first`, else `[steps][batch]` (the same thing for one sequence). The
/// optional initial states are `[layers * directions][batch][hidden]`; absent means zeros.
///
/// ```
/// let x = [0.5f32; 3 * 2];
/// let input = dynq_runtime::RnnInput::sequence(&x, 3);
/// assert_eq!((input.steps, input.batch), (3, 1));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RnnInput<'a> {
    /// The input rows.
    pub input: &'a [f32],
    /// Time steps (at least 1).
    pub steps: usize,
    /// Sequences run side by side (at least 1).
    pub batch: usize,
    /// Initial hidden state.
    pub h0: Option<&'a [f32]>,
    /// Initial cell state (LSTM only).
    pub c0: Option<&'a [f32]>,
}

impl<'a> RnnInput<'a> {
    /// One sequence of `steps` rows, zero initial states.
    pub fn sequence(input: &'a [f32], steps: usize) -> Self {
        RnnInput {
            input,
            steps,
            batch: 1,
            h0: None,
            c0: None,
        }
    }
}

/// Where a recurrent forward call writes: `output` (`steps * batch` rows of
/// `directions * hidden`, laid out like the input), and the final states `h_n`, `c_n`
/// (`[layers * directions][batch][hidden]`; `c_n` empty for GRU).
///
/// ```
/// let (mut o, mut h, mut c) = ([0f32; 8], [0f32; 4], [0f32; 4]);
/// let out = dynq_runtime::RnnOutput { output: &mut o, h_n: &mut h, c_n: &mut c };
/// assert_eq!(out.h_n.len(), 4);
/// ```
#[derive(Debug)]
pub struct RnnOutput<'a> {
    /// Every step's hidden state (both directions concatenated).
    pub output: &'a mut [f32],
    /// Final hidden state per layer and direction.
    pub h_n: &'a mut [f32],
    /// Final cell state per layer and direction (LSTM; empty for GRU).
    pub c_n: &'a mut [f32],
}

/// The owned results of [`crate::RecurrentModel::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct RnnResult {
    /// `steps` rows of `directions * hidden`.
    pub output: Vec<f32>,
    /// `[layers * directions][hidden]`.
    pub h_n: Vec<f32>,
    /// `[layers * directions][hidden]` (LSTM; empty for GRU).
    pub c_n: Vec<f32>,
}

/// Checks a recurrent forward call against the model's shape: lengths, finiteness, and
/// initial states that exist for the cell.
///
/// ```
/// use dynq_runtime::ops::rnn::{check_rnn_io, Cell, RnnShape};
/// use dynq_runtime::{RnnInput, RnnOutput};
/// let shape = RnnShape { cell: Cell::Gru, input_size: 2, hidden_size: 3, num_layers: 1,
///     directions: 1, batch_first: false };
/// let (mut o, mut h) = ([0f32; 6], [0f32; 3]);
/// let out = RnnOutput { output: &mut o, h_n: &mut h, c_n: &mut [] };
/// assert!(check_rnn_io(&shape, &RnnInput::sequence(&[1.0; 4], 2), &out).is_ok());
/// let e = check_rnn_io(&shape, &RnnInput::sequence(&[], 0), &out).unwrap_err();
/// assert_eq!(e, dynq_runtime::Error::EmptySequence);
/// ```
pub fn check_rnn_io(shape: &RnnShape, x: &RnnInput<'_>, out: &RnnOutput<'_>) -> Result<(), Error> {
    if x.steps == 0 {
        return Err(Error::EmptySequence);
    }
    let rows = x.steps.checked_mul(x.batch).ok_or(Error::NoRows)?;
    if rows == 0 {
        return Err(Error::NoRows);
    }
    let expected = rows.checked_mul(shape.input_size).ok_or(Error::NoRows)?;
    if x.input.len() != expected {
        return Err(Error::InputLength {
            expected,
            rows,
            width: shape.input_size,
            found: x.input.len(),
        });
    }
    if let Some(index) = x.input.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFiniteInput {
            index,
            value: x.input[index],
        });
    }
    let state = shape.state_len(x.batch);
    let cell_state = match shape.cell {
        Cell::Lstm => state,
        Cell::Gru => 0,
    };
    if shape.cell == Cell::Gru && x.c0.is_some() {
        return Err(Error::StateLength {
            what: "c0",
            expected: 0,
            found: x.c0.map_or(0, <[f32]>::len),
        });
    }
    for (what, s, len) in [("h0", x.h0, state), ("c0", x.c0, cell_state)] {
        if let Some(s) = s {
            if s.len() != len {
                return Err(Error::StateLength {
                    what,
                    expected: len,
                    found: s.len(),
                });
            }
            if let Some(index) = s.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFiniteInput {
                    index,
                    value: s[index],
                });
            }
        }
    }
    let expected = rows * shape.output_size();
    if out.output.len() != expected {
        return Err(Error::OutputLength {
            expected,
            rows,
            width: shape.output_size(),
            found: out.output.len(),
        });
    }
    for (what, len, found) in [
        ("h_n", state, out.h_n.len()),
        ("c_n", cell_state, out.c_n.len()),
    ] {
        if found != len {
            return Err(Error::StateLength {
                what,
                expected: len,
                found,
            });
        }
    }
    Ok(())
}

/// Workspace lengths of [`forward`]: `(f32 values, quantized values, rows)` for
/// [`crate::Workspace::buffers`].
///
/// ```
/// use dynq_runtime::ops::rnn::{scratch_lens, Cell, RnnShape};
/// let s = RnnShape { cell: Cell::Lstm, input_size: 2, hidden_size: 3, num_layers: 1,
///     directions: 1, batch_first: true };
/// let (f, q, rows) = scratch_lens(&s, 5, 1);
/// assert_eq!(rows, 2 * 5); // two quantized terms per activation row
/// assert!(f >= 5 * 12 && q >= 5 * 4);
/// ```
pub fn scratch_lens(shape: &RnnShape, steps: usize, batch: usize) -> (usize, usize, usize) {
    let rows = steps * batch;
    let gates = shape.cell.gates() * shape.hidden_size;
    let out = shape.output_size();
    let transpose = shape.batch_first && batch > 1;
    let layer_bufs = (shape.num_layers - 1).min(2) + usize::from(transpose);
    // Products run two quantized terms per row (see `two_term_product`): twice the rows of
    // gates and quantized activations, and one residual row per activation row.
    let widest = shape.input_size.max(out).max(shape.hidden_size);
    let f32_len = 2 * rows * gates
        + 2 * batch * gates
        + rows * widest
        + layer_bufs * rows * out
        + if transpose {
            rows * shape.input_size
        } else {
            0
        };
    let quant_rows = 2 * rows;
    (f32_len, quant_rows * padded_k(widest), quant_rows)
}

/// Runs a whole recurrent model: every layer, both directions, from `x` into `out`.
///
/// `IN` is the input size, `H` the hidden size, `G` the gate width (`gates * H`), `DH` the
/// output width (`directions * H`, the input width of layers after the first). `layers` holds
/// the weight views in order; `f32_scratch` and `quant` come from a workspace sized by
/// [`scratch_lens`]. The call must have passed [`check_rnn_io`].
///
/// ```
/// use dynq_runtime::kernels::Scalar;
/// use dynq_runtime::ops::rnn::{forward, scratch_lens, Cell, RnnDirection, RnnLayer, RnnShape};
/// use dynq_runtime::ops::{ActQuant, QuantScratch};
/// use dynq_runtime::{F32Linear, Granularity, Linear, RnnInput, RnnOutput, Scheme, Workspace};
/// // A GRU of width 1 whose gates ignore the state: r = z = sigmoid(0), n = tanh(x).
/// let wi = Linear::F32(F32Linear { n: 3, k: 1, weight: &[0.0, 0.0, 1.0], bias: None });
/// let wh = Linear::F32(F32Linear { n: 3, k: 1, weight: &[0.0; 3], bias: None });
/// let layers = [RnnLayer { forward: RnnDirection { input: wi, hidden: wh }, reverse: None }];
/// let shape = RnnShape { cell: Cell::Gru, input_size: 1, hidden_size: 1, num_layers: 1,
///     directions: 1, batch_first: false };
/// let (mut output, mut h_n) = ([0f32; 2], [0f32; 1]);
/// let mut ws = Workspace::new();
/// let (f, q, rows) = scratch_lens(&shape, 2, 1);
/// let b = ws.buffers(f, q, rows);
/// let aq = ActQuant { granularity: Granularity::PerToken, scheme: Scheme::Symmetric };
/// let mut quant = QuantScratch { quant: b.quant, scales: b.scales, zero_points: b.zero_points };
/// forward::<_, 1, 1, 3, 1>(Scalar::new(), &shape, &layers, aq, &RnnInput::sequence(&[1.0, 1.0], 2),
///     RnnOutput { output: &mut output, h_n: &mut h_n, c_n: &mut [] }, b.f32, &mut quant);
/// let n = 1f32.tanh();
/// assert!((output[0] - 0.5 * n).abs() < 1e-6);
/// assert!((output[1] - ((output[0] - n) * 0.5 + n)).abs() < 1e-6);
/// ```
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn forward<Kn: Kernel, const IN: usize, const H: usize, const G: usize, const DH: usize>(
    kernel: Kn,
    shape: &RnnShape,
    layers: &[RnnLayer<'_>],
    aq: ActQuant,
    x: &RnnInput<'_>,
    out: RnnOutput<'_>,
    f32_scratch: &mut [f32],
    quant: &mut QuantScratch<'_>,
) {
    debug_assert_eq!(
        (shape.input_size, shape.hidden_size, G, DH),
        (IN, H, shape.cell.gates() * H, shape.directions * H)
    );
    let (steps, batch) = (x.steps, x.batch);
    let rows = steps * batch;
    let transpose = shape.batch_first && batch > 1;
    let (gates_x, rest) = f32_scratch.split_at_mut(2 * rows * G);
    let (gates_h, rest) = rest.split_at_mut(2 * batch * G);
    let (residual, rest) = rest.split_at_mut(rows * IN.max(DH).max(H));
    let (input_tm, rest) = rest.split_at_mut(if transpose { rows * IN } else { 0 });
    let input: &[f32] = if transpose {
        to_time_major(x.input, steps, batch, IN, input_tm);
        input_tm
    } else {
        x.input
    };
    // States start as the given ones (or zeros) and are updated in place into h_n / c_n.
    match x.h0 {
        Some(h0) => out.h_n.copy_from_slice(h0),
        None => out.h_n.fill(0.0),
    }
    match x.c0 {
        Some(c0) => out.c_n.copy_from_slice(c0),
        None => out.c_n.fill(0.0),
    }
    // Layer outputs ping-pong between two buffers; the last layer writes `out.output`
    // directly unless it must be transposed back to batch-first.
    let (buf_a, rest) = rest.split_at_mut(if shape.num_layers > 1 || transpose {
        rows * DH
    } else {
        0
    });
    let (buf_b, _) = rest.split_at_mut(
        if shape.num_layers > 2 || (shape.num_layers > 1 && transpose) {
            rows * DH
        } else {
            0
        },
    );
    let state = shape.directions * batch * H;
    let mut scratch = Scratch {
        gates_x,
        gates_h,
        residual,
        quant,
    };
    let pass = Pass {
        kernel,
        cell: shape.cell,
        aq,
        steps,
        batch,
    };
    for (l, layer) in layers.iter().enumerate() {
        let last = l + 1 == layers.len();
        let h = &mut out.h_n[l * state..(l + 1) * state];
        let c: &mut [f32] = match shape.cell {
            Cell::Lstm => &mut out.c_n[l * state..(l + 1) * state],
            Cell::Gru => &mut [],
        };
        let (src, dst): (&[f32], &mut [f32]) = match (l, last && !transpose) {
            (0, true) => (input, &mut *out.output),
            (0, false) => (input, &mut *buf_a),
            (l, true) if l % 2 == 1 => (&*buf_a, &mut *out.output),
            (_, true) => (&*buf_b, &mut *out.output),
            (l, false) if l % 2 == 1 => (&*buf_a, &mut *buf_b),
            (_, false) => (&*buf_b, &mut *buf_a),
        };
        if l == 0 {
            pass.layer::<IN, H, G, DH>(layer, src, h, c, dst, &mut scratch);
        } else {
            pass.layer::<DH, H, G, DH>(layer, src, h, c, dst, &mut scratch);
        }
    }
    if transpose {
        let last = if layers.len() % 2 == 1 {
            &*buf_a
        } else {
            &*buf_b
        };
        to_batch_first(last, steps, batch, DH, out.output);
    }
}

/// The scratch one layer pass carves from.
struct Scratch<'s, 'q> {
    gates_x: &'s mut [f32],
    gates_h: &'s mut [f32],
    residual: &'s mut [f32],
    quant: &'s mut QuantScratch<'q>,
}

/// What every layer pass of one forward call shares.
#[derive(Clone, Copy)]
struct Pass<Kn> {
    kernel: Kn,
    cell: Cell,
    aq: ActQuant,
    steps: usize,
    batch: usize,
}

impl<Kn: Kernel> Pass<Kn> {
    /// One layer, both directions: `x` is `[steps][batch][K]`, `out` `[steps][batch][DH]`;
    /// `h` and `c` are this layer's `[directions][batch][H]` states, updated in place.
    #[inline(always)]
    fn layer<const K: usize, const H: usize, const G: usize, const DH: usize>(
        self,
        layer: &RnnLayer<'_>,
        x: &[f32],
        h: &mut [f32],
        c: &mut [f32],
        out: &mut [f32],
        s: &mut Scratch<'_, '_>,
    ) {
        let Pass {
            kernel,
            cell,
            aq,
            steps,
            batch,
        } = self;
        let rows = steps * batch;
        let directions = std::iter::once(&layer.forward).chain(layer.reverse.as_ref());
        for (d, dir) in directions.enumerate() {
            // All steps' input products at once: M = steps * batch.
            two_term_product::<Kn, K, G>(
                kernel, &dir.input, aq, x, rows, s.quant, s.residual, s.gates_x,
            );
            let h = &mut h[d * batch * H..(d + 1) * batch * H];
            let c = match cell {
                Cell::Lstm => &mut c[d * batch * H..(d + 1) * batch * H],
                Cell::Gru => &mut [][..],
            };
            for step in 0..steps {
                let t = if d == 0 { step } else { steps - 1 - step };
                two_term_product::<Kn, H, G>(
                    kernel,
                    &dir.hidden,
                    aq,
                    h,
                    batch,
                    s.quant,
                    s.residual,
                    s.gates_h,
                );
                for b in 0..batch {
                    let gx = &s.gates_x[(t * batch + b) * G..][..G];
                    let gh = &s.gates_h[b * G..][..G];
                    let hb = &mut h[b * H..][..H];
                    match cell {
                        Cell::Lstm => lstm_cell::<H>(gx, gh, hb, &mut c[b * H..][..H]),
                        Cell::Gru => gru_cell::<H>(gx, gh, hb),
                    }
                    out[(t * batch + b) * DH + d * H..][..H].copy_from_slice(hb);
                }
            }
        }
    }
}

/// `out = x W^T + b` for the `rows` rows of `x` (width `K`), with the activations quantized
/// in two int8 terms when the weights are int8: `x ~ q1 s1`, then the residual
/// `x - q1 s1 ~ q2 s2`, both halves of one integer GEMM (`M = 2 rows`) whose results are
/// added. `out` needs room for `2 rows` rows of `N` (the second half is scratch).
///
/// Why two terms: a recurrent layer feeds its state back into itself at every step and its
/// output into the next layer, so the activations' rounding error compounds along the
/// sequence; the second term takes it from 8 to about 15 bits, leaving the int8 weights' own
/// rounding as the only error (the goldens measure this floor). The cost is small: on the
/// state's product, a GEMV bound by streaming the weights, both rows share each weight load;
/// on the input product, one more row per step in a GEMM that is a small part of a step.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn two_term_product<Kn: Kernel, const K: usize, const N: usize>(
    kernel: Kn,
    w: &Linear<'_>,
    aq: ActQuant,
    x: &[f32],
    rows: usize,
    quant: &mut QuantScratch<'_>,
    residual: &mut [f32],
    out: &mut [f32],
) {
    let q = match w {
        Linear::F32(f) => {
            linear_f32::<Kn, K, N>(kernel, x, rows, f, Activation::None, out);
            return;
        }
        Linear::Int8(q) => q,
    };
    debug_assert_eq!((q.k, q.n), (K, N));
    let stride = padded_k(K);
    let (quant, scales, zero_points) = (
        &mut quant.quant[..2 * rows * stride],
        &mut quant.scales[..2 * rows],
        &mut quant.zero_points[..2 * rows],
    );
    let (q1, q2) = quant.split_at_mut(rows * stride);
    let (s1, s2) = scales.split_at_mut(rows);
    let (z1, z2) = zero_points.split_at_mut(rows);
    let z1 = quantize_activations(&x[..rows * K], rows, K, stride, aq, q1, s1, z1);
    let residual = &mut residual[..rows * K];
    for r in 0..rows {
        let (scale, zp) = (s1[r], z1.map_or(0, |z| z[r]));
        let (xr, qr, rr) = (
            &x[r * K..][..K],
            &q1[r * stride..][..K],
            &mut residual[r * K..][..K],
        );
        for j in 0..K {
            rr[j] = xr[j] - (i32::from(qr[j]) - zp) as f32 * scale;
        }
    }
    let has_zp = quantize_activations(residual, rows, K, stride, aq, q2, s2, z2).is_some();
    let unbiased = QLinear { bias: None, ..*q };
    let task = crate::ops::QgemmBlocks {
        kernel,
        rows: crate::ops::Rows::Quantized {
            quant,
            scales,
            zero_points: has_zp.then_some(&*zero_points),
        },
        stride,
        w: &unbiased,
        act: Activation::None,
        post: crate::ops::Post::None,
    };
    let out = &mut out[..2 * rows * N];
    crate::threads::for_each_block(kernel, 2 * rows, N, 4, 32, out, &mut [], 0, &task);
    let (first, second) = out.split_at_mut(rows * N);
    for r in 0..rows {
        let (o, t) = (&mut first[r * N..][..N], &second[r * N..][..N]);
        match q.bias {
            Some(bias) => {
                for j in 0..N {
                    o[j] = (o[j] + t[j]) + bias[j];
                }
            }
            None => {
                for j in 0..N {
                    o[j] += t[j];
                }
            }
        }
    }
}

/// PyTorch's LSTM cell on one row: gate blocks `i, f, g, o` of `gx + gh`.
#[inline(always)]
fn lstm_cell<const H: usize>(gx: &[f32], gh: &[f32], h: &mut [f32], c: &mut [f32]) {
    let (h, c) = (&mut h[..H], &mut c[..H]);
    let (xi, xf, xg, xo) = (
        &gx[..H],
        &gx[H..2 * H],
        &gx[2 * H..3 * H],
        &gx[3 * H..4 * H],
    );
    let (hi, hf, hg, ho) = (
        &gh[..H],
        &gh[H..2 * H],
        &gh[2 * H..3 * H],
        &gh[3 * H..4 * H],
    );
    for j in 0..H {
        let i = sigmoid(xi[j] + hi[j]);
        let f = sigmoid(xf[j] + hf[j]);
        let g = tanh(xg[j] + hg[j]);
        let o = sigmoid(xo[j] + ho[j]);
        let cy = f * c[j] + i * g;
        c[j] = cy;
        h[j] = o * tanh(cy);
    }
}

/// PyTorch's GRU cell on one row: gate blocks `r, z, n`; `gh` includes `b_hh`, so the reset
/// gate scales `W_hn h + b_hn`.
#[inline(always)]
fn gru_cell<const H: usize>(gx: &[f32], gh: &[f32], h: &mut [f32]) {
    let h = &mut h[..H];
    let (xr, xz, xn) = (&gx[..H], &gx[H..2 * H], &gx[2 * H..3 * H]);
    let (hr, hz, hn) = (&gh[..H], &gh[H..2 * H], &gh[2 * H..3 * H]);
    for j in 0..H {
        let r = sigmoid(xr[j] + hr[j]);
        let z = sigmoid(xz[j] + hz[j]);
        let n = tanh(xn[j] + r * hn[j]);
        h[j] = (h[j] - n) * z + n;
    }
}

/// `[batch][steps][width]` -> `[steps][batch][width]`.
fn to_time_major(x: &[f32], steps: usize, batch: usize, width: usize, out: &mut [f32]) {
    for b in 0..batch {
        for t in 0..steps {
            out[(t * batch + b) * width..][..width]
                .copy_from_slice(&x[(b * steps + t) * width..][..width]);
        }
    }
}

/// `[steps][batch][width]` -> `[batch][steps][width]`.
fn to_batch_first(x: &[f32], steps: usize, batch: usize, width: usize, out: &mut [f32]) {
    for b in 0..batch {
        for t in 0..steps {
            out[(b * steps + t) * width..][..width]
                .copy_from_slice(&x[(t * batch + b) * width..][..width]);
        }
    }
}
