//! Packing quantized weights into the layout the kernels read.
//!
//! The x86 kernels (scalar, AVX2, AVX-VNNI, AVX-512 VNNI) and NEON dotprod all read one
//! layout, [`Layout::Tile16x4`]: 16 output channels by 4 input values per 64-byte block, the
//! operand of one `vpdpbusd` on zmm, two on ymm, or four `sdot`s. Later layouts (NEON i8mm's
//! 2x8 blocks) become further sections of the blob, packed only when their kernel is enabled.

use crate::quantize::QuantizedMatrix;

/// Channels per tile.
pub const TILE_N: usize = 16;
/// Input values per tile row.
pub const TILE_K: usize = 4;

/// A weight layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[n / 16][k / 4][16][4]`, both dimensions zero-padded.
    Tile16x4,
}

impl Layout {
    /// The name used in the blob manifest.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Tile16x4 => "tile16x4",
        }
    }

    /// The layouts needed for the given kernels, without repeats, in a fixed order.
    ///
    /// ```
    /// use dynq_build::pack::Layout;
    /// assert_eq!(Layout::for_kernels(&["avx2".into(), "scalar".into()]), [Layout::Tile16x4]);
    /// ```
    pub fn for_kernels(_kernels: &[String]) -> Vec<Layout> {
        vec![Layout::Tile16x4]
    }
}

/// `k` rounded up to the K block.
pub fn padded_k(k: usize) -> usize {
    k.div_ceil(TILE_K) * TILE_K
}

/// The bytes of `m` in `layout`.
///
/// ```
/// use dynq_build::{pack::{pack, Layout}, quantize::quantize_weights, spec::WeightGranularity};
/// let m = quantize_weights(&[1.0, 0.5, -1.0, 0.25], 2, 2, WeightGranularity::PerChannel);
/// let p = pack(&m, Layout::Tile16x4);
/// assert_eq!(p.len(), 16 * 4);
/// assert_eq!(&p[..8], &[127, 64, 0, 0, -127, 32, 0, 0]);
/// ```
pub fn pack(m: &QuantizedMatrix, layout: Layout) -> Vec<i8> {
    match layout {
        Layout::Tile16x4 => {
            let k4 = padded_k(m.k);
            let n16 = m.n.div_ceil(TILE_N) * TILE_N;
            let mut out = vec![0i8; n16 * k4];
            for (j, row) in m.q.chunks_exact(m.k).enumerate() {
                for (k, &v) in row.iter().enumerate() {
                    out[(j / TILE_N) * TILE_N * k4
                        + (k / TILE_K) * TILE_N * TILE_K
                        + (j % TILE_N) * TILE_K
                        + k % TILE_K] = v;
                }
            }
            out
        }
    }
}
