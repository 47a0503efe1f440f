//! The machine's measured limits: the throughput of each kernel's multiply instruction from a
//! register-only loop, the f32 FMA peak, and read bandwidth from cache and from memory.
//! `kernel_bench` compares the kernels with these figures, and [`crate::profile`] each op of a
//! forward.
//!
//! Each peak loop runs independent dependency chains that feed their results back as the next
//! operand, so nothing is loop-invariant and the loop is throughput-bound, not latency-bound.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::KernelId;

/// Median seconds per call of `f` over seven batches, the batch sized to `budget / 10`.
pub fn median_seconds(mut f: impl FnMut(), budget: Duration) -> f64 {
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

/// G ops/s of a loop: `spin(iters)` runs `iters` iterations of `ops_per_iter` operations.
#[cfg(target_arch = "x86_64")]
fn spin_gops<R>(iters: u64, ops_per_iter: f64, budget: Duration, spin: impl Fn(u64) -> R) -> f64 {
    let secs = median_seconds(
        || {
            black_box(spin(black_box(iters)));
        },
        budget,
    );
    iters as f64 * ops_per_iter / secs / 1e9
}

/// The instruction whose peak bounds `kernel`'s GEMM, as [`int8_gops`] measures it.
pub fn int8_instruction(kernel: KernelId) -> &'static str {
    match kernel {
        KernelId::Amx => "tdpbusd",
        KernelId::Avx512Vnni => "vpdpbusd zmm",
        KernelId::AvxVnni => "vpdpbusd ymm",
        KernelId::Avx2 => "vpsignb + vpmaddubsw + vpmaddwd",
        KernelId::NeonDot => "sdot (not measured)",
        KernelId::NeonI8mm => "smmla (not measured)",
        KernelId::Scalar => "scalar (no peak)",
    }
}

/// Int8 G ops/s (2 per multiply-add) of one core at the peak of the instruction sequence
/// `kernel`'s GEMM runs: `vpdpbusd` on zmm or ymm, AVX2's exact sign-trick sequence, AMX's
/// `tdpbusd`. `None` where this process cannot run `kernel` or no loop exists for it (scalar,
/// NEON).
pub fn int8_gops(kernel: KernelId, budget: Duration) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        match kernel {
            KernelId::Amx => x86::amx(budget),
            KernelId::Avx512Vnni => x86::vnni512(budget),
            KernelId::AvxVnni => x86::vnni256(budget),
            KernelId::Avx2 => x86::sign_trick(budget),
            _ => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, budget);
        None
    }
}

/// Int8 G ops/s of one core for plain `vpmaddubsw` + `vpmaddwd` + `vpaddd` (64 ops per 32
/// multiply-adds): the AVX2 ceiling without the sign trick. `None` without AVX2.
pub fn maddubs_gops(budget: Duration) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        x86::maddubs(budget)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = budget;
        None
    }
}

/// f32 G flops/s of one core (2 per fused multiply-add) on the widest FMA vectors the CPU
/// has (zmm with AVX-512 F, else ymm with AVX2 + FMA, else what the compiler makes of a
/// portable loop).
pub fn f32_fma_gflops(budget: Duration) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if let Some(g) = x86::fma(budget) {
        return g;
    }
    portable_fma(budget)
}

/// The portable FMA loop: eight chains of 8 lanes.
fn portable_fma(budget: Duration) -> f64 {
    let iters = 100_000u64;
    let secs = median_seconds(
        || {
            let mut acc = [[1.0f32; 8]; 8];
            let (a, b) = (black_box(0.999_f32), black_box(1e-6_f32));
            for _ in 0..black_box(iters) {
                for chain in acc.iter_mut() {
                    for v in chain.iter_mut() {
                        *v = v.mul_add(a, b);
                    }
                }
            }
            black_box(acc);
        },
        budget,
    );
    iters as f64 * 64.0 * 2.0 / secs / 1e9
}

