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
use std::time::{Duration, Instant};

use dynq_runtime::kernels::{packed_len, Kernel, QuantizedRows, Scalar};
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

/// Median seconds per call of `f`, over batches of at least `min_batch`.
fn time(mut f: impl FnMut(), budget: Duration) -> f64 {
    f();
    let start = Instant::now();
    let mut reps = 0u32;
    while start.elapsed() < budget / 10 {
        f();
        reps += 1;
    }
    let per_batch = reps.max(1);
    let mut samples = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        samples.push(t.elapsed().as_secs_f64() / f64::from(per_batch));
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// GOP/s of a pure-register loop: `spin(iters)` runs `iters` iterations of `ops_per_iter` ops.
#[cfg(target_arch = "x86_64")]
fn spin_gops<R>(iters: u64, ops_per_iter: f64, spin: impl Fn(u64) -> R) -> f64 {
    let secs = time(
        || {
            black_box(spin(black_box(iters)));
        },
        Duration::from_millis(1500),
    );
    iters as f64 * ops_per_iter / secs / 1e9
}

/// The eight lanes of a ymm register (keeps a spin loop's result alive).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes(v: std::arch::x86_64::__m256i) -> [i32; 8] {
    let mut out = [0i32; 8];
    // SAFETY: `out` holds 8 i32, one unaligned 32-byte store.
    unsafe { std::arch::x86_64::_mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
    out
}

#[cfg(target_arch = "x86_64")]
fn int8_peak_gops() -> Option<f64> {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2")]
    fn spin(iters: u64) -> [i32; 8] {
        let ones = _mm256_set1_epi16(1);
        let b = _mm256_set1_epi8(-2);
        // Twelve independent chains; each feeds its accumulator back as the next u8 operand,
        // so nothing is loop-invariant and the loop is throughput-bound, not latency-bound.
        let mut acc = [0; 12].map(|i| _mm256_set1_epi8(i + 1));
        for _ in 0..iters {
            for acc in acc.iter_mut() {
                *acc =
                    _mm256_add_epi32(*acc, _mm256_madd_epi16(_mm256_maddubs_epi16(*acc, b), ones));
            }
        }
        let mut s = acc[0];
        for v in &acc[1..] {
            s = _mm256_add_epi32(s, *v);
        }
        lanes(s)
    }
    dynq_runtime::kernels::Avx2::detect()?;
    // SAFETY: AVX2 detected above.
    Some(spin_gops(200_000u64, 12.0 * 64.0, |n| unsafe { spin(n) }))
}

#[cfg(not(target_arch = "x86_64"))]
fn int8_peak_gops() -> Option<f64> {
    None
}

/// The peak of the exact AVX2 sequence (the one [`dynq_runtime::kernels::Avx2`] runs, so its
/// ceiling): per broadcast activation vector, `vpabsb` once, then for each of two weight vectors
/// `vpsignb` + `vpmaddubsw` + `vpmaddwd` + `vpaddd` (128 ops per broadcast). `vpabsb` and
/// `vpsignb` need the same vector ports as the multiplies on CPUs whose integer multiplies run on
/// two ports (Intel since Skylake), so this is below [`int8_peak_gops`] there.
#[cfg(target_arch = "x86_64")]
fn sign_trick_peak_gops() -> Option<f64> {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2")]
    fn spin(iters: u64) -> [i32; 8] {
        let ones = _mm256_set1_epi16(1);
        let (w0, w1) = (_mm256_set1_epi8(-2), _mm256_set1_epi8(3));
        // Six rows of two accumulators; each row's first accumulator is its next activation
        // vector, so nothing is loop-invariant.
        let mut acc = [0; 6].map(|i| [_mm256_set1_epi8(i + 1), _mm256_set1_epi8(i + 7)]);
        for _ in 0..iters {
            for [a0, a1] in acc.iter_mut() {
                let av = *a0;
                let aa = _mm256_abs_epi8(av);
                let p0 =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w0, av)), ones);
                let p1 =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w1, av)), ones);
                *a0 = _mm256_add_epi32(*a0, p0);
                *a1 = _mm256_add_epi32(*a1, p1);
            }
        }
        let mut s = _mm256_setzero_si256();
        for [a0, a1] in &acc {
            s = _mm256_add_epi32(s, _mm256_add_epi32(*a0, *a1));
        }
        lanes(s)
    }
    dynq_runtime::kernels::Avx2::detect()?;
    // SAFETY: AVX2 detected above.
    Some(spin_gops(200_000u64, 6.0 * 128.0, |n| unsafe { spin(n) }))
}

