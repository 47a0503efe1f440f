//! Build-time weight quantization: symmetric INT8 in [-127, 127], per channel or per tensor,
//! with error statistics for the generated doc comments and the report.

use std::path::Path;

use crate::error::{Error, Result};
use crate::ir::Linear;
use crate::spec::{EmbeddingStorage, WeightGranularity};

/// Largest input width whose i32 accumulators cannot overflow: |a| <= 255, |w| <= 127, so
/// K * 255 * 127 must stay below 2^31.
pub const MAX_K: usize = (i32::MAX as usize) / (255 * 127);

/// A quantized weight matrix `[n][k]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedMatrix {
    /// Output channels.
    pub n: usize,
    /// Input width.
    pub k: usize,
    /// Values in [-127, 127].
    pub q: Vec<i8>,
    /// One scale per output channel (repeated for per-tensor).
    pub scales: Vec<f32>,
    /// `sum_k q[j][k]` per channel, for the activation zero-point correction.
    pub col_sums: Vec<i32>,
    /// How far the dequantized weights are from the originals.
    pub stats: ErrorStats,
}

/// Quantization error of a weight matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorStats {
    /// Largest |w - dequant(q)|.
    pub max_abs_error: f32,
    /// Signal-to-quantization-noise ratio in dB, `10 log10(sum w^2 / sum (w - dq)^2)`.
    pub sqnr_db: f32,
    /// The channel with the largest squared error.
    pub worst_channel: usize,
}

/// Quantizes a row-major `[n][k]` f32 matrix.
///
/// An all-zero channel (or matrix) gets scale 1, so nothing is divided by zero and it
/// dequantizes to exact zeros.
///
/// ```
/// use dynq_build::{quantize::quantize_weights, spec::WeightGranularity};
/// let m = quantize_weights(&[1.0, -0.5, 0.0, 0.0], 2, 2, WeightGranularity::PerChannel);
/// assert_eq!(m.q, [127, -64, 0, 0]);
/// assert_eq!(m.scales, [1.0 / 127.0, 1.0]);
/// assert_eq!(m.col_sums, [63, 0]);
/// ```
pub fn quantize_weights(
    w: &[f32],
    n: usize,
    k: usize,
    granularity: WeightGranularity,
) -> QuantizedMatrix {
    assert_eq!(w.len(), n * k, "matrix length");
    let scale_of = |absmax: f32| if absmax > 0.0 { absmax / 127.0 } else { 1.0 };
    let scales: Vec<f32> = match granularity {
        WeightGranularity::PerChannel => w
            .chunks_exact(k)
            .map(|r| scale_of(r.iter().fold(0.0f32, |m, v| m.max(v.abs()))))
            .collect(),
        WeightGranularity::PerTensor => {
            vec![scale_of(w.iter().fold(0.0f32, |m, v| m.max(v.abs()))); n]
        }
    };
    let mut q = Vec::with_capacity(w.len());
    let mut col_sums = Vec::with_capacity(n);
    let (mut signal, mut noise, mut max_abs_error) = (0.0f64, 0.0f64, 0.0f32);
    let (mut worst_channel, mut worst_noise) = (0, -1.0f64);
    for (j, (row, &s)) in w.chunks_exact(k).zip(&scales).enumerate() {
        let mut sum = 0i32;
        let mut row_noise = 0.0f64;
        for &v in row {
            let qv = (f64::from(v) / f64::from(s))
                .round_ties_even()
                .clamp(-127.0, 127.0) as i8;
            let err = v - f32::from(qv) * s;
            q.push(qv);
            sum += i32::from(qv);
            signal += f64::from(v) * f64::from(v);
            row_noise += f64::from(err) * f64::from(err);
            max_abs_error = max_abs_error.max(err.abs());
        }
        noise += row_noise;
        if row_noise > worst_noise {
            (worst_channel, worst_noise) = (j, row_noise);
        }
        col_sums.push(sum);
    }
    let sqnr_db = if noise == 0.0 {
        f32::INFINITY
    } else {
        (10.0 * (signal / noise).log10()) as f32
    };
    QuantizedMatrix {
        n,
        k,
        q,
        scales,
        col_sums,
        stats: ErrorStats {
            max_abs_error,
            sqnr_db,
            worst_channel,
        },
    }
}

/// Quantizes an embedding table `[rows][width]` row by row: symmetric INT8 in [-127, 127] with
/// one scale per row (absmax / 127, half-to-even rounding), the per-channel rule of
/// [`quantize_weights`] with a row as the channel. Row `i` dequantizes as
/// `q[i][j] as f32 * scales[i]`; `col_sums` are unused.
///
/// ```
/// let t = dynq_build::quantize::quantize_table(&[0.5, -1.0, 0.25, 0.0, 0.0, 0.0], 2, 3);
/// assert_eq!(t.q, [64, -127, 32, 0, 0, 0]);
/// assert_eq!(t.scales, [1.0 / 127.0, 1.0]);
/// ```
pub fn quantize_table(t: &[f32], rows: usize, width: usize) -> QuantizedMatrix {
    quantize_weights(t, rows, width, WeightGranularity::PerChannel)
}