/// Read bandwidth in GB/s over a buffer of `bytes` bytes, read over and over by `threads`
/// threads at once (each its own `bytes / threads` piece): a buffer that fits a core's cache
/// measures that cache, one well beyond the last level measures memory.
pub fn read_gbps(bytes: usize, threads: usize, budget: Duration) -> f64 {
    let threads = threads.max(1);
    let words = (bytes / 8).max(8 * threads);
    let buf: Vec<u64> = (0..words).map(|i| i as u64).collect();
    let piece = words.div_ceil(threads).next_multiple_of(8);
    // Every eighth word of each 64-byte line is enough to bring the line in; summing two words
    // per line keeps the loop short of the core's load limit.
    let read = |p: &[u64]| {
        p.chunks(8)
            .fold(0u64, |s, c| s.wrapping_add(c[0] ^ c[c.len() - 1]))
    };
    let secs = median_seconds(
        || {
            if threads == 1 {
                black_box(read(&buf));
            } else {
                std::thread::scope(|s| {
                    for p in buf.chunks(piece) {
                        s.spawn(move || black_box(read(p)));
                    }
                });
            }
        },
        budget,
    );
    words as f64 * 8.0 / secs / 1e9
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::time::Duration;

    use super::spin_gops;
    use crate::kernels::{Amx, Avx2, Avx512Vnni, AvxVnni};

    /// The eight lanes of a ymm register (keeps a loop's result alive).
    #[target_feature(enable = "avx2")]
    fn lanes(v: __m256i) -> [i32; 8] {
        let mut out = [0i32; 8];
        // SAFETY: `out` holds 8 i32, one unaligned 32-byte store.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
        out
    }

    /// `vpmaddubsw` + `vpmaddwd` + `vpaddd`, twelve chains (64 ops per 32 multiply-adds).
    pub(super) fn maddubs(budget: Duration) -> Option<f64> {
        #[target_feature(enable = "avx2")]
        fn spin(iters: u64) -> [i32; 8] {
            let ones = _mm256_set1_epi16(1);
            let b = _mm256_set1_epi8(-2);
            let mut acc = [0; 12].map(|i| _mm256_set1_epi8(i + 1));
            for _ in 0..iters {
                for acc in acc.iter_mut() {
                    *acc = _mm256_add_epi32(
                        *acc,
                        _mm256_madd_epi16(_mm256_maddubs_epi16(*acc, b), ones),
                    );
                }
            }
            let mut s = acc[0];
            for v in &acc[1..] {
                s = _mm256_add_epi32(s, *v);
            }
            lanes(s)
        }
        Avx2::detect()?;
        // SAFETY: AVX2 detected above.
        Some(spin_gops(200_000, 12.0 * 64.0, budget, |n| unsafe {
            spin(n)
        }))
    }

    /// The exact AVX2 sequence ([`Avx2`]'s ceiling): per broadcast activation vector,
    /// `vpabsb` once, then for each of two weight vectors `vpsignb` + `vpmaddubsw` +
    /// `vpmaddwd` + `vpaddd` (128 ops per broadcast). The sign instructions share the vector
    /// ports of the multiplies on CPUs whose integer multiplies run on two ports (Intel since
    /// Skylake), so this is below [`maddubs`] there.
    pub(super) fn sign_trick(budget: Duration) -> Option<f64> {
        #[target_feature(enable = "avx2")]
        fn spin(iters: u64) -> [i32; 8] {
            let ones = _mm256_set1_epi16(1);
            let (w0, w1) = (_mm256_set1_epi8(-2), _mm256_set1_epi8(3));
            // Six rows of two accumulators; each row's first accumulator is its next
            // activation vector.
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
        Avx2::detect()?;
        // SAFETY: AVX2 detected above.
        Some(spin_gops(200_000, 6.0 * 128.0, budget, |n| unsafe {
            spin(n)
        }))
    }

    /// Independent `vpdpbusd` zmm chains (64 multiply-adds = 128 ops each).
    pub(super) fn vnni512(budget: Duration) -> Option<f64> {
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
        Avx512Vnni::detect()?;
        // SAFETY: AVX-512 VNNI detected above.
        Some(spin_gops(200_000, 12.0 * 128.0, budget, |n| unsafe {
            spin(n)
        }))
    }

    /// Independent `vpdpbusd` ymm chains (VEX, 32 multiply-adds = 64 ops each).
    pub(super) fn vnni256(budget: Duration) -> Option<f64> {
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
        AvxVnni::detect()?;
        // SAFETY: AVX-VNNI detected above.
        Some(spin_gops(200_000, 12.0 * 64.0, budget, |n| unsafe {
            spin(n)
        }))
    }

    /// Independent f32 FMA chains: twelve on zmm with AVX-512 F, else on ymm with AVX2 + FMA.
    pub(super) fn fma(budget: Duration) -> Option<f64> {
        #[target_feature(enable = "avx512f")]
        fn spin512(iters: u64) -> f32 {
            let (a, b) = (_mm512_set1_ps(0.999), _mm512_set1_ps(1e-6));
            let mut acc = [0; 12].map(|i| _mm512_set1_ps(i as f32));
            for _ in 0..iters {
                for acc in acc.iter_mut() {
                    *acc = _mm512_fmadd_ps(*acc, a, b);
                }
            }
            acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
        }
        #[target_feature(enable = "avx2,fma")]
        fn spin256(iters: u64) -> [i32; 8] {
            let (a, b) = (_mm256_set1_ps(0.999), _mm256_set1_ps(1e-6));
            let mut acc = [0; 12].map(|i| _mm256_set1_ps(i as f32));
            for _ in 0..iters {
                for acc in acc.iter_mut() {
                    *acc = _mm256_fmadd_ps(*acc, a, b);
                }
            }
            let mut s = acc[0];
            for v in &acc[1..] {
                s = _mm256_add_ps(s, *v);
            }
            lanes(_mm256_castps_si256(s))
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F detected above.
            return Some(spin_gops(200_000, 12.0 * 32.0, budget, |n| unsafe {
                spin512(n)
            }));
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA detected above.
            return Some(spin_gops(200_000, 12.0 * 16.0, budget, |n| unsafe {
                spin256(n)
            }));
        }
        None
    }

    /// `tdpbusd` on four independent 16 x 16 i32 accumulator tiles from registers
    /// (16 x 16 x 64 multiply-adds = 32768 ops each).
    pub(super) fn amx(budget: Duration) -> Option<f64> {
        use std::arch::asm;

        use crate::kernels::amx::TileConfig;
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
            // SAFETY: `Amx::detect` (checked by the caller) proved AMX-INT8 and asked the OS
            // for the tile state; the configuration is valid (8 tiles of 16 x 64 bytes), the
            // loop touches only tile registers and the counter, and the tiles are released at
            // the end.
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
        Amx::detect()?;
        Some(spin_gops(100_000, 4.0 * 32768.0, budget, spin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_positive_and_finite() {
        let b = Duration::from_millis(20);
        let f = f32_fma_gflops(b);
        assert!(f.is_finite() && f > 0.0, "{f}");
        let r = read_gbps(64 << 10, 2, b);
        assert!(r.is_finite() && r > 0.0, "{r}");
        if let Some(g) = int8_gops(crate::selected_kernel().expect("a kernel"), b) {
            assert!(g.is_finite() && g > 0.0, "{g}");
        }
        assert_eq!(int8_gops(KernelId::Scalar, b), None);
    }
}
