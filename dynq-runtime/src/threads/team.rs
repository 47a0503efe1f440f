//! The threads of one forward call (`rayon` feature): the calling thread and `threads() - 1`
//! helpers that stay awake, spinning, from the first parallel block of the forward to its end.
//!
//! A BERT forward has about 30 parallel regions a few hundred microseconds apart. Handing each
//! to rayon's pool (`par_chunks_mut`) put the idle thread to sleep between them and woke it
//! with a system call each time: two context switches per region, and the wake-up latency of
//! the sleeping side, on the critical path of every region. Here the helpers poll one atomic
//! word instead, so a region starts on all threads within a cache-line transfer.
//!
//! Protocol: the forward thread publishes a region (a type-erased `Fn(block)` and a block
//! count) by storing a new state word, then claims blocks itself like any helper; blocks are
//! claimed one at a time by compare-and-swap on that word, so each runs exactly once and a
//! helper that never gets scheduled only means the forward thread does its blocks. The forward
//! thread returns from a region once every block has completed, so the closure outlives every
//! use; the state word carries a generation number, so a helper holding a stale copy can never
//! claim a block of a newer region.

use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// A region's work: run block `b` (first argument) on worker `w` (second: 0 for the forward
/// thread, 1.. for the helpers).
type Work<'a> = dyn Fn(usize, usize) + Sync + 'a;

/// [`split`]'s work: block index, the block's output, the worker's scratch.
type BlockWork<'a> = dyn Fn(usize, &mut [f32], &mut [f32]) + Sync + 'a;

/// `state` layout: generation in the high 32 bits, block count in bits 16..32, next unclaimed
/// block in bits 0..16.
const FIELD: u64 = 0xffff;

/// Polls of the state word before a waiting thread starts yielding its core between polls.
const SPINS: u32 = 1 << 14;

/// The shared state of one forward's threads; see the module documentation.
pub(crate) struct Team {
    state: AtomicU64,
    /// Blocks of the current region that have finished.
    done: AtomicUsize,
    /// The current region's work; written only by the forward thread while no claim is open.
    work: UnsafeCell<*const Work<'static>>,
    /// Set when the forward ends: helpers return.
    quit: AtomicBool,
    /// Set when a block panicked on a helper; the forward thread re-raises it.
    panicked: AtomicBool,
    /// The forward thread is inside a region (a nested region runs inline).
    busy: Cell<bool>,
}

// SAFETY: `work` is written only by the forward thread between regions, when every claim of
// the previous region has completed (`done` equals its block count, read with Acquire) and no
// new claim can succeed (the state word shows no unclaimed block); helpers read it only after a
// successful claim, whose Acquire compare-and-swap synchronizes with the Release store that
// published the region after `work` was written. `busy` is touched only by the forward thread.
unsafe impl Sync for Team {}

