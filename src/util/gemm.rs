//! The students' single-precision matrix product, `C = alpha A B + beta C`: an AVX-512 kernel where the
//! CPU has one and the shapes fill it, ndarray's `general_mat_mul` (matrixmultiply) everywhere else.
//!
//! Why our own: training is GEMM-bound, and matrixmultiply stops at AVX2 (8 lanes). On an AVX-512 Xeon,
//! on one core and the products of a training step, it reaches 77-88 GFLOP/s, this kernel 110-126
//! (130-158 on one product at a time) and PyTorch's matmul 148-160 (BENCHMARKS.md, section 3).
//!
//! The kernel is the usual blocked one (Goto and van de Geijn 2008), cut to what the students multiply:
//! matrices of at most a few thousand rows, one product per worker thread (the trainer splits the batch,
//! so this runs on one core). `A` is packed into panels of `MR` rows, `MR` values per step of `k`; `B`
//! is read in place when its rows are contiguous and `A` is short (the weights times a batch), packed
//! into panels of `NR` columns otherwise (`W^T`, long products); each `MR x NR` tile of `C` is held in
//! 16 zmm registers over a block of `k`. Packing moves 16 x 16 blocks through registers where it
//! transposes (`W^T`, the rows of `x`), and reuses each thread's buffers from call to call: the input
//! gradient of a 64-row share against an 800 x 800 `W^T` spent a third of its time packing before.
//!
//! Every element of `C` is summed in the same order whatever the thread count or the CPU's cache, so
//! results are deterministic on a machine; they differ in the last bits from matrixmultiply's.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayBase, Data, DataMut, Ix2};

