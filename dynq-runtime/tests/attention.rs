//! BERT self-attention (f32): every kernel's entry point, blocked 8 or 4 queries at a time with
//! 32, 16, 8 and 1 key/lane remainders, against softmax(Q K^T / sqrt(d) + mask) V computed
//! here in f64, over head widths and lengths that hit every remainder (1 token, 7, 9, 33 ...).

use dynq_runtime::kernels::Kernel;
use dynq_runtime::ops::bert::{attention, scores_len, EncoderDims};
use dynq_runtime::KernelId;
use proptest::prelude::*;

struct Case {
    dims: EncoderDims,
    len: usize,
    qkv: Vec<f32>,
    mask_bias: Vec<f32>,
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
        Case {
            dims: EncoderDims {
                hidden,
                heads,
                intermediate: 1,
            },
            len,
            qkv,
            mask_bias,
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
                        dot / (d as f64).sqrt() + f64::from(self.mask_bias[j])
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
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
/// generated models.
struct Run<'a>(&'a Case);

impl dynq_runtime::Job for Run<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) -> Vec<f32> {
        let c = self.0;
        let (h, len) = (c.dims.hidden, c.len);
        let mut scores = vec![0.0; scores_len(len, dynq_runtime::kernels::threads())];
        let mut kt = vec![0.0; len * h];
        let mut ctx = vec![0.0; len * h];
        attention(
            kernel,
            c.dims,
            &c.qkv,
            len,
            &c.mask_bias,
            &mut scores,
            &mut kt,
            &mut ctx,
        );
        ctx
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
