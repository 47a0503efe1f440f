//! The forward's threads, above the kernels: how many there are ([`count`], [`set_threads`]),
//! the team a forward call wakes once ([`dispatch`]), and the splitting of an op's output rows
//! into blocks the team claims ([`for_each_block`], [`for_each_span`]), each block entering
//! its kernel's target features ([`Kernel::run_block`]).

use std::sync::OnceLock;

use crate::kernels::{BlockTask, Job, Kernel};
use crate::types::KernelId;
use crate::Error;

#[cfg(feature = "rayon")]
mod team;

/// Threads that [`for_each_block`] spreads work over: the current rayon pool's size with the
/// `rayon` feature (on by default: all cores, or `DYNQ_THREADS`, or [`set_threads`]), else 1.
///
/// ```
/// assert!(dynq_runtime::threads::count() >= 1);
/// ```
pub fn count() -> usize {
    #[cfg(feature = "rayon")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        1
    }
}

/// Sets how many threads every forward call uses, for the whole process: 1 runs on the calling
/// thread only. Without a call, the count comes from the `DYNQ_THREADS` environment variable,
/// else from the machine (rayon's global pool: `RAYON_NUM_THREADS` or the cores).
///
/// Results do not depend on the count: the split into blocks never changes what one output
/// value adds up. It is an error once the pool exists with another count (after the first
/// forward call, or when the application configured rayon's global pool itself), and always
/// without the `rayon` feature for counts above 1.
///
/// ```no_run
/// dynq_runtime::set_threads(1).unwrap(); // single-threaded
/// ```
pub fn set_threads(n: usize) -> Result<(), Error> {
    if n == 0 {
        return Err(Error::Threads(
            "thread count: expected 1 or more, found 0".into(),
        ));
    }
    #[cfg(feature = "rayon")]
    {
        if rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .stack_size(WORKER_STACK)
            .build_global()
            .is_ok()
        {
            return Ok(());
        }
        let have = rayon::current_num_threads();
        if have == n {
            return Ok(());
        }
        Err(Error::Threads(format!(
            "cannot use {n} threads: the thread pool already runs {have} (set the count before \
             the first forward call)"
        )))
    }
    #[cfg(not(feature = "rayon"))]
    {
        if n == 1 {
            return Ok(());
        }
        Err(Error::Threads(format!(
            "cannot use {n} threads: dynq-runtime was built without its `rayon` feature"
        )))
    }
}

/// Applies `DYNQ_THREADS` once, before the first forward call makes the pool; a value that is
/// not a count is an error of every forward call.
fn threads_from_env() -> Result<(), Error> {
    static APPLIED: OnceLock<Result<(), Error>> = OnceLock::new();
    APPLIED
        .get_or_init(|| match std::env::var("DYNQ_THREADS") {
            Ok(v) if !v.trim().is_empty() => {
                let n = v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        Error::Threads(format!(
                            "DYNQ_THREADS={v:?}: expected a thread count (1 or more)"
                        ))
                    })?;
                if let Err(e) = set_threads(n) {
                    // The application made rayon's pool first: its count stands. A thread count
                    // never changes results, so this is worth a warning, not a failed forward.
                    eprintln!("dynq: DYNQ_THREADS={v} ignored: {e}");
                }
                Ok(())
            }
            _ => {
                // All cores, on workers with room for a forward: an unoptimized (dev profile)
                // build inlines a whole layer into frames near rayon's default 2 MiB. Fails
                // only when the application made rayon's pool first; then its pool is used.
                #[cfg(feature = "rayon")]
                let _ = rayon::ThreadPoolBuilder::new()
                    .stack_size(WORKER_STACK)
                    .build_global();
                Ok(())
            }
        })
        .clone()
}

/// Stack of each thread of the pool dynq makes (reserved address space; pages are touched only
/// as used).
#[cfg(feature = "rayon")]
const WORKER_STACK: usize = 16 << 20;

/// Runs `job` with the kernel selected for this process, restricted to the kernels the model
/// was packed for (`enabled`) and the job is compiled for ([`Job::KERNELS`]; scalar always).
///
/// When `DYNQ_KERNEL` pins a kernel the model was not packed or compiled for, this is an error;
/// otherwise the best selected-or-lesser kernel the model carries is used.
///
/// With the `rayon` feature and more than one thread, the job runs on a pool thread (the caller
/// waits) with `count() - 1` helper tasks spawned beside it that stay awake, polling, until
/// the job ends: each parallel region of the forward (~30 per BERT forward) then starts on all
/// threads at once, instead of waking a sleeping pool thread with a system call per region.
/// Blocks are claimed, not assigned, so a helper the pool cannot run yet (all threads busy with
/// other forwards) costs nothing: the forward thread does its blocks.
pub fn dispatch<J>(job: J, enabled: &[KernelId]) -> Result<J::Output, Error>
where
    J: Job + Send,
    J::Output: Send,
{
    threads_from_env()?;
    #[cfg(feature = "rayon")]
    if count() > 1 {
        let team = team::Team::new();
        return rayon::scope(|s| {
            for w in 1..count() {
                let team = &team;
                s.spawn(move |_| team.help(w));
            }
            let _current = team.enter();
            crate::kernels::run_selected(job, enabled)
        });
    }
    crate::kernels::run_selected(job, enabled)
}

