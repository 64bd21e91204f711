//! Dense convolutions on the CPU as one GEMM over an im2col matrix (Caffe's formulation):
//! `y [cout, oh*ow] = W [cout, cin*k*k] * col [cin*k*k, oh*ow]`, and the input gradient as
//! `W^T * dy` scattered back by [`col2im`].
//!
//! Planes are stored `[C][H*W][B]` with `B` values per pixel innermost (a batch of images, or of
//! Jacobian rows); `B = 1` is plain CHW. The frozen-network engine, the SCRFD detector and the
//! decoder's 3x3 convolution all use these kernels, so they stay identical: [`im2col`] only
//! copies, and [`col2im`] adds the taps of every input pixel in ascending `(ky, kx)` order.

use rayon::prelude::*;

/// The sliding window of a convolution over `channels` planes of `h x w` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Window {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Rows of the im2col matrix: `channels * k * k`.
    pub fn rows(&self) -> usize {
        self.channels * self.k * self.k
    }

    /// For every `kx`, the output columns `lo..hi` whose input column lies inside the row.
    fn column_ranges(&self) -> Vec<(usize, usize)> {
        (0..self.k).map(|kx| valid_columns(kx, self.stride, self.pad, self.w, self.out_w())).collect()
    }

    /// Input row of output row `oy` and kernel row `ky`, if inside the image.
    #[inline]
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad)?;
        (iy < self.h).then_some(iy)
    }
}

/// Output columns `lo..hi` whose tap `kx` lands inside a row of `width` input pixels
/// (`ox * stride + kx - pad` in `0..width`); `lo == hi` when none does.
#[inline]
pub fn valid_columns(kx: usize, stride: usize, pad: usize, width: usize, out_w: usize) -> (usize, usize) {
    if kx >= width + pad {
        return (0, 0);
    }
    let lo = if kx >= pad { 0 } else { (pad - kx).div_ceil(stride) }.min(out_w);
    let hi = ((width + pad - kx - 1) / stride + 1).min(out_w);
    (lo, hi.max(lo))
}

/// `x: [channels][h*w][b]` -> `col: [channels*k*k][oh*ow][b]`, zero where a tap falls outside
/// the image. Every value of `col[..rows * oh*ow * b]` is written, so it may hold garbage.
pub fn im2col(win: &Window, x: &[f32], b: usize, col: &mut [f32]) {
    let (oh, ow, hw) = (win.out_h(), win.out_w(), win.h * win.w);
    let (k, kk, st) = (win.k, win.k * win.k, win.stride);
    assert!(x.len() >= win.channels * hw * b && col.len() >= win.rows() * oh * ow * b);
    if oh * ow * b == 0 {
        return;
    }
    let ranges = win.column_ranges();
    col[..win.rows() * oh * ow * b].par_chunks_mut(oh * ow * b).enumerate().for_each(|(row, dst)| {
        let (ci, ky, kx) = (row / kk, row % kk / k, row % k);
        let src = &x[ci * hw * b..(ci + 1) * hw * b];
        let (lo, hi) = ranges[kx];
        for (oy, out) in dst.chunks_exact_mut(ow * b).enumerate() {
            let Some(iy) = win.input_row(oy, ky) else {
                out.fill(0.0);
                continue;
            };
            out[..lo * b].fill(0.0);
            out[hi * b..].fill(0.0);
            let srow = &src[iy * win.w * b..(iy + 1) * win.w * b];
            if st == 1 {
                let first = lo + kx - win.pad;
                out[lo * b..hi * b].copy_from_slice(&srow[first * b..(first + hi - lo) * b]);
            } else if b == 1 && lo < hi {
                // A strided gather; a copy call per value would cost more than the value.
                let first = lo * st + kx - win.pad;
                out[lo..hi].iter_mut().zip(srow[first..].iter().step_by(st)).for_each(|(d, v)| *d = *v);
            } else {
                for ox in lo..hi {
                    let ix = ox * st + kx - win.pad;
                    out[ox * b..(ox + 1) * b].copy_from_slice(&srow[ix * b..(ix + 1) * b]);
                }
            }
        }
    });
}

/// Adjoint of [`im2col`]: adds every column value onto the input pixel it was copied from,
/// `col: [channels*k*k][oh*ow][b]` onto `gx: [channels][h*w][b]`.
pub fn col2im(win: &Window, col: &[f32], b: usize, gx: &mut [f32]) {
    let (oh, ow, hw) = (win.out_h(), win.out_w(), win.h * win.w);
    let (k, kk, st) = (win.k, win.k * win.k, win.stride);
    let op = oh * ow;
    assert!(col.len() >= win.rows() * op * b && gx.len() >= win.channels * hw * b);
    if hw * b == 0 {
        return;
    }
    let ranges = win.column_ranges();
    gx[..win.channels * hw * b].par_chunks_mut(hw * b).enumerate().for_each(|(ci, dst)| {
        for kidx in 0..kk {
            let (ky, kx) = (kidx / k, kidx % k);
            let (lo, hi) = ranges[kx];
            let src = &col[(ci * kk + kidx) * op * b..(ci * kk + kidx + 1) * op * b];
            for oy in 0..oh {
                let Some(iy) = win.input_row(oy, ky) else { continue };
                let drow = &mut dst[iy * win.w * b..(iy + 1) * win.w * b];
                let srow = &src[oy * ow * b..(oy + 1) * ow * b];
                if st == 1 {
                    let first = lo + kx - win.pad;
                    add(&mut drow[first * b..(first + hi - lo) * b], &srow[lo * b..hi * b]);
                } else {
                    for ox in lo..hi {
                        let ix = ox * st + kx - win.pad;
                        add(&mut drow[ix * b..(ix + 1) * b], &srow[ox * b..(ox + 1) * b]);
                    }
                }
            }
        }
    });
}

