//! The AMX kernel: `tdpbusd` on 16 x 64-byte tiles, 2 x 2 tiles (32 rows x 32 channels) per
//! pass, for the GEMMs of prompts and batches; fewer than [`MIN_ROWS`] (3) rows take the AVX-512
//! VNNI kernel's code, which is faster for one row and as fast for two.
//!
//! **Operands.** A 64-value chunk of one 16-channel tile of the packed weights (16 consecutive
//! 64-byte blocks, 1 KiB) is exactly an AMX B tile in the VNNI layout `tdpbusd` reads: row `r`
//! holds 4 inputs for each of the 16 channels. So the kernel reads the weights where they lie, at
//! `tile * 16 * Kp + chunk * 1024` with a stride of 64, and needs no packing of its own. The
//! activations are copied once per call into a per-thread buffer laid out as the A tiles
//! (`[row tile][chunk][16 rows][64 bytes]`, 64-byte aligned, so every tile load reads 1 KiB of
//! consecutive cache lines), flipped to `a + 128` on the way (`tdpbusd` multiplies unsigned A by
//! signed B, like `vpdpbusd`) and zero-padded beyond the row stride. `128 * sum(w)` is taken off
//! in the epilogue, as in the AVX-512 VNNI kernel.
//!
//! **Remainders.** Zero activations past K make whatever B holds there contribute nothing, so
//! every tile is full width; only a B load must stay inside the weights: when `Kp` is not a
//! multiple of 64, the last chunk of a tile runs into the next tile (harmless, it multiplies
//! zeros), and for the last tiles, where it would run past the end, that chunk is first copied
//! into a zero-padded 1 KiB buffer. Rows past M are computed but never written out; channels
//! past N come from the zero padding of the packed weights and are skipped likewise. With M < 16
//! the one tile configuration holds M rows, so no padding rows are computed at all.
//!
//! **Blocking.** Large weights (over [`ROW_ORDER_MAX_WEIGHTS`]) or K over [`K_BLOCK_CHUNKS`]
//! chunks: one channel pair (2 B tiles) against every pair of row tiles, over a block of at most
//! [`K_BLOCK_CHUNKS`] chunks (the 2 B panels, at most 24 KiB, stay in L1 while the A tiles
//! stream from L2, and the weights are read once per call); the 2 x 2 sums go to a per-thread
//! i32 buffer between K blocks and into the epilogue after the last. Otherwise (weights that stay
//! in L2, one K block): one pair of row tiles (its A panel in L1) against every channel pair, so
//! the output is written row by row rather than in strips down all M rows. Either way a block's
//! epilogue runs after the next block's tiles are issued, so the vector unit dequantizes while
//! the tile unit multiplies. The micro-kernel is one `asm!` block (tile loads, `tdpbusd`, tile
//! stores over its whole K range); each `qgemm` call configures the tiles (`ldtilecfg`) and
//! releases them (`tilerelease`), so no tile state outlives a call, on any thread.
//!
//! **Exactness.** `tdpbusd` sums the products of u8 x s8 into i32 exactly (no saturation), like
//! `vpdpbusd`; the epilogue is the AVX-512 VNNI kernel's (scalar order), so outputs match
//! [`super::Scalar`] bit for bit.
//!
//! **Availability.** CPUID leaf 7 (AMX-TILE, AMX-INT8), AVX-512 F/BW/VNNI (the fallback and the
//! epilogue), and, on Linux, the kernel's permission for the tile data state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, asked once per process). Other
//! systems report AMX unavailable.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::OnceLock;

use super::avx512vnni::{self, Avx512Vnni};
use super::scalar::epilogue;
use super::{Kernel, KernelId, QuantizedRows, TILE_N};
use crate::math::apply_activation;
use crate::types::{Activation, F32Linear, QLinear};

/// Fewer rows than this run the AVX-512 VNNI code. Measured on a Sapphire Rapids core (K x N
/// = 384 x 384 to 768 x 3072): with one row (a single token, an LSTM step) `vpdpbusd` is 1.1
/// to 1.4x faster than a 1-row tile product, with two they are even, from three rows on the
/// tiles win (1.3x at 3 rows, 1.1 to 1.6x at 4, 1.3 to 2.7x at 8).
pub const MIN_ROWS: usize = 3;

/// The most 64-value chunks per K block: 2 B panels of 12 KiB each stay in L1.
pub const K_BLOCK_CHUNKS: usize = 12;