/// `c = alpha a b + beta c`, as `ndarray::linalg::general_mat_mul` (which it falls back to): with
/// `beta == 0` the old `c` is never read. Panics if the shapes disagree, as `general_mat_mul` does.
pub fn gemm<S1, S2, S3>(
    alpha: f32,
    a: &ArrayBase<S1, Ix2>,
    b: &ArrayBase<S2, Ix2>,
    beta: f32,
    c: &mut ArrayBase<S3, Ix2>,
) where
    S1: Data<Elem = f32>,
    S2: Data<Elem = f32>,
    S3: DataMut<Elem = f32>,
{
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert!(k == k2 && c.dim() == (m, n), "gemm: shapes {:?} x {:?} -> {:?}", a.dim(), b.dim(), c.dim());
    #[cfg(target_arch = "x86_64")]
    // std caches the CPU's answer: the check is an atomic load after the first call.
    if avx512::fits(m, n, k, c.strides()) && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; `fits` checked the strides the kernel relies on.
        unsafe { avx512::gemm(alpha, a.view(), b.view(), beta, c.view_mut()) };
        return;
    }
    general_mat_mul(alpha, a, b, beta, c);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use ndarray::{s, ArrayView2, ArrayViewMut2};

    /// Rows of a register tile: one broadcast of `A` each.
    const MR: usize = 8;
    /// zmm registers across a tile's row.
    const V: usize = 2;
    /// Columns of a register tile: `V` zmm registers of `B`.
    const NR: usize = 16 * V;
    /// The block of `k` a tile sums before it is written: `KC x NR` of `B` (32 KiB) stays in L1.
    const KC: usize = 256;
    /// Rows of `A` packed at once: `MC x KC` (512 KiB) stays in L2.
    const MC: usize = 512;
    /// From this many rows of `A` on, `B` is packed even when its rows are contiguous: enough tiles reuse
    /// each packed panel to pay for the copy (measured on 784 x 800 and 800 x 800 `B`: reading it in place
    /// is 5-10% faster at 32 and 64 rows, the two about even at 128, packing 5-10% faster at 256 and 512).
    const PACK_B_ROWS: usize = 128;

    /// Whether the kernel is worth it and can write `c`: rows of `c` contiguous, at least a tile of
    /// columns (narrower products, a 10-class head or a 16-channel convolution, would waste half of
    /// each register or more: matrixmultiply's 8-wide tiles do better there), and enough work.
    pub fn fits(m: usize, n: usize, k: usize, c_strides: &[isize]) -> bool {
        c_strides[1] == 1 && n >= NR && m >= MR / 2 && k >= 4 && m * n * k >= 1 << 15
    }

    /// `c = alpha a b + beta c` (see [`super::gemm`]).
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and `c`'s rows must be contiguous (`fits`).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gemm(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
        let ((m, k), n) = (a.dim(), b.ncols());
        let ldc = c.strides()[0];
        let c_ptr = c.as_mut_ptr();
        let b_in_place = b.strides()[1] == 1 && m < PACK_B_ROWS;
        let ldb = if b_in_place { b.strides()[0] } else { NR as isize };
        let blocks = k.div_ceil(KC);
        let kc_max = k.div_ceil(blocks);
        SCRATCH.with_borrow_mut(|[a_buf, b_buf]| {
            let packed_a = aligned(a_buf, MC.min(m).next_multiple_of(MR) * kc_max);
            let packed_b = aligned(b_buf, if b_in_place { 0 } else { n.next_multiple_of(NR) * kc_max });
            let mut pc = 0;
            for block in 0..blocks {
                let kc = (k - pc).div_ceil(blocks - block);
                if !b_in_place {
                    // SAFETY: AVX-512F (this function's contract).
                    unsafe { pack_b(b.slice(s![pc..pc + kc, ..]), packed_b) };
                }
                // The first block of k applies beta; the later ones add to what it wrote.
                let (beta, overwrite) = if pc == 0 { (beta, beta == 0.0) } else { (1.0, false) };
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    // SAFETY: AVX-512F (this function's contract).
                    unsafe { pack_a(a.slice(s![ic..ic + mc, pc..pc + kc]), packed_a) };
                    for jr in (0..n).step_by(NR) {
                        let cols = NR.min(n - jr);
                        let masks: [__mmask16; V] = std::array::from_fn(|h| lanes(cols.saturating_sub(16 * h)));
                        let b_panel = if b_in_place {
                            // SAFETY: row pc and column jr of b exist; the kernel reads kc rows of it, masked to `cols`.
                            unsafe { b.as_ptr().offset(pc as isize * ldb + jr as isize) }
                        } else {
                            packed_b[jr * kc..(jr + NR) * kc].as_ptr()
                        };
                        for ir in (0..mc).step_by(MR) {
                            let rows = MR.min(mc - ir);
                            // SAFETY: row ic + ir and column jr of c exist.
                            let ptr = unsafe { c_ptr.offset((ic + ir) as isize * ldc + jr as isize) };
                            let tile = Tile { ptr, ldc, rows, masks };
                            let a_panel = packed_a[ir * kc..(ir + MR) * kc].as_ptr();
                            // SAFETY: the panels hold kc steps; the tile's rows and masked columns lie in c.
                            unsafe { kernel(kc, a_panel, b_panel, ldb, tile, alpha, beta, overwrite) };
                        }
                    }
                }
                pc += kc;
            }
        });
    }

    thread_local! {
        /// Each thread's packing buffers for `A` and `B`, kept between calls: a training step's products
        /// would otherwise allocate (and the kernel fault in) a few MB each.
        static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
    }

    /// `len` floats of `buf`, the first on a 64-byte boundary (a zmm load from them never straddles two
    /// cache lines), growing it if needed. What they hold is stale: the packing writes all it uses.
    fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
        if buf.len() < len + 16 {
            *buf = vec![0.0; len + 16];
        }
        let start = buf.as_ptr().align_offset(64).min(16);
        &mut buf[start..start + len]
    }

    /// The first `n` of 16 lanes.
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// `a` (`mc x kc`) as panels of `MR` rows, each `kc` steps of `MR` values; rows past `mc` are zero.
    /// Contiguous rows (`x`, `delta`) are transposed 16 rows by 16 steps in registers; contiguous columns
    /// (`x^T`) are copied `MR` values a step.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_a(a: ArrayView2<f32>, out: &mut [f32]) {
        let (mc, kc) = a.dim();
        let [rs, cs] = [a.strides()[0], a.strides()[1]];
        if cs == 1 && kc > 1 {
            for (top, dst) in (0..mc).step_by(2 * MR).zip(out.chunks_mut(2 * MR * kc)) {
                let rows = (2 * MR).min(mc - top);
                for p0 in (0..kc).step_by(16) {
                    let (steps, mut r) = (16.min(kc - p0), [_mm512_setzero_ps(); 16]);
                    for (i, r) in r.iter_mut().enumerate().take(rows) {
                        // SAFETY: row top + i < mc and steps p0..p0 + steps exist.
                        *r = unsafe {
                            _mm512_maskz_loadu_ps(
                                lanes(steps),
                                a.as_ptr().offset((top + i) as isize * rs + p0 as isize),
                            )
                        };
                    }
                    for (q, v) in transpose16(r).iter().enumerate().take(steps) {
                        // Lanes 0..8 go to the first panel, 8..16 to the second (if it exists).
                        let v = _mm512_castps_pd(*v);
                        let at = (p0 + q) * MR;
                        // SAFETY: dst holds kc steps of MR values per panel.
                        unsafe { _mm256_storeu_pd(dst[at..at + MR].as_mut_ptr().cast(), _mm512_castpd512_pd256(v)) };
                        if rows > MR {
                            let at = at + MR * kc;
                            // SAFETY: as above, for the second panel.
                            unsafe {
                                _mm256_storeu_pd(dst[at..at + MR].as_mut_ptr().cast(), _mm512_extractf64x4_pd::<1>(v))
                            };
                        }
                    }
                }
            }
        } else if rs == 1 {
            for (panel, dst) in (0..mc).step_by(MR).zip(out.chunks_exact_mut(MR * kc)) {
                let mask = lanes(MR.min(mc - panel));
                for (p, step) in dst.chunks_exact_mut(MR).enumerate() {
                    // SAFETY: rows panel.. (masked to those that exist) of column p.
                    let v = unsafe { _mm512_maskz_loadu_ps(mask, a.as_ptr().offset(panel as isize + p as isize * cs)) };
                    // SAFETY: step holds MR values.
                    unsafe { _mm512_mask_storeu_ps(step.as_mut_ptr(), lanes(MR), v) };
                }
            }
        } else {
            pack_panels(a, MR, out);
        }
    }

    /// Any layout, a value at a time: `x`'s rows in panels of `width`, each step (column) of a panel its
    /// `width` values; rows past the end are zero. `A` is packed as it is, `B` as its transpose.
    fn pack_panels(x: ArrayView2<f32>, width: usize, out: &mut [f32]) {
        let (rows, steps) = x.dim();
        for (panel, dst) in (0..rows).step_by(width).zip(out.chunks_exact_mut(width * steps)) {
            for (p, step) in dst.chunks_exact_mut(width).enumerate() {
                for (i, v) in step.iter_mut().enumerate() {
                    *v = if panel + i < rows { x[[panel + i, p]] } else { 0.0 };
                }
            }
        }
    }

    /// `b` (`kc x n`) as panels of `NR` columns, each `kc` rows of `NR` values; columns past `n` are zero.
    /// Rows of `b` that are contiguous are copied a vector at a time; contiguous columns (`W^T`) are
    /// transposed 16 x 16 in registers.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_b(b: ArrayView2<f32>, out: &mut [f32]) {
        let (kc, n) = b.dim();
        let [rs, cs] = [b.strides()[0], b.strides()[1]];
        if rs == 1 && kc > 1 {
            // SAFETY: AVX-512F (this function's contract); columns are contiguous.
            unsafe { pack_b_columns(b, out) };
        } else if cs == 1 {
            for (panel, dst) in (0..n).step_by(NR).zip(out.chunks_exact_mut(NR * kc)) {
                let cols = NR.min(n - panel);
                let masks: [__mmask16; V] = std::array::from_fn(|h| lanes(cols.saturating_sub(16 * h)));
                for (p, step) in dst.chunks_exact_mut(NR).enumerate() {
                    for (h, &mask) in masks.iter().enumerate() {
                        // SAFETY: row p, columns panel + 16 h.. masked to those that exist.
                        let v = unsafe {
                            _mm512_maskz_loadu_ps(mask, b.as_ptr().offset(p as isize * rs + (panel + 16 * h) as isize))
                        };
                        // SAFETY: step holds NR values.
                        unsafe { _mm512_storeu_ps(step.as_mut_ptr().add(16 * h), v) };
                    }
                }
            }
        } else {
            pack_panels(b.t(), NR, out);
        }
    }

    /// [`pack_b`] for contiguous columns: each 16 x 16 block of `b` is loaded a column a vector,
    /// transposed in registers and stored a row a vector.
    ///
    /// # Safety
    /// AVX-512F; `b`'s columns are contiguous.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_b_columns(b: ArrayView2<f32>, out: &mut [f32]) {
        let (kc, n) = b.dim();
        let ld = b.strides()[1];
        for (panel, dst) in (0..n).step_by(NR).zip(out.chunks_exact_mut(NR * kc)) {
            for h in 0..V {
                let first = panel + 16 * h;
                let cols = n.saturating_sub(first).min(16);
                for p0 in (0..kc).step_by(16) {
                    let steps = 16.min(kc - p0);
                    let mask = lanes(steps);
                    let mut r: [__m512; 16] = [_mm512_setzero_ps(); 16];
                    for (j, r) in r.iter_mut().enumerate().take(cols) {
                        // SAFETY: column first + j < n exists; rows p0..p0 + steps exist.
                        *r = unsafe {
                            _mm512_maskz_loadu_ps(mask, b.as_ptr().offset((first + j) as isize * ld + p0 as isize))
                        };
                    }
                    let r = transpose16(r);
                    for (q, row) in r.iter().enumerate().take(steps) {
                        let at = (p0 + q) * NR + 16 * h;
                        // SAFETY: dst holds kc rows of NR values.
                        unsafe { _mm512_storeu_ps(dst[at..at + 16].as_mut_ptr(), *row) };
                    }
                }
            }
        }
    }

    /// The 16 x 16 transpose: vector `j` of the result holds element `j` of each input vector.
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // Pairs interleaved, then quads within each 128-bit lane: t[4q + c], lane l = column 4l + c of rows 4q..4q+4.
        let mut t = [_mm512_setzero_ps(); 16];
        for q in 0..4 {
            let (lo01, hi01) = (_mm512_unpacklo_ps(r[4 * q], r[4 * q + 1]), _mm512_unpackhi_ps(r[4 * q], r[4 * q + 1]));
            let (lo23, hi23) =
                (_mm512_unpacklo_ps(r[4 * q + 2], r[4 * q + 3]), _mm512_unpackhi_ps(r[4 * q + 2], r[4 * q + 3]));
            t[4 * q] = _mm512_shuffle_ps::<0x44>(lo01, lo23);
            t[4 * q + 1] = _mm512_shuffle_ps::<0xee>(lo01, lo23);
            t[4 * q + 2] = _mm512_shuffle_ps::<0x44>(hi01, hi23);
            t[4 * q + 3] = _mm512_shuffle_ps::<0xee>(hi01, hi23);
        }
        // Then 128-bit lanes across vectors, twice.
        let mut u = [_mm512_setzero_ps(); 16];
        for c in 0..4 {
            u[c] = _mm512_shuffle_f32x4::<0x88>(t[c], t[4 + c]);
            u[4 + c] = _mm512_shuffle_f32x4::<0xdd>(t[c], t[4 + c]);
            u[8 + c] = _mm512_shuffle_f32x4::<0x88>(t[8 + c], t[12 + c]);
            u[12 + c] = _mm512_shuffle_f32x4::<0xdd>(t[8 + c], t[12 + c]);
        }
        let mut out = [_mm512_setzero_ps(); 16];
        for c in 0..4 {
            out[c] = _mm512_shuffle_f32x4::<0x88>(u[c], u[8 + c]);
            out[4 + c] = _mm512_shuffle_f32x4::<0x88>(u[4 + c], u[12 + c]);
            out[8 + c] = _mm512_shuffle_f32x4::<0xdd>(u[c], u[8 + c]);
            out[12 + c] = _mm512_shuffle_f32x4::<0xdd>(u[4 + c], u[12 + c]);
        }
        out
    }

    /// Where a register tile goes in `c`: its first element, the row stride, the rows that exist and
    /// the lanes of its two column halves that exist.
    struct Tile {
        ptr: *mut f32,
        ldc: isize,
        rows: usize,
        masks: [__mmask16; V],
    }

    /// One `MR x NR` tile: `sum_p a[p] b[p]` over `kc` steps, then `c = alpha sum + beta c` (or
    /// `alpha sum` when `overwrite`, without reading `c`).
    ///
    /// # Safety
    /// AVX-512F; `a` holds `kc * MR` values; `b` rows `0..kc` at stride `ldb` hold the tile's masked
    /// columns; the tile's rows and masked columns lie in `c`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: isize,
        tile: Tile,
        alpha: f32,
        beta: f32,
        overwrite: bool,
    ) {
        let masks = tile.masks;
        // The tile of c is read or written once the sum is done, from L3 when c is larger than L2 (a 512 x
        // 800 product's): fetched now, its lines arrive while the FMAs run instead of stalling the update.
        // 512-row products of a training step 3-6% faster (AMD EPYC, BENCHMARKS.md section 3).
        for i in 0..tile.rows {
            let row = tile.ptr.wrapping_offset(i as isize * tile.ldc);
            for h in 0..V {
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(16 * h).cast());
            }
        }
        let mut acc = [[_mm512_setzero_ps(); V]; MR];
        // One step of k: two vectors of b's row, each of the MR values of a broadcast against them.
        let step = |acc: &mut [[__m512; V]; MR], a: *const f32, b: *const f32| {
            // SAFETY: within the panels, per the function's contract.
            unsafe {
                let row: [__m512; V] = std::array::from_fn(|h| _mm512_maskz_loadu_ps(masks[h], b.add(16 * h)));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i));
                    for (acc, &bh) in acc.iter_mut().zip(&row) {
                        *acc = _mm512_fmadd_ps(ai, bh, *acc);
                    }
                }
            }
        };
        let (mut a, mut b) = (a, b);
        // Four steps a loop: less loop overhead between the FMAs.
        for _ in 0..kc / 4 {
            // SAFETY: steps p..p + 4 are within the panels.
            unsafe {
                step(&mut acc, a, b);
                step(&mut acc, a.add(MR), b.offset(ldb));
                step(&mut acc, a.add(2 * MR), b.offset(2 * ldb));
                step(&mut acc, a.add(3 * MR), b.offset(3 * ldb));
            }
            // Past the last step these point outside the panels, never read: wrapping arithmetic.
            a = a.wrapping_add(4 * MR);
            b = b.wrapping_offset(4 * ldb);
        }
        for _ in 0..kc % 4 {
            step(&mut acc, a, b);
            a = a.wrapping_add(MR);
            b = b.wrapping_offset(ldb);
        }
        let (alpha, beta) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
        for (i, acc) in acc.iter().enumerate().take(tile.rows) {
            // SAFETY: row i < rows of the tile, lanes masked to its columns.
            unsafe {
                let row = tile.ptr.offset(i as isize * tile.ldc);
                for (h, &mask) in masks.iter().enumerate() {
                    let dst = row.add(16 * h);
                    let mut v = _mm512_mul_ps(alpha, acc[h]);
                    if !overwrite {
                        v = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask, dst), v);
                    }
                    _mm512_mask_storeu_ps(dst, mask, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};

    /// The product in float64, one element at a time: the reference.
    fn reference(alpha: f32, a: &Array2<f32>, b: &Array2<f32>, beta: f32, c: &Array2<f32>) -> Array2<f64> {
        Array2::from_shape_fn(c.dim(), |(i, j)| {
            let dot: f64 = (0..a.ncols()).map(|p| f64::from(a[[i, p]]) * f64::from(b[[p, j]])).sum();
            f64::from(alpha) * dot + f64::from(beta) * f64::from(c[[i, j]])
        })
    }

    fn fill(rows: usize, cols: usize, seed: usize, column_major: bool) -> Array2<f32> {
        let f = |(i, j): (usize, usize)| (((i * 31 + j * 17 + seed * 7) % 97) as f32 - 48.0) / 50.0;
        if column_major {
            Array2::from_shape_fn((rows, cols).f(), f)
        } else {
            Array2::from_shape_fn((rows, cols), f)
        }
    }

    /// Every shape class the kernel meets (partial tiles in m and n, several blocks of k, transposed
    /// views of a and b, beta 0 and not, a strided c) against float64, within float32 rounding of a
    /// k-term sum: |error| <= k * 2^-23 * sum |a_p b_p| (plus beta's term).
    #[test]
    fn matches_float64_on_every_shape_class() {
        // Kernel paths: B in place (m < 256) or packed, one or several blocks of k, partial row and column
        // tiles; (64, 800, 10) and (13, 37, 45) fall back to matrixmultiply (narrow, little work).
        let shapes = [
            (128, 784, 800),
            (784, 128, 800),
            (300, 600, 40),
            (13, 300, 45),
            (8, 600, 33),
            (200, 5, 64),
            (64, 800, 10),
            (13, 37, 45),
        ];
        for (m, k, n) in shapes {
            for (transpose_a, transpose_b) in [(false, false), (true, false), (false, true), (true, true)] {
                for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (1.0, -2.0)] {
                    let (a, b) = (fill(m, k, 1, transpose_a), fill(k, n, 2, transpose_b));
                    let mut wide = fill(m, n + 3, 3, false);
                    let before = wide.slice(ndarray::s![.., ..n]).to_owned();
                    gemm(alpha, &a, &b, beta, &mut wide.slice_mut(ndarray::s![.., ..n]));
                    let want = reference(alpha, &a, &b, beta, &before);
                    let bound = |i: usize, j: usize| {
                        let mass: f64 = (0..k).map(|p| f64::from(a[[i, p]] * b[[p, j]]).abs()).sum();
                        (k as f64 + 2.0)
                            * f64::from(f32::EPSILON)
                            * (f64::from(alpha) * mass + before[[i, j]].abs() as f64 * 2.0)
                            + 1e-6
                    };
                    for ((i, j), &w) in want.indexed_iter() {
                        let got = f64::from(wide[[i, j]]);
                        assert!(
                            (got - w).abs() <= bound(i, j),
                            "{m}x{k}x{n} t{transpose_a}{transpose_b} a{alpha} b{beta} [{i},{j}]: {got} vs {w}"
                        );
                    }
                    // The columns past n were not touched.
                    assert_eq!(wide.slice(ndarray::s![.., n..]), fill(m, n + 3, 3, false).slice(ndarray::s![.., n..]));
                }
            }
        }
    }

    /// Views laid out in neither rows nor columns (every other column) take the value-at-a-time packing,
    /// on the kernel's path: still the float64 product within float32 rounding.
    #[test]
    fn strided_views_match_float64() {
        let (m, k, n) = (130, 300, 70);
        let (wide_a, wide_b) = (fill(m, 2 * k, 1, false), fill(k, 2 * n, 2, false));
        let (a, b) = (wide_a.slice(ndarray::s![.., ..;2]), wide_b.slice(ndarray::s![.., ..;2]));
        let mut c = Array2::zeros((m, n));
        gemm(1.0, &a, &b, 0.0, &mut c);
        let want = reference(1.0, &a.to_owned(), &b.to_owned(), 0.0, &c);
        for ((i, j), &w) in want.indexed_iter() {
            let mass: f64 = (0..k).map(|p| f64::from(a[[i, p]] * b[[p, j]]).abs()).sum();
            let bound = (k as f64 + 2.0) * f64::from(f32::EPSILON) * mass + 1e-6;
            assert!((f64::from(c[[i, j]]) - w).abs() <= bound, "[{i},{j}]: {} vs {w}", c[[i, j]]);
        }
    }

    /// With beta == 0 the old c is not read: NaN in it does not reach the result (general_mat_mul's rule).
    #[test]
    fn beta_zero_ignores_nan_in_c() {
        let (a, b) = (fill(40, 300, 1, false), fill(300, 70, 2, false));
        let mut c = Array2::from_elem((40, 70), f32::NAN);
        gemm(1.0, &a, &b, 0.0, &mut c);
        assert!(c.iter().all(|v| v.is_finite()));
    }
}
