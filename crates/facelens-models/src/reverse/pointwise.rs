//! `y [m][n] = w [m][k] * x [k][n]` for 1x1 (and im2col'd) convolutions, register-blocked for
//! the shapes of face backbones: `m` output channels of a few hundred, `k` input channels of a
//! few hundred, `n` pixels times images in the thousands.
//!
//! The weight rows are read in place; each activation panel of 16 columns and up to [`KC`]
//! inner indices is copied into a contiguous `[kc][16]` block (rows of a wide map are a
//! multiple of 4 KiB apart and would share a few L1 sets), which stays in L1 while 6 output
//! rows at a time accumulate against it: 12 vector accumulators, the 6x16 microkernel of BLIS.
//! Every value is one fused multiply-add chain over `k` in ascending order starting from
//! zero; a chain longer than [`KC`] is stored and picked up again where it stopped, which
//! changes no operation, so the result does not depend on the tiling.

/// Rows of a register block.
pub(super) const ROWS: usize = 6;
/// Columns of a register block (two AVX vectors).
pub(super) const COLS: usize = 16;
/// Inner indices per packed panel: 16 KiB, half of L1, so the weights streaming past keep it.
const KC: usize = 256;

/// Computes rows `r0..r1` and columns `c0..c1` of `y = w * x`. `y` points at `y[0][0]` of a
/// row-major `[m][n]` buffer.
///
/// # Safety
/// `w` holds at least `r1 * k` values, `x` at least `k * n`, `y` at least `r1 * n`, and no other
/// thread touches rows `r0..r1` x columns `c0..c1` of `y` meanwhile.
#[inline(always)]
pub unsafe fn tile(w: &[f32], x: &[f32], y: *mut f32, k: usize, n: usize, (r0, r1): (usize, usize), (c0, c1): (usize, usize)) {
    assert!(w.len() >= r1 * k && x.len() >= k * n && c1 <= n);
    let mut panel = vec![0f32; KC.min(k) * COLS];
    // A last panel narrower than COLS runs zero-padded into this block, then its valid columns
    // are copied out (same chains, so the same values).
    let mut spill = vec![0f32; (r1 - r0) * COLS];
    for c in (c0..c1).step_by(COLS) {
        let width = COLS.min(c1 - c);
        for k0 in (0..k.max(1)).step_by(KC) {
            let kc = KC.min(k - k0);
            for (kk, dst) in panel.chunks_exact_mut(COLS).take(kc).enumerate() {
                let src = (k0 + kk) * n + c;
                dst[..width].copy_from_slice(&x[src..src + width]);
                dst[width..].fill(0.0);
            }
            for r in (r0..r1).step_by(ROWS) {
                let rows = (r1 - r).min(ROWS);
                let wr = w.as_ptr().add(r * k + k0);
                let (out, stride) = if width == COLS { (y.add(r * n + c), n) } else { (spill.as_mut_ptr().add((r - r0) * COLS), COLS) };
                // SAFETY: rows r..r+rows < r1 of w from column k0, kc of them; the panel holds
                // kc x COLS; `out` has `rows` rows of COLS values at `stride` (y: inside the
                // tile, as width == COLS; or the spill rows of this row block).
                let go = (wr, &panel[..kc * COLS], k, kc, out, stride, k0 > 0);
                match rows {
                    6 => block::<6>(go),
                    5 => block::<5>(go),
                    4 => block::<4>(go),
                    3 => block::<3>(go),
                    2 => block::<2>(go),
                    _ => block::<1>(go),
                }
            }
        }
        if width < COLS {
            for (i, vals) in spill.chunks_exact(COLS).enumerate() {
                std::ptr::copy_nonoverlapping(vals.as_ptr(), y.add((r0 + i) * n + c), width);
            }
        }
    }
}

/// Arguments of [`block`]: weight rows (at their first inner index, `k` apart), the packed
/// `[kc][COLS]` panel, `k`, `kc`, the output rows (`stride` apart) and whether to continue
/// the chains stored there.
type Block<'a> = (*const f32, &'a [f32], usize, usize, *mut f32, usize, bool);

/// `R` weight rows times a packed panel, accumulated in registers over the panel's `kc`
/// inner indices, stored as `R` rows of `COLS` values.
#[inline(always)]
unsafe fn block<const R: usize>(go: Block) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        return block_avx2::<R>(go);
    }
    let (w, panel, k, kc, out, stride, resume) = go;
    let mut acc = [[0f32; COLS]; R];
    if resume {
        for (i, row) in acc.iter_mut().enumerate() {
            std::ptr::copy_nonoverlapping(out.add(i * stride), row.as_mut_ptr(), COLS);
        }
    }
    for kk in 0..kc {
        let xv = &panel[kk * COLS..(kk + 1) * COLS];
        for (i, row) in acc.iter_mut().enumerate() {
            let wv = *w.add(i * k + kk);
            for l in 0..COLS {
                row[l] = wv.mul_add(xv[l], row[l]);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        std::ptr::copy_nonoverlapping(row.as_ptr(), out.add(i * stride), COLS);
    }
}

/// [`block`] with AVX2 intrinsics: two vectors per row, `R` rows, one `vfmadd231ps` per
/// (row, vector, inner index) — the same fused multiply-add chain as `f32::mul_add`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2<const R: usize>((w, panel, k, kc, out, stride, resume): Block) {
    use std::arch::x86_64::*;
    debug_assert!(panel.len() >= kc * COLS);
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    if resume {
        for i in 0..R {
            lo[i] = _mm256_loadu_ps(out.add(i * stride));
            hi[i] = _mm256_loadu_ps(out.add(i * stride + 8));
        }
    }
    let xp = panel.as_ptr();
    for kk in 0..kc {
        let x0 = _mm256_loadu_ps(xp.add(kk * COLS));
        let x1 = _mm256_loadu_ps(xp.add(kk * COLS + 8));
        for i in 0..R {
            let wv = _mm256_broadcast_ss(&*w.add(i * k + kk));
            lo[i] = _mm256_fmadd_ps(wv, x0, lo[i]);
            hi[i] = _mm256_fmadd_ps(wv, x1, hi[i]);
        }
    }
    for i in 0..R {
        _mm256_storeu_ps(out.add(i * stride), lo[i]);
        _mm256_storeu_ps(out.add(i * stride + 8), hi[i]);
    }
}