/// Weights up to this size (bytes) with at most one K block are swept once per pair of row
/// tiles (row pairs outer); larger ones once per call (channel pairs outer), as they would not
/// stay in a 2 MiB L2.
pub const ROW_ORDER_MAX_WEIGHTS: usize = 1 << 20;

/// Proof that this CPU has AMX-TILE and AMX-INT8 (with permission to use them) and AVX-512
/// F/BW/VNNI; only [`Amx::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub struct Amx(());

impl Amx {
    /// `Some` when the CPU supports AMX-INT8 and AVX-512 VNNI and the operating system lets this
    /// process use the tiles (checked once; the first call asks Linux for the permission).
    ///
    /// ```
    /// if let Some(k) = dynq_runtime::kernels::Amx::detect() {
    ///     println!("AMX available: {k:?}");
    /// }
    /// ```
    pub fn detect() -> Option<Self> {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        let ok = *AVAILABLE.get_or_init(|| {
            Avx512Vnni::detect().is_some() && cpu_has_amx_int8() && os_permits_tiles()
        });
        ok.then_some(Amx(()))
    }
}

/// CPUID leaf 7, subleaf 0: EDX bit 24 is AMX-TILE, bit 25 AMX-INT8.
fn cpu_has_amx_int8() -> bool {
    if __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

/// Asks Linux for the AMX tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`); without it the first tile instruction faults. The permission is
/// per process, so every thread may use the tiles once it is granted.
#[cfg(target_os = "linux")]
fn os_permits_tiles() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: u64 = 0x1023;
    const XFEATURE_XTILEDATA: u64 = 18;
    let ret: i64;
    // SAFETY: the arch_prctl system call with these arguments only changes which extended
    // register states this process may use; it touches no memory of ours. `syscall` clobbers
    // rcx and r11, declared below.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn os_permits_tiles() -> bool {
    false
}

entry!(Amx, "avx512f,avx512bw,avx512vnni,avx2,fma");

impl Kernel for Amx {
    const ID: KernelId = KernelId::Amx;
    const FMA: bool = true;
    const WIDE_F32: bool = true;

    #[inline(always)]
    fn qgemm(
        self,
        a: QuantizedRows<'_>,
        m: usize,
        w: &QLinear<'_>,
        act: Activation,
        out: &mut [f32],
    ) {
        super::check_qgemm(&a, m, w, out);
        // Empty products too: with no inputs there is no chunk to load (every output is the
        // bias), with no rows or channels nothing to write.
        if m < MIN_ROWS || a.stride == 0 || w.n == 0 {
            // SAFETY: AMX was detected together with AVX-512 F/BW/VNNI; `check_qgemm` passed.
            unsafe { avx512vnni::qgemm(a, m, w, act, out) };
        } else {
            // SAFETY: `self` proves AMX-INT8 (with the OS permission) and AVX-512 F/BW/VNNI;
            // `check_qgemm` proved every slice long enough.
            unsafe { qgemm(a, m, w, act, out) };
        }
    }

    #[inline(always)]
    fn gemm_f32(self, x: &[f32], m: usize, w: &F32Linear<'_>, act: Activation, out: &mut [f32]) {
        // SAFETY: AVX-512 F implies AVX2 and FMA, and `self` proves it.
        unsafe { super::avx2::gemm_f32_checked(x, m, w, act, out) }
    }

    #[inline(always)]
    fn bf16_tiles(self) -> Option<Bf16Tiles> {
        Amx::bf16_tiles(self)
    }

    run_block!("avx512f,avx512bw,avx512vnni,avx2,fma");
}

/// One row of an A tile: 64 activation bytes, 64-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// One row of a C tile: 16 i32 sums, 64-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Sums([i32; 16]);

/// Per-thread buffers: the A tiles, the sums of one channel pair, two weight chunks.
struct Scratch {
    a: Vec<Line>,
    c: Vec<Sums>,
    tail: Vec<[Line; 16]>,
}

std::thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { a: Vec::new(), c: Vec::new(), tail: Vec::new() })
    };
    /// Whether this thread's tiles hold the configuration of [`Bf16Tiles`] (`qgemm`, which
    /// configures and releases them for itself, clears it).
    static BF16_CONFIGURED: Cell<bool> = const { Cell::new(false) };
}

/// The `ldtilecfg` operand, palette 1: bytes per row and rows of each tile register.
#[repr(C, align(64))]
pub(super) struct TileConfig {
    pub(super) palette: u8,
    pub(super) start_row: u8,
    pub(super) reserved: [u8; 14],
    pub(super) colsb: [u16; 16],
    pub(super) rows: [u8; 16],
    pub(super) reserved2: [u8; 16],
}

