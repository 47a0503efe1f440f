//! BERT self-attention (f32): every kernel's entry point, blocked 8 or 4 queries at a time with
//! 32, 16, 8 and 1 key/lane remainders, against softmax(Q K^T / sqrt(d) + mask) V computed
//! here in f64, over head widths and lengths that hit every remainder (1 token, 7, 9, 33 ...).
//! Cases with an even seed also carry a relative position bias per head (MPNet's); cases
//! whose seed is 1 modulo 3 attend through a sliding window (ModernBERT's local layers).

use dynq_runtime::kernels::Kernel;
use dynq_runtime::ops::bert::{
    attention, attention_bf16, key_stride, scores_len, tile_spare_len, EncoderDims, ScoreBias,
    MIN_TILE_TOKENS,
};
use dynq_runtime::KernelId;
use proptest::prelude::*;

struct Case {
    dims: EncoderDims,
    len: usize,
    qkv: Vec<f32>,
    mask_bias: Vec<f32>,
    /// `[heads][2 len - 1]`: added to the score of query i and key j at `len - 1 + j - i`.
    relative: Option<Vec<f32>>,
    /// Query i attends to keys j with |i - j| <= window only.
    window: Option<usize>,
}

impl Case {
    /// `[len][q | k | v]`, heads contiguous in each.
    fn new(heads: usize, d: usize, len: usize, scale: f32, masked: &[bool], seed: u64) -> Self {
        let hidden = heads * d;
        let mut state = seed | 1;
        let qkv = (0..len * 3 * hidden)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
            })
            .collect();
        let mut mask_bias: Vec<f32> = (0..len)
            .map(|j| {
                if masked[j % masked.len()] {
                    f32::MIN
                } else {
                    0.0
                }
            })
            .collect();
        mask_bias[0] = 0.0; // at least one key attended
        let window = (seed % 3 == 1).then_some(1 + (seed / 3 % 9) as usize);
        if let Some(w) = window {
            // At least one key attended in every query's window.
            for j in (0..len).step_by(w + 1) {
                mask_bias[j] = 0.0;
            }
        }
        let relative = seed.is_multiple_of(2).then(|| {
            (0..heads * (2 * len - 1))
                .map(|t| ((t * 37 + seed as usize) % 23) as f32 / 23.0 * 4.0 - 2.0)
                .collect()
        });
        Case {
            dims: EncoderDims {
                hidden,
                heads,
                intermediate: 1,
            },
            len,
            qkv,
            mask_bias,
            relative,
            window,
        }
    }

    fn reference(&self) -> Vec<f64> {
        let (h, heads, len) = (self.dims.hidden, self.dims.heads, self.len);
        let d = h / heads;
        let at = |i: usize, part: usize, c: usize| f64::from(self.qkv[i * 3 * h + part * h + c]);
        let mut out = vec![0.0; len * h];
        for head in 0..heads {
            for i in 0..len {
                let s: Vec<f64> = (0..len)
                    .map(|j| {
                        let dot: f64 = (0..d)
                            .map(|c| at(i, 0, head * d + c) * at(j, 1, head * d + c))
                            .sum();
                        let rel = self.relative.as_ref().map_or(0.0, |r| {
                            f64::from(r[head * (2 * len - 1) + len - 1 + j - i])
                        });
                        dot / (d as f64).sqrt() + rel + f64::from(self.mask_bias[j])
                    })
                    .collect();
                let outside = |j: usize| self.window.is_some_and(|w| i.abs_diff(j) > w);
                let max = (0..len)
                    .filter(|&j| !outside(j))
                    .map(|j| s[j])
                    .fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = (0..len)
                    .map(|j| if outside(j) { 0.0 } else { (s[j] - max).exp() })
                    .collect();
                let sum: f64 = e.iter().sum();
                for c in 0..d {
                    out[i * h + head * d + c] =
                        (0..len).map(|j| e[j] / sum * at(j, 2, head * d + c)).sum();
                }
            }
        }
        out
    }
}