thread_local! {
    /// The team of the forward this thread is running, if any.
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

impl Team {
    pub(crate) fn new() -> Self {
        Team {
            state: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            work: UnsafeCell::new(std::ptr::null::<fn(usize, usize)>() as *const Work<'static>),
            quit: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            busy: Cell::new(false),
        }
    }

    /// Makes this team the current one of the calling (forward) thread until the guard drops
    /// (then the team current before, if a forward runs inside another, is current again);
    /// dropping it also sends the helpers home.
    pub(crate) fn enter(&self) -> Entered<'_> {
        let outer = CURRENT.with(|c| c.replace(self));
        Entered { team: self, outer }
    }

    /// A helper's life: run claimed blocks until the forward ends. `worker` (1, 2, ...; the
    /// forward thread is 0) picks the helper's piece of a region's scratch.
    pub(crate) fn help(&self, worker: usize) {
        let mut idle = 0u32;
        loop {
            if let Some(b) = self.claim() {
                // SAFETY: a successful claim; see the `Sync` impl.
                let work = unsafe { &**self.work.get() };
                if catch_unwind(AssertUnwindSafe(|| work(b, worker))).is_err() {
                    self.panicked.store(true, Ordering::Relaxed);
                }
                self.done.fetch_add(1, Ordering::Release);
                idle = 0;
                continue;
            }
            if self.quit.load(Ordering::Acquire) {
                return;
            }
            idle = idle.saturating_add(1);
            pause(idle);
        }
    }

    /// Claims the next block of the current region, if one is left.
    fn claim(&self) -> Option<usize> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (next, blocks) = (s & FIELD, (s >> 16) & FIELD);
            if next >= blocks {
                return None;
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(next as usize),
                Err(now) => s = now,
            }
        }
    }

    /// Runs `work(b)` for every `b < blocks` across the team and returns when all are done.
    fn run(&self, blocks: usize, work: &Work<'_>) {
        if blocks <= 1 || blocks > FIELD as usize || self.busy.get() {
            (0..blocks).for_each(|b| work(b, 0));
            return;
        }
        self.busy.set(true);
        // SAFETY: only the lifetime is erased; the pointer is used only by claims of this
        // region, all of which complete before this function returns (below).
        let erased: *const Work<'static> = unsafe { std::mem::transmute(work as *const Work<'_>) };
        // SAFETY: no claim is open (see the `Sync` impl), so nothing reads `work` now.
        unsafe { *self.work.get() = erased };
        self.done.store(0, Ordering::Relaxed);
        let generation = (self.state.load(Ordering::Relaxed) >> 32).wrapping_add(1);
        self.state.store(
            (generation << 32) | ((blocks as u64) << 16),
            Ordering::Release,
        );
        let mut caught = None;
        while let Some(b) = self.claim() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| work(b, 0))) {
                caught = Some(p);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
        let mut idle = 0u32;
        while self.done.load(Ordering::Acquire) < blocks {
            idle = idle.saturating_add(1);
            pause(idle);
        }
        self.busy.set(false);
        if let Some(p) = caught {
            resume_unwind(p);
        }
        if self.panicked.swap(false, Ordering::Relaxed) {
            panic!("a parallel block panicked on a helper thread");
        }
    }
}

/// Waiting: spin on the core while a new region is likely soon, then let others run.
#[inline]
fn pause(idle: u32) {
    if idle < SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// The team stays current while this lives; see [`Team::enter`].
pub(crate) struct Entered<'a> {
    team: &'a Team,
    /// The team current before (null: none).
    outer: *const Team,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.outer));
        self.team.quit.store(true, Ordering::Release);
    }
}

/// A raw pointer the blocks of one region share; each block touches only its own range.
#[derive(Clone, Copy)]
struct Shared(*mut f32);

// SAFETY: the blocks built from it in `split` cover disjoint ranges, each claimed by exactly
// one thread.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not the field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Runs `f(b, out_b, scratch_w)` for each `chunk`-value block `out_b` of `out`, on the current
/// thread's team, where `scratch_w` is the `scratch_len`-value piece of `scratch` of the worker
/// running the block (worker `w` of a team of `n` uses piece `w`: `scratch` holds `n` pieces, one
/// per thread, whatever the number of blocks). Returns `false`, doing nothing, when this thread
/// is not running a forward with a team.
pub(crate) fn split(
    out: &mut [f32],
    chunk: usize,
    scratch: &mut [f32],
    scratch_len: usize,
    f: &BlockWork<'_>,
) -> bool {
    if chunk == 0 {
        return false;
    }
    let len = out.len();
    let blocks = len.div_ceil(chunk);
    let range = |b: usize| (b * chunk, chunk.min(len - b * chunk));
    split_by(out, blocks, &range, scratch, scratch_len, f)
}

/// [`split`] with blocks of varied sizes: block `b` is rows `bounds[b]..bounds[b + 1]` of
/// `out`, `row_len` values each (`bounds` ascending, ending at most at `out.len() / row_len`).
pub(crate) fn split_at(
    out: &mut [f32],
    bounds: &[usize],
    row_len: usize,
    scratch: &mut [f32],
    scratch_len: usize,
    f: &BlockWork<'_>,
) -> bool {
    let blocks = bounds.len().saturating_sub(1);
    assert!(
        bounds.windows(2).all(|w| w[0] <= w[1])
            && bounds.last().is_none_or(|&e| e * row_len <= out.len()),
        "block bounds"
    );
    let range = |b: usize| (bounds[b] * row_len, (bounds[b + 1] - bounds[b]) * row_len);
    split_by(out, blocks, &range, scratch, scratch_len, f)
}