#[cfg(not(target_arch = "x86_64"))]
fn sign_trick_peak_gops() -> Option<f64> {
    None
}

/// The AVX-512 VNNI peak: independent `vpdpbusd` zmm chains (64 MACs = 128 ops each).
#[cfg(target_arch = "x86_64")]
fn vnni512_peak_gops() -> Option<f64> {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn spin(iters: u64) -> i32 {
        let b = _mm512_set1_epi8(3);
        let mut acc = [_mm512_setzero_si512(); 12];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm512_set1_epi32(i as i32 + 1);
        }
        for _ in 0..iters {
            for acc in acc.iter_mut() {
                *acc = _mm512_dpbusd_epi32(*acc, *acc, b);
            }
        }
        acc.iter().fold(0, |s, v| s ^ _mm512_reduce_add_epi32(*v))
    }
    dynq_runtime::kernels::Avx512Vnni::detect()?;
    // SAFETY: AVX-512 VNNI detected above.
    Some(spin_gops(200_000u64, 12.0 * 128.0, |n| unsafe { spin(n) }))
}

/// The AVX-VNNI peak: independent `vpdpbusd` ymm chains (32 MACs = 64 ops each).
#[cfg(target_arch = "x86_64")]
fn vnni256_peak_gops() -> Option<f64> {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avxvnni,avx2")]
    fn spin(iters: u64) -> [i32; 8] {
        let b = _mm256_set1_epi8(3);
        let mut acc = [_mm256_setzero_si256(); 12];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm256_set1_epi32(i as i32 + 1);
        }
        for _ in 0..iters {
            for acc in acc.iter_mut() {
                *acc = _mm256_dpbusd_avx_epi32(*acc, *acc, b);
            }
        }
        let mut s = acc[0];
        for v in &acc[1..] {
            s = _mm256_xor_si256(s, *v);
        }
        lanes(s)
    }
    dynq_runtime::kernels::AvxVnni::detect()?;
    // SAFETY: AVX-VNNI detected above.
    Some(spin_gops(200_000u64, 12.0 * 64.0, |n| unsafe { spin(n) }))
}

/// The AMX-INT8 peak: `tdpbusd` on four independent 16 x 16 i32 accumulator tiles from
/// registers (16 x 16 x 64 MACs = 32768 ops each).
#[cfg(target_arch = "x86_64")]
fn amx_peak_gops() -> Option<f64> {
    use std::arch::asm;
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
        reserved2: [u8; 16],
    }
    fn spin(iters: u64) {
        let mut config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
            reserved2: [0; 16],
        };
        config.colsb[..8].fill(64);
        config.rows[..8].fill(16);
        // SAFETY: `Amx::detect` (checked by the caller) proved AMX-INT8 and asked the OS for
        // the tile state; the configuration is valid (8 tiles of 16 x 64 bytes), the loop
        // touches only tile registers and the counter, and the tiles are released at the end.
        unsafe {
            asm!(
                "ldtilecfg [{cfg}]",
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "tilezero tmm4",
                "tilezero tmm5",
                "tilezero tmm6",
                "tilezero tmm7",
                "2:",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                "dec {n}",
                "jnz 2b",
                "tilerelease",
                cfg = in(reg) &config,
                n = inout(reg) iters => _,
                options(nostack),
            );
        }
    }
    dynq_runtime::kernels::Amx::detect()?;
    Some(spin_gops(100_000, 4.0 * 32768.0, spin))
}

/// Read bandwidth in GB/s over a buffer well beyond the last-level cache.
fn dram_gbps() -> f64 {
    let buf: Vec<u64> = (0..(256usize << 20) / 8).map(|i| i as u64).collect();
    let secs = time(
        || {
            black_box(buf.chunks(8).fold(0u64, |s, c| s.wrapping_add(c[0] ^ c[7])));
        },
        Duration::from_millis(1500),
    );
    buf.len() as f64 * 8.0 / secs / 1e9
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
    let peak = int8_peak_gops();
    let sign_peak = sign_trick_peak_gops();
    #[cfg(target_arch = "x86_64")]
    let (peak512, peak256, peak_amx) = (vnni512_peak_gops(), vnni256_peak_gops(), amx_peak_gops());
    #[cfg(not(target_arch = "x86_64"))]
    let (peak512, peak256, peak_amx): (Option<f64>, Option<f64>, Option<f64>) = (None, None, None);
    let bw = dram_gbps();
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