/// One attention call through `dispatch`, so it compiles inside the kernel's entry point as in
/// generated models: [`attention`], or [`attention_bf16`] with `Bf16`.
struct Run<'a>(&'a Case);
struct Bf16<'a>(&'a Case);

impl dynq_runtime::Job for Run<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) -> Vec<f32> {
        run_attention(kernel, self.0, false)
    }
}

impl dynq_runtime::Job for Bf16<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) -> Vec<f32> {
        run_attention(kernel, self.0, true)
    }
}

#[inline(always)]
fn run_attention<K: Kernel>(kernel: K, c: &Case, bf16: bool) -> Vec<f32> {
    let (h, len) = (c.dims.hidden, c.len);
    let mut scores = vec![0.0; scores_len(len, dynq_runtime::threads::count())];
    // NaN: the padding between rows of the transposed keys must never be read.
    let mut kt = vec![f32::NAN; key_stride(len) * h];
    let mut ctx = vec![0.0; len * h];
    let qkv = &c.qkv[..];
    let mask = ScoreBias {
        mask: &c.mask_bias,
        relative: c.relative.as_deref(),
        window: c.window,
    };
    if bf16 {
        // Stale values in the spare buffer must not matter.
        let mut spare = vec![f32::NAN; tile_spare_len(h, c.dims.heads, len)];
        let (s, k, p) = (&mut scores, &mut kt, &mut spare);
        attention_bf16(kernel, c.dims, qkv, len, mask, s, k, p, &mut ctx);
    } else {
        attention(
            kernel,
            c.dims,
            qkv,
            len,
            mask,
            &mut scores,
            &mut kt,
            &mut ctx,
        );
    }
    ctx
}

/// Whether this CPU runs [`attention_bf16`] on AMX tiles.
fn has_bf16_tiles() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        dynq_runtime::kernels::Amx::detect()
            .and_then(dynq_runtime::kernels::Amx::bf16_tiles)
            .is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The bound on [`attention_bf16`]'s error for `case`: each score is off by at most
/// `2^-8 * sum_c |q_c k_c| / sqrt(d)` (q and k rounded to bf16, 2^-9 each, products summed in
/// f32), which moves each weight by a factor within `exp(+-2 delta)`; weights and values are
/// rounded to bf16 too (2^-9 each). So an output is off by at most
/// `max|v| * (exp(2 delta) - 1 + 2^-7)`, plus f32 rounding.
fn bf16_bound(case: &Case) -> f64 {
    let (h, heads, len) = (case.dims.hidden, case.dims.heads, case.len);
    let d = h / heads;
    let at = |i: usize, part: usize, c: usize| f64::from(case.qkv[i * 3 * h + part * h + c]);
    let mut delta = 0.0f64;
    let mut vmax = 0.0f64;
    for head in 0..heads {
        for i in 0..len {
            for j in 0..len {
                let s: f64 = (0..d)
                    .map(|c| (at(i, 0, head * d + c) * at(j, 1, head * d + c)).abs())
                    .sum();
                delta = delta.max(s / (d as f64).sqrt() / 256.0);
            }
            for c in 0..d {
                vmax = vmax.max(at(i, 2, head * d + c).abs());
            }
        }
    }
    vmax * ((2.0 * delta).exp() - 1.0 + 1.0 / 128.0) + 1e-5 * (1.0 + vmax)
}

/// [`attention_bf16`] on every kernel (the AMX tiles where the CPU has them, f32 elsewhere)
/// against the f64 reference, within [`bf16_bound`]; below [`MIN_TILE_TOKENS`] tokens it is
/// the f32 attention, bit for bit.
fn check_bf16(case: &Case) {
    let want = case.reference();
    let bound = bf16_bound(case);
    for id in KernelId::ALL {
        let Ok(got) = dynq_runtime::dispatch(Bf16(case), &[id]) else {
            continue; // a kernel this CPU lacks
        };
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= bound,
                "{} bf16, len {}: output {} = {} vs {} (bound {})",
                id.name(),
                case.len,
                i,
                g,
                w,
                bound
            );
        }
        if case.len < MIN_TILE_TOKENS {
            let f32 = dynq_runtime::dispatch(Run(case), &[id]).unwrap();
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                f32.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}