/// # Safety
/// The CPU must support AMX-INT8 with the OS permission granted and AVX-512 F/BW/VNNI; the
/// slices must pass `check_qgemm`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
unsafe fn qgemm(a: QuantizedRows<'_>, m: usize, w: &QLinear<'_>, act: Activation, out: &mut [f32]) {
    SCRATCH.with(|s| gemm(&a, m, w, out, &mut s.borrow_mut()));
    // Inside the target-feature function, so the activation loop vectorizes for it too.
    apply_activation(act, &mut out[..m * w.n]);
}

/// The whole product into `out` (before the activation).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
fn gemm(a: &QuantizedRows<'_>, m: usize, w: &QLinear<'_>, out: &mut [f32], s: &mut Scratch) {
    let kp = a.stride;
    let chunks = kp.div_ceil(64);
    let row_tiles = m.div_ceil(16);
    let tiles = w.n.div_ceil(TILE_N);
    let tile_len = TILE_N * kp;
    pack_rows(a, m, chunks, &mut s.a);
    // C slots of 2 x 2 tiles (64 lines): one per row pair, at least two.
    let c_len = row_tiles.next_multiple_of(2).max(4) * 32;
    if s.c.len() < c_len {
        s.c.resize(c_len, Sums([0; 16]));
    }
    // K blocks of equal size, at most K_BLOCK_CHUNKS chunks each.
    let k_blocks = chunks.div_ceil(K_BLOCK_CHUNKS);
    let block = chunks.div_ceil(k_blocks);
    // Rows per tile: 16, or all of them when there are fewer.
    let rows = m.min(16) as u8;
    let config = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        // tmm0-3: C (16 i32 per row), tmm4-5: A, tmm6-7: B, each 64 bytes a row.
        colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
        rows: [
            rows, rows, rows, rows, rows, rows, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        reserved2: [0; 16],
    };
    // SAFETY: `config` is a valid palette-1 configuration (8 tiles of at most 16 rows x 64
    // bytes) in a 64-byte aligned struct; `Amx` proves the CPU and OS support it.
    unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };

    let plan = Plan {
        weight: w.weight,
        tile_len,
        chunks,
        tails: tails(w.weight, tiles, tile_len, chunks, &mut s.tail),
        tail_copies: s.tail.as_ptr() as *const i8,
    };
    let (a_tiles, c) = (&s.a[..], &mut s.c[..]);
    if k_blocks == 1 && tiles * tile_len <= ROW_ORDER_MAX_WEIGHTS {
        // One K block and weights that stay in L2: each pair of row tiles against every
        // channel pair, the A panel in L1 and the output written row by row (measured faster
        // than column strips, whose stores are scattered over M rows); two C slots alternate
        // so that one block's epilogue overlaps the next block's tiles.
        let mut pending: Option<(usize, usize, usize)> = None;
        let mut slot = 0;
        for r0 in (0..row_tiles).step_by(2) {
            for t0 in (0..tiles).step_by(2) {
                let cs = &mut c[slot * 64..(slot + 1) * 64];
                plan.micro(a_tiles, r0, row_tiles, t0, tiles, 0, chunks, cs);
                if let Some((p0, q0, ps)) = pending {
                    store_block(
                        &c[ps * 64..(ps + 1) * 64],
                        a,
                        m,
                        p0,
                        row_tiles,
                        w,
                        q0,
                        tiles,
                        out,
                    );
                }
                pending = Some((r0, t0, slot));
                slot ^= 1;
            }
        }
        if let Some((p0, q0, ps)) = pending {
            store_block(
                &c[ps * 64..(ps + 1) * 64],
                a,
                m,
                p0,
                row_tiles,
                w,
                q0,
                tiles,
                out,
            );
        }
    } else {
        // Each channel pair (its B panel in L1 for a K block) against every pair of row tiles;
        // each row pair has its C slot, kept between K blocks. In the last K block a row
        // pair's epilogue runs after the next pair's tiles are issued, so it overlaps them.
        for t0 in (0..tiles).step_by(2) {
            let mut kc = 0;
            while kc < chunks {
                let n_chunks = block.min(chunks - kc);
                let last = kc + n_chunks == chunks;
                let mut pending = None;
                for r0 in (0..row_tiles).step_by(2) {
                    let cs = &mut c[r0 * 32..(r0 + 2) * 32];
                    plan.micro(a_tiles, r0, row_tiles, t0, tiles, kc, n_chunks, cs);
                    if last {
                        if let Some(p0) = pending {
                            let cs = &c[p0 * 32..(p0 + 2) * 32];
                            store_block(cs, a, m, p0, row_tiles, w, t0, tiles, out);
                        }
                        pending = Some(r0);
                    }
                }
                if let Some(p0) = pending {
                    let cs = &c[p0 * 32..(p0 + 2) * 32];
                    store_block(cs, a, m, p0, row_tiles, w, t0, tiles, out);
                }
                kc += n_chunks;
            }
        }
    }
    // SAFETY: releases the tile state configured above; nothing reads it afterwards.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
    // A `Bf16Tiles` alive on this thread configures the tiles again before its next product.
    BF16_CONFIGURED.set(false);
}

