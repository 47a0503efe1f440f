//! Kernel benchmark: the machine's int8 peak, then every kernel this CPU runs on the GEMM
//! shapes of MiniLM-L6 and BERT-base at M = 1, 16, 128, 384.
//!
//! `cargo run --release -p dynq-runtime --example kernel_bench [-- --quick]`
//!
//! The peak is measured in the same process with a pure-register loop of the instruction
//! sequence the x86 kernels use (`vpmaddubsw` + `vpmaddwd` + `vpaddd`, 64 ops per 32 MACs).
//! M = 1 is compared with the time to stream its weights from memory (a measured read
//! bandwidth over a buffer larger than the caches). The last line is the smallest fraction of
//! the peak that the best kernel reaches over the shapes with M >= 16. The AMX kernel, where the
//! CPU has it, is measured against the peak of its own instruction (`tdpbusd` on 16 x 64-byte
//! tiles, from registers) and summed up on a line of its own, with its speed-up over AVX-512
//! VNNI; it is left out of that last line, which stays the `vpdpbusd`/`vpmaddubsw` kernels'.
//! The AVX2 kernel is also measured against the pure-register peak of its own exact sequence
//! (`vpabsb`, then `vpsignb` + `vpmaddubsw` + `vpmaddwd` + `vpaddd` per weight vector): on CPUs
//! where the sign instructions compete with the multiplies for two ports it is the ceiling.
//! Weights are 64-byte aligned, as in a generated model's blob.
//!
//! Before it, one line per kernel for an LSTM step (`nn.LSTM(256, 512)`, one sequence): the
//! time per step of a 64-step sequence through the whole recurrent layer (its share of the
//! input GEMM, the state's two-term quantization and GEMV, the gates), against the time to
//! stream `W_hh` from memory.

use std::hint::black_box;
use std::time::Duration;

use dynq_runtime::kernels::{packed_len, peak, Kernel, QuantizedRows, Scalar};
use dynq_runtime::{Activation, KernelId, QLinear};

/// GEMM shapes (name, K, N).
const SHAPES: [(&str, usize, usize); 6] = [
    ("minilm qkv/out 384x384", 384, 384),
    ("minilm ffn up 384x1536", 384, 1536),
    ("minilm ffn down 1536x384", 1536, 384),
    ("bert-base qkv/out 768x768", 768, 768),
    ("bert-base ffn up 768x3072", 768, 3072),
    ("bert-base ffn down 3072x768", 3072, 768),
];
const MS: [usize; 4] = [1, 16, 128, 384];

/// Median seconds per call of `f` (the same timing as the runtime's peak loops).
fn time(f: impl FnMut(), budget: Duration) -> f64 {
    peak::median_seconds(f, budget)
}

struct Operands {
    a: Vec<i8>,
    scales_m: Vec<f32>,
    w: Aligned,
    scales_n: Vec<f32>,
    col_sums: Vec<i32>,
    bias: Vec<f32>,
    out: Vec<f32>,
}

/// Bytes at a 64-byte aligned offset of their buffer, as the blob places every weight.
struct Aligned {
    buf: Vec<i8>,
    offset: usize,
    len: usize,
}

impl Aligned {
    fn new(bytes: Vec<i8>) -> Self {
        let len = bytes.len();
        let mut buf = vec![0i8; len + 64];
        let offset = buf.as_ptr().align_offset(64);
        buf[offset..offset + len].copy_from_slice(&bytes);
        Aligned { buf, offset, len }
    }
}

impl std::ops::Deref for Aligned {
    type Target = [i8];
    fn deref(&self) -> &[i8] {
        &self.buf[self.offset..self.offset + self.len]
    }
}

fn operands(m: usize, k: usize, n: usize) -> Operands {
    let mut s = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s % 255) as i32 - 127) as i8
    };
    Operands {
        a: (0..m * k).map(|_| next()).collect(),
        scales_m: vec![0.01; m],
        w: Aligned::new((0..packed_len(n, k)).map(|_| next()).collect()),
        scales_n: vec![0.02; n],
        col_sums: vec![0; n],
        bias: vec![0.5; n],
        out: vec![0.0; m * n],
    }
}

