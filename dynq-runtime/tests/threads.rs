//! With the `rayon` feature, a linear layer split over threads (each row block quantizing its
//! own rows per token, or for few rows each thread taking a run of output channels) gives the
//! single-threaded result bit for bit, for every kernel, scheme and granularity, at row counts
//! around the split thresholds.
#![cfg(feature = "rayon")]

use dynq_runtime::kernels::{packed_index, packed_len, Kernel};
use dynq_runtime::ops::{linear_dyn, ActQuant, QuantScratch};
use dynq_runtime::Linear;
use dynq_runtime::{Activation, F32Linear, Granularity, KernelId, QLinear, Scheme};

struct Layer<'a> {
    w: Linear<'a>,
    x: &'a [f32],
    rows: usize,
    aq: ActQuant,
}

impl dynq_runtime::Job for &Layer<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) -> Vec<f32> {
        let (k, n) = (self.w.k(), self.w.n());
        let stride = k.next_multiple_of(4);
        let (mut q, mut s, mut z) = (
            vec![0i8; self.rows * stride],
            vec![0.0; self.rows],
            vec![0; self.rows],
        );
        let mut scratch = QuantScratch {
            quant: &mut q,
            scales: &mut s,
            zero_points: &mut z,
        };
        let mut out = vec![0.0; self.rows * n];
        linear_dyn(
            kernel,
            k,
            n,
            self.x,
            self.rows,
            &self.w,
            Activation::Gelu,
            self.aq,
            &mut scratch,
            &mut out,
        );
        out
    }
}

#[test]
fn threads_give_the_single_thread_result_bit_for_bit() {
    // Row blocks around the split thresholds.
    same_bits_on_three_threads(70, 37, &[1, 31, 32, 33, 64, 97, 130]);
}

#[test]
fn few_rows_split_their_channels_and_give_the_same_bits() {
    // Over a million multiply-adds with fewer than 32 rows: the threads share the channel
    // tiles (a partial last tile of 12 channels), then row blocks from 32 rows on.
    same_bits_on_three_threads(1000, 1100, &[1, 2, 7, 31, 32]);
}

fn same_bits_on_three_threads(k: usize, n: usize, row_counts: &[usize]) {
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let mut weight = vec![0i8; packed_len(n, k)];
    let mut col_sums = vec![0; n];
    for j in 0..n {
        for kk in 0..k {
            let v = (next() * 127.0).round() as i8;
            weight[packed_index(j, kk, k)] = v;
            col_sums[j] += i32::from(v);
        }
    }
    let scales: Vec<f32> = (0..n).map(|j| 0.01 + j as f32 * 1e-3).collect();
    let bias: Vec<f32> = (0..n).map(|_| next()).collect();
    let int8 = Linear::Int8(QLinear {
        n,
        k,
        weight: &weight,
        scales: &scales,
        col_sums: &col_sums,
        bias: Some(&bias),
    });
    // An f32 layer (`keep_f32`, f32 builds): row blocks from 2 rows over 2^20 multiply-adds.
    let weight_f32: Vec<f32> = (0..n * k).map(|_| next()).collect();
    let f32 = Linear::F32(F32Linear {
        n,
        k,
        weight: &weight_f32,
        bias: Some(&bias),
    });
    let most = row_counts.iter().copied().max().unwrap_or(0);
    let x: Vec<f32> = (0..most * k)
        .map(|i| next() * (1.0 + (i % 7) as f32))
        .collect();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for (w, &rows) in [int8, f32]
        .into_iter()
        .flat_map(|w| row_counts.iter().map(move |r| (w, r)))
    {
        for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
            for granularity in [Granularity::PerToken, Granularity::PerTensor] {
                if matches!(w, Linear::F32(_))
                    && (scheme, granularity) != (Scheme::Symmetric, Granularity::PerToken)
                {
                    continue; // f32 layers quantize nothing
                }
                let layer = Layer {
                    w,
                    x: &x[..rows * k],
                    rows,
                    aq: ActQuant {
                        granularity,
                        scheme,
                    },
                };
                for id in KernelId::ALL {
                    let single = one.install(|| dynq_runtime::dispatch(&layer, &[id]).unwrap());
                    let split = three.install(|| dynq_runtime::dispatch(&layer, &[id]).unwrap());
                    assert!(
                        single
                            .iter()
                            .map(|v| v.to_bits())
                            .eq(split.iter().map(|v| v.to_bits())),
                        "{} rows, {scheme:?} {granularity:?}, {}, {}: 3 threads differ from 1",
                        rows,
                        id.name(),
                        if matches!(w, Linear::F32(_)) {
                            "f32"
                        } else {
                            "int8"
                        }
                    );
                }
            }
        }
    }
}