/// Where the B tiles of one call lie.
struct Plan<'a> {
    weight: &'a [i8],
    /// Bytes per 16-channel tile (16 * Kp).
    tile_len: usize,
    /// 64-value chunks per row (Kp / 64 rounded up).
    chunks: usize,
    /// Tiles from this one on read their last chunk from `tail_copies` (1 KiB each).
    tails: usize,
    tail_copies: *const i8,
}

impl Plan<'_> {
    /// The B tile of channel tile `t` at its last chunk.
    fn tail(&self, t: usize) -> *const i8 {
        if t < self.tails {
            self.weight
                .as_ptr()
                .wrapping_add(t * self.tile_len + (self.chunks - 1) * 1024)
        } else {
            self.tail_copies.wrapping_add((t - self.tails) * 1024)
        }
    }

    /// Row tiles `r0..r0 + 2` (those below `row_tiles`) against channel tiles `t0..t0 + 2`
    /// (below `tiles`) over chunks `kc..kc + n_chunks`, into the C tiles in `c` (starting from
    /// zero at `kc == 0`, else from the sums there).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn micro(
        &self,
        a_tiles: &[Line],
        r0: usize,
        row_tiles: usize,
        t0: usize,
        tiles: usize,
        kc: usize,
        n_chunks: usize,
        c: &mut [Sums],
    ) {
        let (mt, nt) = ((row_tiles - r0).min(2), (tiles - t0).min(2));
        let last = kc + n_chunks == self.chunks;
        assert!(
            (r0 + mt) * self.chunks * 16 <= a_tiles.len()
                && (t0 + nt) * self.tile_len <= self.weight.len()
                && c.len() >= 64
        );
        let a0 = a_tiles[(r0 * self.chunks + kc) * 16..].as_ptr();
        let b0 = self
            .weight
            .as_ptr()
            .wrapping_add(t0 * self.tile_len + kc * 1024);
        let args = MicroArgs {
            a0: a0 as *const u8,
            a1: a0.wrapping_add(self.chunks * 16) as *const u8,
            b0,
            b1: b0.wrapping_add(self.tile_len),
            tail0: if last {
                self.tail(t0)
            } else {
                std::ptr::null()
            },
            tail1: if last {
                self.tail(t0 + 1)
            } else {
                std::ptr::null()
            },
            full: if last { n_chunks - 1 } else { n_chunks },
            c: c.as_mut_ptr() as *mut i32,
            first: kc == 0,
        };
        // SAFETY: A: row tiles r0..r0+mt (a1 is read only when mt == 2), chunks
        // kc..kc+n_chunks lie in `a_tiles` (asserted: whole row tiles). B: the `full` chunks
        // from kc of tiles t0..t0+nt lie inside those tiles (b1 read only when nt == 2), which
        // lie in the weights (asserted); a tail (the last chunk) is in bounds by `tails`'s
        // choice or is a 1 KiB copy. C: 2 x 2 tiles of 1 KiB fit in `c` (asserted 64 lines).
        // The caller configured the tiles (`gemm`).
        unsafe {
            match (mt, nt) {
                (2, 2) => micro_2x2(&args),
                (2, _) => micro_2x1(&args),
                (_, 2) => micro_1x2(&args),
                _ => micro_1x1(&args),
            }
        }
    }
}

/// The first channel tile whose last chunk, loaded as a whole 1 KiB B tile, would run past the
/// end of the weights (when `Kp` is not a multiple of 64); that chunk of it and of every later
/// tile is copied, zero-padded, into `copies`.
fn tails(
    weight: &[i8],
    tiles: usize,
    tile_len: usize,
    chunks: usize,
    copies: &mut Vec<[Line; 16]>,
) -> usize {
    let first = (0..tiles)
        .find(|&t| t * tile_len + chunks * 1024 > weight.len())
        .unwrap_or(tiles);
    copies.clear();
    for t in first..tiles {
        let own = &weight[t * tile_len + (chunks - 1) * 1024..(t + 1) * tile_len];
        let mut copy = [Line([0; 64]); 16];
        for (line, src) in copy.iter_mut().zip(own.chunks(64)) {
            for (d, &v) in line.0.iter_mut().zip(src) {
                *d = v as u8;
            }
        }
        copies.push(copy);
    }
    first
}