/// Splits `out` into one block of whole rows (`row_len` values each, block sizes a multiple of
/// `align` rows) per thread and runs `task` on each, in parallel with the `rayon` feature when
/// there are at least `min_rows` rows, else once on this thread. `scratch` is split alike into
/// `count()` pieces of `scratch_len`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn for_each_block<K: Kernel, T: BlockTask>(
    kernel: K,
    rows: usize,
    row_len: usize,
    align: usize,
    min_rows: usize,
    out: &mut [f32],
    scratch: &mut [f32],
    scratch_len: usize,
    task: &T,
) {
    let t = count();
    if t <= 1 || rows < min_rows {
        task.run(0, &mut out[..rows * row_len], &mut scratch[..scratch_len]);
        return;
    }
    #[cfg(feature = "rayon")]
    {
        // Inside `dispatch`: the forward's own team of awake threads, two blocks per thread
        // (claimed, not assigned: a thread that finishes early takes another block).
        let block = rows.div_ceil(2 * t).next_multiple_of(align);
        if team::split(
            &mut out[..rows * row_len],
            block * row_len,
            &mut scratch[..t * scratch_len],
            scratch_len,
            &|b, o, s| kernel.run_block(task, b * block, o, s),
        ) {
            return;
        }
        let block = rows.div_ceil(t).next_multiple_of(align);
        par_blocks(
            &mut out[..rows * row_len],
            block * row_len,
            &mut scratch[..t * scratch_len],
            scratch_len,
            &|b, o, s| kernel.run_block(task, b * block, o, s),
        );
    }
    #[cfg(not(feature = "rayon"))]
    let _ = (kernel, align);
}

/// Runs `task` on blocks of whole rows whose bounds the caller chooses: block `b` is rows
/// `bounds[b]..bounds[b + 1]` of `out` (`row_len` values each; `bounds` ascending). Blocks are
/// claimed by the forward's threads as they come free (with the `rayon` feature, when there are
/// several threads and blocks), so blocks of uneven cost balance; each block sees the
/// `scratch_len` piece of `scratch` of the thread running it (`scratch` holds [`count`]
/// pieces). The ragged batch runs the attention of its short sequences this way, a sequence
/// per block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn for_each_span<K: Kernel, T: BlockTask>(
    kernel: K,
    bounds: &[usize],
    row_len: usize,
    out: &mut [f32],
    scratch: &mut [f32],
    scratch_len: usize,
    task: &T,
) {
    let blocks = bounds.len().saturating_sub(1);
    #[cfg(feature = "rayon")]
    {
        let t = count();
        if t > 1 && blocks > 1 {
            if !team::split_at(
                out,
                bounds,
                row_len,
                &mut scratch[..t * scratch_len],
                scratch_len,
                &|b, o, s| kernel.run_block(task, bounds[b], o, s),
            ) {
                // Outside a forward's team: contiguous groups of blocks, one per thread.
                par_groups(out, bounds, row_len, t, scratch, scratch_len, &|b, o, s| {
                    kernel.run_block(task, bounds[b], o, s)
                });
            }
            return;
        }
    }
    let scratch = &mut scratch[..scratch_len];
    for b in 0..blocks {
        let (start, end) = (bounds[b] * row_len, bounds[b + 1] * row_len);
        kernel.run_block(task, bounds[b], &mut out[start..end], scratch);
    }
}

/// A block's work: block index, its output, the scratch piece of the thread running it.
#[cfg(feature = "rayon")]
type BlockFn<'a> = dyn Fn(usize, &mut [f32], &mut [f32]) + Sync + 'a;

/// [`for_each_block`] outside a forward's team, on rayon's pool: `chunk`-value blocks of
/// `out`, with `scratch_len`-value pieces of `scratch`. Not generic, so rayon's machinery is
/// compiled once here rather than at every call site of every generated model.
#[cfg(feature = "rayon")]
#[inline(never)]
fn par_blocks(
    out: &mut [f32],
    chunk: usize,
    scratch: &mut [f32],
    scratch_len: usize,
    f: &BlockFn<'_>,
) {
    use rayon::prelude::*;
    if chunk == 0 {
        return;
    }
    if scratch_len == 0 {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(b, o)| f(b, o, &mut []));
    } else {
        out.par_chunks_mut(chunk)
            .zip(scratch.par_chunks_mut(scratch_len))
            .enumerate()
            .for_each(|(b, (o, s))| f(b, o, s));
    }
}

/// [`for_each_span`] outside a forward's team, on rayon's pool: the blocks of rows
/// `bounds[b]..bounds[b + 1]` of `out` (`row_len` values each) in `threads` contiguous groups,
/// each group's blocks in order on one thread with its own piece of `scratch`. Not generic,
/// like [`par_blocks`].
#[cfg(feature = "rayon")]
#[inline(never)]
fn par_groups(
    out: &mut [f32],
    bounds: &[usize],
    row_len: usize,
    threads: usize,
    scratch: &mut [f32],
    scratch_len: usize,
    f: &BlockFn<'_>,
) {
    use rayon::prelude::*;
    let values = |b: usize| bounds[b] * row_len;
    let blocks = bounds.len() - 1;
    let per = blocks.div_ceil(threads.max(1)).max(1);
    let mut groups = Vec::with_capacity(threads);
    let mut rest = &mut out[..values(blocks)];
    let mut at = 0;
    for g in 0..blocks.div_ceil(per) {
        let (first, last) = (g * per, ((g + 1) * per).min(blocks));
        let (mine, more) = std::mem::take(&mut rest).split_at_mut(values(last) - at);
        groups.push((first, last, mine));
        rest = more;
        at = values(last);
    }
    let run_group = |(first, last, o): (usize, usize, &mut [f32]), s: &mut [f32]| {
        let base = values(first);
        for b in first..last {
            f(b, &mut o[values(b) - base..values(b + 1) - base], s);
        }
    };
    if scratch_len == 0 {
        groups.into_par_iter().for_each(|g| run_group(g, &mut []));
    } else {
        groups
            .into_par_iter()
            .zip(scratch[..threads * scratch_len].par_chunks_mut(scratch_len))
            .for_each(|(g, s)| run_group(g, s));
    }
}