/// The region of [`split`] and [`split_at`]: `range(b)` gives block `b`'s start and length,
/// disjoint and inside `out` for every `b < blocks` (the callers' contract).
fn split_by(
    out: &mut [f32],
    blocks: usize,
    range: &(dyn Fn(usize) -> (usize, usize) + Sync),
    scratch: &mut [f32],
    scratch_len: usize,
    f: &BlockWork<'_>,
) -> bool {
    let team = CURRENT.with(Cell::get);
    if team.is_null() {
        return false;
    }
    // SAFETY: `CURRENT` is set only while the `Entered` guard of a live team exists, on the
    // thread that holds it; this thread is that thread.
    let team = unsafe { &*team };
    let (len, pieces) = (
        out.len(),
        scratch.len().checked_div(scratch_len).unwrap_or(0),
    );
    let (o, s) = (Shared(out.as_mut_ptr()), Shared(scratch.as_mut_ptr()));
    team.run(blocks, &move |b, w| {
        let (start, n) = range(b);
        // Every worker index is below the team size, and `scratch` has a piece per worker
        // (the caller's contract; a bug otherwise, caught here before any pointer use), and
        // the block lies inside `out`.
        assert!(
            scratch_len == 0 || w < pieces,
            "scratch piece of worker {w}"
        );
        assert!(start + n <= len, "block {b} inside the output");
        // SAFETY: block `b < blocks` is claimed once and the blocks' ranges are disjoint
        // (the callers' contract) and inside `out` (asserted); worker `w` runs one block at a
        // time, so the scratch pieces `w * scratch_len..(w + 1) * scratch_len` (inside
        // `scratch`, asserted) in use at once are disjoint too. The borrows of `out` and
        // `scratch` outlive the region: `run` returns only after every block has finished.
        let (o, s) = unsafe {
            (
                std::slice::from_raw_parts_mut(o.get().add(start), n),
                std::slice::from_raw_parts_mut(s.get().add(w * scratch_len), scratch_len),
            )
        };
        f(b, o, s);
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many regions of varied block counts and sizes, on `helpers` helper threads: every value
    /// is visited exactly once per region, with its own block's scratch.
    fn regions(helpers: usize) {
        let team = Team::new();
        std::thread::scope(|s| {
            for w in 1..=helpers {
                let team = &team;
                s.spawn(move || team.help(w));
            }
            let _current = team.enter();
            let mut out = vec![0.0f32; 1000];
            let mut scratch = vec![0.0f32; (helpers + 1) * 3];
            for round in 0..2000usize {
                let len = 1 + round % 997;
                let chunk = 1 + (round * 7) % len;
                assert!(split(
                    &mut out[..len],
                    chunk,
                    &mut scratch,
                    3,
                    &|b, o, sc| {
                        assert_eq!(sc.len(), 3);
                        sc[0] = b as f32;
                        for v in o {
                            *v += 1.0;
                        }
                    }
                ));
                assert!(out[..len].iter().all(|&v| v == 1.0), "round {round}");
                out.fill(0.0);
            }
        });
    }

    #[test]
    fn every_block_runs_exactly_once() {
        regions(0);
        regions(1);
        regions(3);
    }

    #[test]
    fn a_nested_team_hands_back_the_outer_one() {
        let (outer, inner) = (Team::new(), Team::new());
        let _o = outer.enter();
        {
            let _i = inner.enter();
            assert_eq!(CURRENT.with(Cell::get), &inner as *const Team);
        }
        assert_eq!(CURRENT.with(Cell::get), &outer as *const Team);
        assert!(inner.quit.load(Ordering::Relaxed) && !outer.quit.load(Ordering::Relaxed));
    }

    #[test]
    fn no_team_no_split() {
        assert!(!split(&mut [0.0; 4], 2, &mut [], 0, &|_, _, _| {}));
    }

    #[test]
    fn a_panicking_block_reaches_the_forward_thread() {
        let team = Team::new();
        let r = std::thread::scope(|s| {
            s.spawn(|| team.help(1));
            let _current = team.enter();
            catch_unwind(AssertUnwindSafe(|| {
                split(&mut [0.0; 64], 1, &mut [], 0, &|b, _, _| {
                    assert!(b != 40, "block 40");
                })
            }))
        });
        assert!(r.is_err());
    }
}