/// Copies rows `0..m` of `a` into the A-tile layout `[row tile][chunk][16][64]`, flipped to
/// `a + 128` and zero beyond the row stride (rows past `m` are left as they are: their sums are
/// never read).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
fn pack_rows(a: &QuantizedRows<'_>, m: usize, chunks: usize, buf: &mut Vec<Line>) {
    let len = m.div_ceil(16) * chunks * 16;
    if buf.len() < len {
        buf.resize(len, Line([0; 64]));
    }
    for i in 0..m {
        let row = &a.data[i * a.stride..(i + 1) * a.stride];
        let (tile, r) = (i / 16, i % 16);
        for (kc, src) in row.chunks(64).enumerate() {
            let line = &mut buf[(tile * chunks + kc) * 16 + r].0;
            if src.len() == 64 {
                for (d, &v) in line.iter_mut().zip(src) {
                    *d = (v as u8) ^ 0x80;
                }
            } else {
                *line = [0; 64];
                for (d, &v) in line.iter_mut().zip(src) {
                    *d = (v as u8) ^ 0x80;
                }
            }
        }
    }
}

/// Dequantizes the 2 x 2 C tiles in `c` (tile (r, j) at line `(2r + j) * 16`), the sums of row
/// tiles `r0..r0 + 2` against channel tiles `t0..t0 + 2` (those that exist; valid rows and
/// channels only), into `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
fn store_block(
    c: &[Sums],
    a: &QuantizedRows<'_>,
    m: usize,
    r0: usize,
    row_tiles: usize,
    w: &QLinear<'_>,
    t0: usize,
    tiles: usize,
    out: &mut [f32],
) {
    for r in 0..(row_tiles - r0).min(2) {
        for j in 0..(tiles - t0).min(2) {
            let sums = &c[(r * 2 + j) * 16..(r * 2 + j + 1) * 16];
            store_tile(sums, a, m, (r0 + r) * 16, w, (t0 + j) * TILE_N, out);
        }
    }
}

/// Dequantizes one C tile (rows `i0..`, channels `j0..`, valid ones only) into `out`, in the
/// scalar order: `(sum - (zp + 128) * col_sum) as f32 * (row_scale * w_scale) + bias`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[inline]
fn store_tile(
    sums: &[Sums],
    a: &QuantizedRows<'_>,
    m: usize,
    i0: usize,
    w: &QLinear<'_>,
    j0: usize,
    out: &mut [f32],
) {
    let n = w.n;
    let valid = (n - j0).min(TILE_N);
    let rows = m.saturating_sub(i0).min(16);
    if valid < TILE_N {
        for (r, s) in sums.iter().enumerate().take(rows) {
            let row = i0 + r;
            let mut sums = s.0;
            for (c, v) in sums.iter_mut().enumerate().take(valid) {
                *v = v.wrapping_sub(128 * w.col_sums[j0 + c]);
            }
            epilogue(
                &sums,
                a,
                row,
                w,
                j0,
                &mut out[row * n + j0..row * n + j0 + valid],
            );
        }
        return;
    }
    let (cs, ws, bias) = (
        &w.col_sums[j0..j0 + TILE_N],
        &w.scales[j0..j0 + TILE_N],
        w.bias.map(|b| &b[j0..j0 + TILE_N]),
    );
    // SAFETY: each slice above holds 16 values.
    let (cs, ws, bias) = unsafe {
        (
            _mm512_loadu_si512(cs.as_ptr() as *const _),
            _mm512_loadu_ps(ws.as_ptr()),
            bias.map_or(_mm512_setzero_ps(), |b| _mm512_loadu_ps(b.as_ptr())),
        )
    };
    // (0 + 128) * col_sum for symmetric rows: a shift instead of a multiply, same bits.
    let cs128 = _mm512_slli_epi32::<7>(cs);
    let scales = &a.scales[i0..i0 + rows];
    for (r, (s, &row_scale)) in sums.iter().zip(scales).enumerate() {
        let row = i0 + r;
        let o = &mut out[row * n + j0..row * n + j0 + TILE_N];
        // SAFETY: `s` holds 16 i32 (64-byte aligned) and `o` 16 f32.
        unsafe {
            let acc = _mm512_load_si512(s.0.as_ptr() as *const _);
            let corr = match a.zero_points {
                None => cs128,
                Some(z) => _mm512_mullo_epi32(_mm512_set1_epi32(z[row] + 128), cs),
            };
            let scale = _mm512_mul_ps(_mm512_set1_ps(row_scale), ws);
            let sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, corr));
            _mm512_storeu_ps(
                o.as_mut_ptr(),
                _mm512_add_ps(_mm512_mul_ps(sum, scale), bias),
            );
        }
    }
}