fn bench_kernel<K: Kernel>(kernel: K, m: usize, k: usize, n: usize, budget: Duration) -> f64 {
    let mut o = operands(m, k, n);
    let w = QLinear {
        n,
        k,
        weight: &o.w,
        scales: &o.scales_n,
        col_sums: &o.col_sums,
        bias: Some(&o.bias),
    };
    let a = QuantizedRows {
        data: &o.a,
        stride: k,
        scales: &o.scales_m,
        zero_points: None,
    };
    time(
        || kernel.qgemm(a, m, &w, Activation::None, black_box(&mut o.out)),
        budget,
    )
}

/// The LSTM step benchmark's shape: `nn.LSTM(LSTM_IN, LSTM_H)`.
const LSTM_IN: usize = 256;
const LSTM_H: usize = 512;
const LSTM_STEPS: usize = 64;

/// One LSTM layer over `LSTM_STEPS` steps, run inside the kernel's entry point as generated
/// models do.
struct LstmRun<'a> {
    layer: &'a [dynq_runtime::ops::rnn::RnnLayer<'a>],
    input: &'a [f32],
    ws: &'a mut dynq_runtime::Workspace,
    out: &'a mut [f32],
    h_n: &'a mut [f32],
    c_n: &'a mut [f32],
}

const LSTM_SHAPE: dynq_runtime::ops::rnn::RnnShape = dynq_runtime::ops::rnn::RnnShape {
    cell: dynq_runtime::ops::rnn::Cell::Lstm,
    input_size: LSTM_IN,
    hidden_size: LSTM_H,
    num_layers: 1,
    directions: 1,
    batch_first: false,
};

impl dynq_runtime::Job for LstmRun<'_> {
    type Output = ();
    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) {
        use dynq_runtime::ops::{rnn, ActQuant, QuantScratch};
        let (f, q, rows) = rnn::scratch_lens(&LSTM_SHAPE, LSTM_STEPS, 1);
        let b = self.ws.buffers(f, q, rows);
        let mut quant = QuantScratch {
            quant: b.quant,
            scales: b.scales,
            zero_points: b.zero_points,
        };
        let aq = ActQuant {
            granularity: dynq_runtime::Granularity::PerToken,
            scheme: dynq_runtime::Scheme::Symmetric,
        };
        rnn::forward::<K, LSTM_IN, LSTM_H, { 4 * LSTM_H }, LSTM_H>(
            kernel,
            &LSTM_SHAPE,
            self.layer,
            aq,
            &dynq_runtime::RnnInput::sequence(self.input, LSTM_STEPS),
            dynq_runtime::RnnOutput {
                output: self.out,
                h_n: self.h_n,
                c_n: self.c_n,
            },
            b.f32,
            &mut quant,
        );
    }
}

