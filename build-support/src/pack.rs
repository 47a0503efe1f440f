//! Packing quantized weights into the layout each enabled kernel reads.
//!
//! Every kernel in this release reads the row-major `[n][k]` layout the scalar reference uses;
//! SIMD kernels add their micro-tile layouts here, each a separate blob section.

use crate::quantize::QuantizedMatrix;

/// A weight layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[n][k]`, k contiguous.
    RowMajor,
}

impl Layout {
    /// The layouts needed for the given kernels, without repeats, in a fixed order.
    ///
    /// ```
    /// use dynq_build::pack::Layout;
    /// assert_eq!(Layout::for_kernels(&["avx2".into(), "scalar".into()]), [Layout::RowMajor]);
    /// ```
    pub fn for_kernels(_kernels: &[String]) -> Vec<Layout> {
        vec![Layout::RowMajor]
    }
}

/// The bytes of `m` in `layout`.
///
/// ```
/// use dynq_build::{pack::{pack, Layout}, quantize::quantize_weights, spec::WeightGranularity};
/// let m = quantize_weights(&[1.0, 0.5], 1, 2, WeightGranularity::PerChannel);
/// assert_eq!(pack(&m, Layout::RowMajor), [127, 64]);
/// ```
pub fn pack(m: &QuantizedMatrix, layout: Layout) -> Vec<i8> {
    match layout {
        Layout::RowMajor => m.q.clone(),
    }
}