/// The operands of one micro-kernel call.
struct MicroArgs {
    /// A tiles of row tiles 0 and 1 at the first chunk (1 KiB apart per chunk).
    a0: *const u8,
    a1: *const u8,
    /// B tiles of channel tiles 0 and 1 at the first chunk (1 KiB apart per chunk).
    b0: *const i8,
    b1: *const i8,
    /// After the `full` chunks, one more chunk whose B tiles are here (null: none).
    tail0: *const i8,
    tail1: *const i8,
    /// Chunks read at `b0`/`b1`.
    full: usize,
    /// Sums: tile (r, j) at `c + (2r + j) * 256`, stride 64 bytes.
    c: *mut i32,
    /// Start from zero rather than from the sums in `c`.
    first: bool,
}

/// Defines one micro-kernel over `MT` row tiles x `NT` channel tiles. Tiles: C (r, j) is
/// `tmm(2r + j)`, A row tile r is `tmm(4 + r)`, B channel tile j is `tmm(6 + j)`. The loop body
/// interleaves loads and `tdpbusd` so each load follows the last reader of its register
/// (tiles are not renamed). After `full` chunks, a non-null tail pointer sends the loop round
/// once more with the B pointers moved to the tails.
macro_rules! micro_kernel {
    ($name:ident, zero: [$($zero:literal),*], load: [$($load:literal),*], body: [$($body:literal),*], store: [$($store:literal),*]) => {
        /// # Safety
        /// The tiles are configured as in `gemm`; every tile the body reads or writes lies in
        /// memory as `MicroArgs` describes.
        #[inline]
        unsafe fn $name(p: &MicroArgs) {
            // SAFETY: the caller's contract; the loop reads `full` (+1 with a tail) chunks.
            unsafe {
                asm!(
                    "test {first}, {first}",
                    "jz 2f",
                    $($zero,)*
                    "jmp 3f",
                    "2:",
                    $($load,)*
                    "3:",
                    "test {n}, {n}",
                    "jz 5f",
                    "4:",
                    $($body,)*
                    "add {a0}, 1024",
                    "add {a1}, 1024",
                    "add {b0}, 1024",
                    "add {b1}, 1024",
                    "dec {n}",
                    "jnz 4b",
                    "5:",
                    "test {t0}, {t0}",
                    "jz 6f",
                    "mov {b0}, {t0}",
                    "mov {b1}, {t1}",
                    "xor {t0:e}, {t0:e}",
                    "mov {n:e}, 1",
                    "jmp 4b",
                    "6:",
                    $($store,)*
                    first = in(reg) usize::from(p.first),
                    a0 = inout(reg) p.a0 => _,
                    a1 = inout(reg) p.a1 => _,
                    b0 = inout(reg) p.b0 => _,
                    b1 = inout(reg) p.b1 => _,
                    t0 = inout(reg) p.tail0 => _,
                    t1 = in(reg) p.tail1,
                    n = inout(reg) p.full => _,
                    c = in(reg) p.c,
                    s64 = in(reg) 64usize,
                    options(nostack),
                );
            }
        }
    };
}

micro_kernel!(
    micro_2x2,
    zero: ["tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3"],
    load: [
        "tileloadd tmm0, [{c} + {s64}]",
        "tileloadd tmm1, [{c} + {s64} + 1024]",
        "tileloadd tmm2, [{c} + {s64} + 2048]",
        "tileloadd tmm3, [{c} + {s64} + 3072]"
    ],
    body: [
        "tileloadd tmm4, [{a0} + {s64}]",
        "tileloadd tmm6, [{b0} + {s64}]",
        "tdpbusd tmm0, tmm4, tmm6",
        "tileloadd tmm7, [{b1} + {s64}]",
        "tdpbusd tmm1, tmm4, tmm7",
        "tileloadd tmm5, [{a1} + {s64}]",
        "tdpbusd tmm2, tmm5, tmm6",
        "tdpbusd tmm3, tmm5, tmm7"
    ],
    store: [
        "tilestored [{c} + {s64}], tmm0",
        "tilestored [{c} + {s64} + 1024], tmm1",
        "tilestored [{c} + {s64} + 2048], tmm2",
        "tilestored [{c} + {s64} + 3072], tmm3"
    ]
);