/// Seconds per step of an `nn.LSTM(256, 512)` over 64 steps with kernel `id`.
fn bench_lstm_step(id: KernelId, budget: Duration) -> f64 {
    use dynq_runtime::ops::rnn::{RnnDirection, RnnLayer};
    let g = 4 * LSTM_H;
    let (wi, wh) = (operands(1, LSTM_IN, g), operands(1, LSTM_H, g));
    let scales = vec![0.0005; g];
    fn q<'a>(o: &'a Operands, scales: &'a [f32], n: usize, k: usize) -> dynq_runtime::Linear<'a> {
        dynq_runtime::Linear::Int8(QLinear {
            n,
            k,
            weight: &o.w,
            scales,
            col_sums: &o.col_sums,
            bias: Some(&o.bias),
        })
    }
    let layer = [RnnLayer {
        forward: RnnDirection {
            input: q(&wi, &scales, g, LSTM_IN),
            hidden: q(&wh, &scales, g, LSTM_H),
        },
        reverse: None,
    }];
    let input: Vec<f32> = (0..LSTM_STEPS * LSTM_IN)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let mut ws = dynq_runtime::Workspace::new();
    let (mut out, mut h_n, mut c_n) = (
        vec![0.0; LSTM_STEPS * LSTM_H],
        vec![0.0; LSTM_H],
        vec![0.0; LSTM_H],
    );
    let secs = time(
        || {
            let job = LstmRun {
                layer: &layer,
                input: &input,
                ws: &mut ws,
                out: &mut out,
                h_n: &mut h_n,
                c_n: &mut c_n,
            };
            dynq_runtime::dispatch(job, &[id]).expect("kernel available");
            black_box(&out);
        },
        budget,
    );
    secs / LSTM_STEPS as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 150 } else { 600 });
    // The peaks and the bandwidth come from the runtime (`kernels::peak`), the figures the
    // per-op profile compares each op with.
    let spin = Duration::from_millis(1500);
    let peak = peak::maddubs_gops(spin);
    let sign_peak = peak::int8_gops(KernelId::Avx2, spin);
    let (peak512, peak256, peak_amx) = (
        peak::int8_gops(KernelId::Avx512Vnni, spin),
        peak::int8_gops(KernelId::AvxVnni, spin),
        peak::int8_gops(KernelId::Amx, spin),
    );
    let bw = peak::read_gbps(256 << 20, 1, spin);
    match peak {
        Some(p) => println!("int8 peak (vpmaddubsw+vpmaddwd+vpaddd, one core): {p:.1} GOP/s"),
        None => println!("int8 peak: no x86 AVX2 here; fractions are left out"),
    }
    if let (Some(p), Some(sp)) = (peak, sign_peak) {
        println!(
            "int8 peak of the exact AVX2 sequence (vpabsb + 2x vpsignb+vpmaddubsw+vpmaddwd+vpaddd, one core): {sp:.1} GOP/s ({:.2} of the above)",
            sp / p
        );
    }
    if let Some(p) = peak512 {
        println!("int8 peak (vpdpbusd zmm, one core): {p:.1} GOP/s");
    }
    if let Some(p) = peak256 {
        println!("int8 peak (vpdpbusd ymm, one core): {p:.1} GOP/s");
    }
    if let Some(p) = peak_amx {
        println!("int8 peak (tdpbusd AMX tiles, one core): {p:.1} GOP/s");
    }
    println!("memory read bandwidth: {bw:.1} GB/s");
    println!(
        "cache read bandwidth (256 KiB, one core): {:.1} GB/s; f32 FMA peak (one core): {:.1} GFLOP/s",
        peak::read_gbps(256 << 10, 1, spin),
        peak::f32_fma_gflops(spin)
    );
    println!();
    println!("| kernel | shape | M | ms | GOP/s | fraction of peak | M=1 vs weight streaming |");
    println!("|---|---|---|---|---|---|---|");

    #[allow(unused_mut)]
    let mut kernels: Vec<KernelId> = vec![KernelId::Scalar];
    #[cfg(target_arch = "x86_64")]
    if dynq_runtime::kernels::Avx2::detect().is_some() {
        kernels.push(KernelId::Avx2);
    }
    #[cfg(target_arch = "x86_64")]
    if dynq_runtime::kernels::AvxVnni::detect().is_some() {
        kernels.push(KernelId::AvxVnni);
    }
    #[cfg(target_arch = "x86_64")]
    if dynq_runtime::kernels::Avx512Vnni::detect().is_some() {
        kernels.push(KernelId::Avx512Vnni);
    }
    #[cfg(target_arch = "x86_64")]
    if dynq_runtime::kernels::Amx::detect().is_some() {
        kernels.push(KernelId::Amx);
    }
    #[cfg(target_arch = "aarch64")]
    {
        if dynq_runtime::kernels::NeonDot::detect().is_some() {
            kernels.push(KernelId::NeonDot);
        }
        if dynq_runtime::kernels::NeonI8mm::detect().is_some() {
            kernels.push(KernelId::NeonI8mm);
        }
    }
    // The last line's kernel: the best of the vector kernels (AMX is summed up on its own).
    let best = *kernels
        .iter()
        .rev()
        .find(|&&k| k != KernelId::Amx)
        .expect("scalar");
    let mut min_fraction = f64::INFINITY;
    // AMX: the smallest fraction of its own peak and its speed-up over AVX-512 VNNI, M >= 16.
    let mut amx_fraction = f64::INFINITY;
    let mut vnni_gops = std::collections::HashMap::new();
    let mut amx_speedup: Vec<f64> = Vec::new();
    // AVX2: the smallest fraction of the ceiling of its own exact sequence, M >= 16.
    let mut avx2_sign_fraction = f64::INFINITY;
    for &id in &kernels {
        for (name, k, n) in SHAPES {
            for m in MS {
                if id == KernelId::Scalar && (quick || m > 16) {
                    continue; // the reference is slow; its large shapes say nothing new
                }
                let secs = match id {
                    #[cfg(target_arch = "x86_64")]
                    KernelId::Avx2 => bench_kernel(
                        dynq_runtime::kernels::Avx2::detect().expect("detected"),
                        m,
                        k,
                        n,
                        budget,
                    ),
                    #[cfg(target_arch = "x86_64")]
                    KernelId::AvxVnni => bench_kernel(
                        dynq_runtime::kernels::AvxVnni::detect().expect("detected"),
                        m,
                        k,
                        n,
                        budget,
                    ),
                    #[cfg(target_arch = "x86_64")]
                    KernelId::Amx => bench_kernel(
                        dynq_runtime::kernels::Amx::detect().expect("detected"),
                        m,
                        k,
                        n,
                        budget,
                    ),
                    #[cfg(target_arch = "x86_64")]
                    KernelId::Avx512Vnni => bench_kernel(
                        dynq_runtime::kernels::Avx512Vnni::detect().expect("detected"),
                        m,
                        k,
                        n,
                        budget,
                    ),
                    #[cfg(target_arch = "aarch64")]
                    KernelId::NeonDot => bench_kernel(
                        dynq_runtime::kernels::NeonDot::detect().expect("detected"),
                        m,
                        k,
                        n,
                        budget,
                    ),
                    #[cfg(target_arch = "aarch64")]
                    KernelId::NeonI8mm => bench_kernel(
                        dynq_runtime::kernels::NeonI8mm::detect().expect("detected"),
                        m,
                        k,
                        n,
                        budget,
                    ),
                    _ => bench_kernel(Scalar::new(), m, k, n, budget),
                };
                let gops = 2.0 * (m * k * n) as f64 / secs / 1e9;
                // Each kernel against the peak of its own instruction sequence.
                let own_peak = match id {
                    KernelId::Avx512Vnni => peak512,
                    KernelId::AvxVnni => peak256,
                    KernelId::Amx => peak_amx,
                    _ => peak,
                };
                let fraction = own_peak.map(|p| gops / p);
                let stream = if m == 1 {
                    let bytes = packed_len(n, k) as f64;
                    format!("{:.2}x", secs / (bytes / (bw * 1e9)))
                } else {
                    String::new()
                };
                println!(
                    "| {} | {name} | {m} | {:.3} | {gops:.1} | {} | {stream} |",
                    id.name(),
                    secs * 1e3,
                    fraction.map_or("-".into(), |f| format!("{f:.2}"))
                );
                if id == best && m >= 16 {
                    if let Some(f) = fraction {
                        min_fraction = min_fraction.min(f);
                    }
                }
                if id == KernelId::Avx2 && m >= 16 {
                    if let Some(sp) = sign_peak {
                        avx2_sign_fraction = avx2_sign_fraction.min(gops / sp);
                    }
                }
                if id == KernelId::Avx512Vnni {
                    vnni_gops.insert((name, m), gops);
                }
                if id == KernelId::Amx && m >= 16 {
                    if let Some(f) = fraction {
                        amx_fraction = amx_fraction.min(f);
                    }
                    if let Some(v) = vnni_gops.get(&(name, m)) {
                        amx_speedup.push(gops / v);
                    }
                }
            }
        }
    }
    println!();
    let wh_bytes = packed_len(4 * LSTM_H, LSTM_H) as f64;
    for &id in &kernels {
        let step = bench_lstm_step(id, budget);
        println!(
            "LSTM step (M = 1, nn.LSTM({LSTM_IN}, {LSTM_H}), {LSTM_STEPS} steps): {}: {:.1} us per step, {:.2}x the time to stream W_hh ({:.0} KiB)",
            id.name(),
            step * 1e6,
            step / (wh_bytes / (bw * 1e9)),
            wh_bytes / 1024.0
        );
    }
    println!();
    if amx_fraction.is_finite() {
        let (lo, hi) = amx_speedup
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), &s| {
                (lo.min(s), hi.max(s))
            });
        println!(
            "amx (M>=16): min fraction of the tdpbusd tile peak {amx_fraction:.2}, {lo:.1}x to {hi:.1}x the GOP/s of avx512vnni"
        );
    }
    if avx2_sign_fraction.is_finite() {
        println!("avx2 (M>=16): min fraction of the exact-sequence peak {avx2_sign_fraction:.2}");
    }
    println!("best kernel: {}", best.name());
    if min_fraction.is_finite() {
        println!("min fraction of peak (M>=16): {min_fraction:.2}");
    } else {
        println!("min fraction of peak (M>=16): n/a");
    }
}