/// The tiles over head widths that are not multiples of 16 or 32 (zero padding of the A and C
/// tiles), wide heads, and lengths around multiples of 16 and 32 (key tiles and weight
/// chunks) from [`MIN_TILE_TOKENS`] on, with masked keys and several blocks of 16 queries.
#[test]
fn bf16_tiles_match_f64_attention() {
    if !has_bf16_tiles() {
        println!("skipped the tile path: this CPU has no AMX-BF16 (the f32 fallback is checked)");
    }
    for (heads, d, len, scale) in [
        (1, 1, 64, 1.0),
        (2, 3, 65, 4.0),
        (12, 32, 128, 1.0),
        (3, 17, 95, 0.01),
        (2, 40, 97, 1.0),
        (2, 64, 70, 4.0),
        (1, 80, 79, 1.0),
        (1, 257, 66, 0.5),
        (2, 16, 63, 1.0),
        (1, 8, 300, 1.0),
    ] {
        check_bf16(&Case::new(
            heads,
            d,
            len,
            scale,
            &[false, true, false, false, true],
            3 + len as u64 + d as u64,
        ));
    }
}

/// Compares every kernel with the f64 reference.
fn check(case: &Case) {
    let want = case.reference();
    for id in KernelId::ALL {
        let Ok(got) = dynq_runtime::dispatch(Run(case), &[id]) else {
            continue; // a kernel this CPU lacks
        };
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= 2e-5 * (1.0 + w.abs()),
                "{}: output {} = {} vs {}",
                id.name(),
                i,
                g,
                w
            );
        }
    }
}

/// Heads wider than the 256 dimensions the blocked loops keep on the stack, and lengths at and
/// around the 16-key groups of the score layout, with several threads' worth of query blocks.
#[test]
fn wide_heads_and_key_group_edges() {
    for (heads, d, len) in [
        (1, 257, 20),
        (2, 300, 9),
        (1, 256, 33),
        (4, 8, 48),
        (3, 16, 47),
        (2, 32, 130),
    ] {
        check(&Case::new(
            heads,
            d,
            len,
            0.5,
            &[false, false, true],
            7 + len as u64,
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn bf16_attention_within_its_bound(
        heads in 1usize..=3,
        d in prop::sample::select(vec![1usize, 5, 16, 32, 33, 64]),
        len in prop::sample::select(vec![1usize, 63, 64, 65, 79, 80, 95, 96, 97, 111, 130]),
        scale in prop::sample::select(vec![0.01f32, 1.0, 3.0]),
        masked in prop::collection::vec(any::<bool>(), 1..5),
        seed in any::<u64>(),
    ) {
        check_bf16(&Case::new(heads, d, len, scale, &masked, seed));
    }

    #[test]
    fn every_kernel_matches_f64_attention(
        heads in 1usize..=3,
        d in prop::sample::select(vec![1usize, 3, 8, 16, 17, 32, 40, 64]),
        len in prop::sample::select(vec![1usize, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 70]),
        scale in prop::sample::select(vec![0.01f32, 1.0, 4.0]),
        masked in prop::collection::vec(any::<bool>(), 1..5),
        seed in any::<u64>(),
    ) {
        let case = Case::new(heads, d, len, scale, &masked, seed);
        let want = case.reference();
        for id in KernelId::ALL {
            let got = dynq_runtime::dispatch(Run(&case), &[id]).unwrap();
            prop_assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                prop_assert!(
                    (f64::from(*g) - w).abs() <= 2e-5 * (1.0 + w.abs()),
                    "{}: output {} = {} vs {}", id.name(), i, g, w
                );
            }
        }
    }
}