micro_kernel!(
    micro_2x1,
    zero: ["tilezero tmm0", "tilezero tmm2"],
    load: [
        "tileloadd tmm0, [{c} + {s64}]",
        "tileloadd tmm2, [{c} + {s64} + 2048]"
    ],
    body: [
        "tileloadd tmm4, [{a0} + {s64}]",
        "tileloadd tmm6, [{b0} + {s64}]",
        "tdpbusd tmm0, tmm4, tmm6",
        "tileloadd tmm5, [{a1} + {s64}]",
        "tdpbusd tmm2, tmm5, tmm6"
    ],
    store: [
        "tilestored [{c} + {s64}], tmm0",
        "tilestored [{c} + {s64} + 2048], tmm2"
    ]
);

micro_kernel!(
    micro_1x2,
    zero: ["tilezero tmm0", "tilezero tmm1"],
    load: [
        "tileloadd tmm0, [{c} + {s64}]",
        "tileloadd tmm1, [{c} + {s64} + 1024]"
    ],
    body: [
        "tileloadd tmm4, [{a0} + {s64}]",
        "tileloadd tmm6, [{b0} + {s64}]",
        "tdpbusd tmm0, tmm4, tmm6",
        "tileloadd tmm7, [{b1} + {s64}]",
        "tdpbusd tmm1, tmm4, tmm7"
    ],
    store: [
        "tilestored [{c} + {s64}], tmm0",
        "tilestored [{c} + {s64} + 1024], tmm1"
    ]
);

micro_kernel!(
    micro_1x1,
    zero: ["tilezero tmm0"],
    load: ["tileloadd tmm0, [{c} + {s64}]"],
    body: [
        "tileloadd tmm4, [{a0} + {s64}]",
        "tileloadd tmm6, [{b0} + {s64}]",
        "tdpbusd tmm0, tmm4, tmm6"
    ],
    store: ["tilestored [{c} + {s64}], tmm0"]
);

/// CPUID leaf 7, subleaf 0: EDX bit 22 is AMX-BF16.
fn cpu_has_amx_bf16() -> bool {
    __cpuid(0).eax >= 7 && __cpuid_count(7, 0).edx & (1 << 22) != 0
}

impl Amx {
    /// The tile unit for bf16 products ([`Bf16Tiles`]), where the CPU has AMX-BF16 (every
    /// CPU with AMX so far has it; checked once).
    ///
    /// ```
    /// if let Some(amx) = dynq_runtime::kernels::Amx::detect() {
    ///     println!("bf16 tiles: {}", amx.bf16_tiles().is_some());
    /// }
    /// ```
    pub fn bf16_tiles(self) -> Option<Bf16Tiles> {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        AVAILABLE
            .get_or_init(cpu_has_amx_bf16)
            .then_some(Bf16Tiles {
                _thread: PhantomData,
            })
    }
}

/// Words (bf16 values) in one B tile: 16 rows of 16 columns x 2 consecutive k.
pub const BF16_TILE: usize = 512;

/// Products of bf16 matrices on the AMX tiles (`tdpbf16ps`: bf16 pairs multiplied and summed
/// into f32), for attention. Values are bf16 bit patterns in `u16`. Every product is 16 rows
/// of A (`chunks` x 32 values each) times one or two B panels of 16 columns; a B panel is
/// `chunks` tiles of [`BF16_TILE`] words, tile `q` holding `B[k][j]` for `k` in `32q..32q + 32`
/// at `q * 512 + (k % 32) / 2 * 32 + j * 2 + k % 2` (the VNNI layout). The tiles are
/// configured on this thread at the first product (again after a `qgemm`, which configures
/// them for itself) and released when this value is dropped; it stays on its thread.
///
/// ```
/// use dynq_runtime::kernels::{Amx, BF16_TILE};
/// let Some(tiles) = Amx::detect().and_then(Amx::bf16_tiles) else { return };
/// let one = 0x3f80u16; // 1.0 in bf16
/// let a = vec![one; 16 * 32]; // 16 rows of 32 ones
/// let mut b = vec![0u16; BF16_TILE];
/// b[0] = one; // B[0][0] = 1
/// b[1] = one; // B[1][0] = 1
/// let mut c = vec![0.0f32; 16 * 16];
/// tiles.product(&a, 32, 1, &[&b], &mut c, &[0], 16);
/// assert_eq!((c[0], c[1], c[16]), (2.0, 0.0, 2.0));
/// ```
#[derive(Debug)]
pub struct Bf16Tiles {
    /// Tile state is per thread: not `Send`.
    _thread: PhantomData<*const ()>,
}