/// The error of storing an embedding table `[rows][width]` as `storage` (`worst_channel` is the
/// worst row): INT8 per row as [`quantize_table`], f16 by rounding to nearest even, f32 exact.
///
/// ```
/// use dynq_build::{quantize::table_error, spec::EmbeddingStorage};
/// let t = [0.1, -0.2, 0.3, 0.4];
/// assert!(table_error(&t, 2, EmbeddingStorage::F32).sqnr_db.is_infinite());
/// let (f16, int8) = (table_error(&t, 2, EmbeddingStorage::F16), table_error(&t, 2, EmbeddingStorage::Int8));
/// assert!(f16.sqnr_db > int8.sqnr_db && int8.sqnr_db > 40.0);
/// ```
pub fn table_error(t: &[f32], width: usize, storage: EmbeddingStorage) -> ErrorStats {
    let rows = t.len() / width.max(1);
    let round: fn(f32) -> f32 = match storage {
        EmbeddingStorage::Int8 => return quantize_table(t, rows, width).stats,
        EmbeddingStorage::F16 => |v| half::f16::from_f32(v).to_f32(),
        EmbeddingStorage::F32 => |v| v,
    };
    let (mut signal, mut noise, mut max_abs_error) = (0.0f64, 0.0f64, 0.0f32);
    let (mut worst_channel, mut worst_noise) = (0, -1.0f64);
    for (j, row) in t.chunks_exact(width.max(1)).enumerate() {
        let mut row_noise = 0.0f64;
        for &v in row {
            let err = v - round(v);
            signal += f64::from(v) * f64::from(v);
            row_noise += f64::from(err) * f64::from(err);
            max_abs_error = max_abs_error.max(err.abs());
        }
        noise += row_noise;
        if row_noise > worst_noise {
            (worst_channel, worst_noise) = (j, row_noise);
        }
    }
    ErrorStats {
        max_abs_error,
        sqnr_db: if noise == 0.0 {
            f32::INFINITY
        } else {
            (10.0 * (signal / noise).log10()) as f32
        },
        worst_channel,
    }
}

/// Quantizes a linear layer's weights with `granularity`, refusing input widths above
/// [`MAX_K`] (an error naming the tensor in `weights_file`).
pub fn quantize_linear(
    l: &Linear,
    granularity: WeightGranularity,
    weights_file: &Path,
) -> Result<QuantizedMatrix> {
    let (n, k) = (l.out_features, l.in_features);
    if k > MAX_K {
        return Err(Error::Tensor {
            file: weights_file.to_path_buf(),
            tensor: l.weight.name.clone(),
            message: format!(
                "input width {k} exceeds {MAX_K}, the largest whose int32 sums cannot overflow; keep it f32"
            ),
        });
    }
    Ok(quantize_weights(&l.weight.data, n, k, granularity))
}

/// Squared quantization error of each output channel, `sum_k (w - dequant(q))^2`.
///
/// ```
/// use dynq_build::{quantize::{channel_errors, quantize_weights}, spec::WeightGranularity};
/// let w = [1.0, 0.5, 0.0, 0.0];
/// let m = quantize_weights(&w, 2, 2, WeightGranularity::PerChannel);
/// let e = channel_errors(&w, &m);
/// assert!(e[0] > 0.0 && e[1] == 0.0);
/// ```
pub fn channel_errors(w: &[f32], m: &QuantizedMatrix) -> Vec<f64> {
    w.chunks_exact(m.k)
        .zip(m.q.chunks_exact(m.k))
        .zip(&m.scales)
        .map(|((row, q), &s)| {
            row.iter()
                .zip(q)
                .map(|(&v, &qv)| f64::from(v - f32::from(qv) * s).powi(2))
                .sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dequant(m: &QuantizedMatrix) -> Vec<f32> {
        m.q.chunks(m.k)
            .zip(&m.scales)
            .flat_map(|(r, &s)| r.iter().map(move |&v| f32::from(v) * s))
            .collect()
    }

    #[test]
    fn round_trip_error_is_at_most_half_a_step_per_channel() {
        let w: Vec<f32> = (0..6 * 33)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01 * (1 + i / 33) as f32)
            .collect();
        let m = quantize_weights(&w, 6, 33, WeightGranularity::PerChannel);
        let d = dequant(&m);
        for (j, (row, drow)) in w.chunks(33).zip(d.chunks(33)).enumerate() {
            for (a, b) in row.iter().zip(drow) {
                assert!((a - b).abs() <= 0.5 * m.scales[j] * 1.0001);
            }
        }
        assert!(m.q.iter().all(|&v| v >= -127));
        assert!(m.stats.sqnr_db > 35.0, "{:?}", m.stats);
    }

    #[test]
    fn per_channel_beats_per_tensor_on_uneven_channels() {
        let mut w: Vec<f32> = (0..64).map(|i| (i as f32).sin() * 0.001).collect();
        w.extend((0..64).map(|i| (i as f32).cos() * 10.0));
        let pc = quantize_weights(&w, 2, 64, WeightGranularity::PerChannel);
        let pt = quantize_weights(&w, 2, 64, WeightGranularity::PerTensor);
        assert!(pc.stats.sqnr_db > pt.stats.sqnr_db);
        assert_eq!(pt.scales[0], pt.scales[1]);
        // The small channel is lost entirely per tensor, kept per channel.
        assert!(pt.q[..64].iter().all(|&v| v == 0));
        assert!(pc.q[..64].iter().any(|&v| v.abs() == 127));
    }

    #[test]
    fn all_zero_matrix_is_safe() {
        let m = quantize_weights(&[0.0; 8], 2, 4, WeightGranularity::PerTensor);
        assert_eq!(m.q, [0; 8]);
        assert_eq!(m.scales, [1.0, 1.0]);
        assert!(m.stats.sqnr_db.is_infinite());
    }

    #[test]
    fn extremes_hit_plus_and_minus_127() {
        let m = quantize_weights(&[-3.0, 3.0, 1.5], 1, 3, WeightGranularity::PerChannel);
        assert_eq!(m.q, [-127, 127, 64]);
        assert_eq!(m.col_sums, [64]);
    }
}
