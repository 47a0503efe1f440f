//! Reusable scratch memory for forward calls.

use std::cell::RefCell;

/// Scratch memory that a forward call carves its intermediates from.
///
/// Buffers only grow, so after the first call with the largest batch no forward call allocates.
/// Generated models keep one per thread (see [`with_workspace`]); callers that want full
/// control pass their own to the model's `forward_with`.
///
/// ```
/// let mut ws = dynq_runtime::Workspace::new();
/// let b = ws.buffers(8, 4, 2);
/// assert_eq!((b.f32.len(), b.quant.len(), b.scales.len(), b.zero_points.len()), (8, 4, 2, 2));
/// ```
#[derive(Debug, Default)]
pub struct Workspace {
    f32: Vec<f32>,
    quant: Vec<i8>,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
    /// Token offsets of a ragged batch, lent out by [`Workspace::take_offsets`].
    offsets: Vec<usize>,
}

/// The buffers of a [`Workspace`], sized for one call.
#[derive(Debug)]
pub struct Buffers<'a> {
    /// Activations in f32, split by the caller into per-value slices.
    pub f32: &'a mut [f32],
    /// Quantized activations (int8, or uint8 stored as the same bytes).
    pub quant: &'a mut [i8],
    /// One scale per activation row.
    pub scales: &'a mut [f32],
    /// One zero point per activation row (asymmetric scheme).
    pub zero_points: &'a mut [i32],
}

impl Workspace {
    /// An empty workspace; it grows on first use.
    pub const fn new() -> Self {
        Workspace {
            f32: Vec::new(),
            quant: Vec::new(),
            scales: Vec::new(),
            zero_points: Vec::new(),
            offsets: Vec::new(),
        }
    }

    /// The start of each of `lens`' sequences back to back, then their total (`lens.len() + 1`
    /// values), in this workspace's reused vector: give it back with
    /// [`Workspace::put_offsets`] so the next call does not allocate.
    pub(crate) fn take_offsets(&mut self, lens: impl Iterator<Item = usize>) -> Vec<usize> {
        let mut offsets = std::mem::take(&mut self.offsets);
        offsets.clear();
        offsets.push(0);
        for len in lens {
            offsets.push(offsets[offsets.len() - 1] + len);
        }
        offsets
    }

    /// Returns the vector [`Workspace::take_offsets`] lent.
    pub(crate) fn put_offsets(&mut self, offsets: Vec<usize>) {
        self.offsets = offsets;
    }

    /// Returns buffers of exactly the requested lengths, growing the workspace if needed.
    pub fn buffers(&mut self, f32_len: usize, quant_len: usize, rows: usize) -> Buffers<'_> {
        Buffers {
            f32: grow(&mut self.f32, f32_len),
            quant: grow(&mut self.quant, quant_len),
            scales: grow(&mut self.scales, rows),
            zero_points: grow(&mut self.zero_points, rows),
        }
    }
}

/// The first `n` values of `v`, growing it (with defaults) if it is shorter; it never shrinks,
/// so a buffer reused across calls stops allocating once warm.
pub(crate) fn grow<T: Default + Clone>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::default());
    }
    &mut v[..n]
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = const { RefCell::new(Workspace::new()) };
}

/// Runs `f` with this thread's workspace.
///
/// A nested call on the same thread (a model called from inside another model's forward) gets a
/// fresh temporary workspace instead of a panic.
///
/// ```
/// let n = dynq_runtime::with_workspace(|ws| ws.buffers(16, 0, 1).f32.len());
/// assert_eq!(n, 16);
/// ```
pub fn with_workspace<R>(f: impl FnOnce(&mut Workspace) -> R) -> R {
    WORKSPACE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut ws) => f(&mut ws),
        Err(_) => f(&mut Workspace::new()),
    })
}

/// Splits `buf` into consecutive slices of the given lengths (the rest is dropped).
///
/// Generated code uses it to carve named intermediates out of one workspace buffer.
///
/// ```
/// let mut buf = [0f32; 10];
/// let [a, b] = dynq_runtime::split_mut(&mut buf, [3, 4]);
/// assert_eq!((a.len(), b.len()), (3, 4));
/// ```
pub fn split_mut<T, const N: usize>(mut buf: &mut [T], lens: [usize; N]) -> [&mut [T]; N] {
    lens.map(|len| {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut(len);
        buf = tail;
        head
    })
}