impl Bf16Tiles {
    /// `C_t = A x B_t` for the one or two panels `b[t]`: A row `r`, values `32q..32q + 32`
    /// at `a[r * a_stride + 32q..]`; C_t row `r` (16 f32) at `c[c_at[t] + r * c_stride..]`.
    /// Panics (a caller's bug) unless `b` and `c_at` both hold 1 or 2 entries, `chunks >= 1`,
    /// and every slice covers what it says.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn product(
        &self,
        a: &[u16],
        a_stride: usize,
        chunks: usize,
        b: &[&[u16]],
        c: &mut [f32],
        c_at: &[usize],
        c_stride: usize,
    ) {
        assert!(chunks >= 1 && (1..=2).contains(&b.len()) && b.len() == c_at.len());
        assert!(15 * a_stride + chunks * 32 <= a.len(), "A rows");
        assert!(b.iter().all(|b| b.len() >= chunks * BF16_TILE), "B panels");
        assert!(
            c_at.iter().all(|&o| o + 15 * c_stride + 16 <= c.len()),
            "C rows"
        );
        if !BF16_CONFIGURED.get() {
            let config = TileConfig {
                palette: 1,
                start_row: 0,
                reserved: [0; 14],
                // tmm0-1: C, tmm4: A, tmm6-7: B; all 16 rows of 64 bytes.
                colsb: [64, 64, 0, 0, 64, 0, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
                rows: [16, 16, 0, 0, 16, 0, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
                reserved2: [0; 16],
            };
            // SAFETY: a valid palette-1 configuration in a 64-byte aligned struct; `self`
            // exists only where `Amx` (tiles permitted) and AMX-BF16 were detected.
            unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
            BF16_CONFIGURED.set(true);
        }
        let c_ptr = c.as_mut_ptr();
        let (b0, b1) = (b[0].as_ptr(), b.get(1).map(|b| b.as_ptr()));
        let c0 = c_ptr.wrapping_add(c_at[0]);
        let (a_stride, c_stride) = (a_stride * 2, c_stride * 4);
        // SAFETY: the asserts above put every row the tile loads and stores touch inside `a`,
        // `b` and `c` (A: 16 rows of 64 bytes per chunk at `a_stride`; B: `chunks` 1 KiB
        // tiles; C: 16 rows of 64 bytes at `c_stride`); the tiles are configured (checked per
        // thread above) as the instructions use them.
        unsafe {
            match b1 {
                Some(b1) => asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "2:",
                    "tileloadd tmm4, [{a} + {sa}]",
                    "tileloadd tmm6, [{b0} + {s64}]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {s64}]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "add {a}, 64",
                    "add {b0}, 1024",
                    "add {b1}, 1024",
                    "dec {n}",
                    "jnz 2b",
                    "tilestored [{c0} + {sc}], tmm0",
                    "tilestored [{c1} + {sc}], tmm1",
                    a = inout(reg) a.as_ptr() => _,
                    b0 = inout(reg) b0 => _,
                    b1 = inout(reg) b1 => _,
                    n = inout(reg) chunks => _,
                    sa = in(reg) a_stride,
                    s64 = in(reg) 64usize,
                    c0 = in(reg) c0,
                    c1 = in(reg) c_ptr.wrapping_add(c_at[1]),
                    sc = in(reg) c_stride,
                    options(nostack),
                ),
                None => asm!(
                    "tilezero tmm0",
                    "2:",
                    "tileloadd tmm4, [{a} + {sa}]",
                    "tileloadd tmm6, [{b0} + {s64}]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "add {a}, 64",
                    "add {b0}, 1024",
                    "dec {n}",
                    "jnz 2b",
                    "tilestored [{c0} + {sc}], tmm0",
                    a = inout(reg) a.as_ptr() => _,
                    b0 = inout(reg) b0 => _,
                    n = inout(reg) chunks => _,
                    sa = in(reg) a_stride,
                    s64 = in(reg) 64usize,
                    c0 = in(reg) c0,
                    sc = in(reg) c_stride,
                    options(nostack),
                ),
            }
        }
    }
}

impl Drop for Bf16Tiles {
    fn drop(&mut self) {
        if BF16_CONFIGURED.get() {
            // SAFETY: releases this thread's tile state, which only this type's products use
            // (a `qgemm` configures its own).
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
            BF16_CONFIGURED.set(false);
        }
    }
}