#[inline]
fn add(y: &mut [f32], x: &[f32]) {
    for (d, s) in y.iter_mut().zip(x) {
        *d += *s;
    }
}

/// `c = a * b (+ c if accumulate)` through the `gemm` crate, with explicit row/column strides
/// (in elements) of `a` (`m x k`) and `b` (`k x n`); `c` is dense row-major `m x n`.
///
/// Large products run on rayon's threads. gemm splits the work by output tiles, never along
/// `k`, so the result does not depend on the number of threads.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(m == 0 || n == 0 || k == 0 || (a.len() > (m - 1) * a_rs + (k - 1) * a_cs));
    assert!(m == 0 || n == 0 || k == 0 || (b.len() > (k - 1) * b_rs + (n - 1) * b_cs));
    assert!(c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m * n * k > 1 << 16 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the asserts above bound every index gemm touches: rows < m, cols < n, inner < k.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls `f(x index, col index)` for every tap that lands inside the image, in the order
    /// of the definition: channel, `ky`, `kx`, output row, output column, batch.
    fn each_tap(win: &Window, b: usize, mut f: impl FnMut(usize, usize)) {
        let (oh, ow) = (win.out_h(), win.out_w());
        for ci in 0..win.channels {
            for ky in 0..win.k {
                for kx in 0..win.k {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * win.stride + ky) as isize - win.pad as isize;
                            let ix = (ox * win.stride + kx) as isize - win.pad as isize;
                            if iy < 0 || ix < 0 || iy >= win.h as isize || ix >= win.w as isize {
                                continue;
                            }
                            let r = (ci * win.k + ky) * win.k + kx;
                            for bi in 0..b {
                                f(
                                    (ci * win.h * win.w + iy as usize * win.w + ix as usize) * b + bi,
                                    (r * oh * ow + oy * ow + ox) * b + bi,
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn windows() -> Vec<(Window, usize)> {
        let mut v = Vec::new();
        for &(k, stride, pad) in &[(3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0), (5, 2, 2), (7, 2, 3), (2, 2, 0), (3, 3, 0)] {
            for &(h, w) in &[(7, 9), (1, 1), (4, 4), (2, 5)] {
                if h + 2 * pad < k || w + 2 * pad < k {
                    continue;
                }
                for b in [1, 3] {
                    v.push((Window { channels: 2, h, w, k, stride, pad }, b));
                }
            }
        }
        v
    }

    #[test]
    fn im2col_matches_the_definition_and_overwrites_garbage() {
        for (win, b) in windows() {
            let x: Vec<f32> = (0..win.channels * win.h * win.w * b).map(|i| i as f32 + 1.0).collect();
            let mut want = vec![0f32; win.rows() * win.out_h() * win.out_w() * b];
            each_tap(&win, b, |xi, ci| want[ci] = x[xi]);
            let mut col = vec![f32::NAN; want.len()];
            im2col(&win, &x, b, &mut col);
            assert_eq!(col, want, "{win:?} b={b}");
        }
    }

    /// Adds in the order the engine's and the decoder's kernels always used: taps `(ky, kx)`
    /// ascending for every input pixel. Compared bit for bit, on values whose sums round.
    #[test]
    fn col2im_adds_taps_in_ascending_order() {
        for (win, b) in windows() {
            let m = win.rows() * win.out_h() * win.out_w() * b;
            let c: Vec<f32> = (0..m).map(|i| ((i * 7919) % 1013) as f32 * 0.013_7 - 5.1).collect();
            let mut want = vec![0f32; win.channels * win.h * win.w * b];
            each_tap(&win, b, |xi, ci| want[xi] += c[ci]);
            let mut got = vec![0f32; want.len()];
            col2im(&win, &c, b, &mut got);
            assert_eq!(got, want, "{win:?} b={b}");
        }
    }

    #[test]
    fn matmul_handles_strides_and_accumulation() {
        // a = [[1, 2], [3, 4]] stored transposed; b = [[5, 6], [7, 8]].
        let a_t = [1.0, 3.0, 2.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut c = [1.0; 4];
        matmul(2, 2, 2, &a_t, 1, 2, &b, 2, 1, &mut c, false);
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        matmul(2, 2, 2, &a_t, 1, 2, &b, 2, 1, &mut c, true);
        assert_eq!(c, [38.0, 44.0, 86.0, 100.0]);
    }
}
