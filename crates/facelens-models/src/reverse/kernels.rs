//! CPU kernels of the frozen-network engine.
//!
//! Activations and gradients are stored channel-major, `[C][B][H*W]`, where `B` is the
//! number of images (forward) or Jacobian rows (reverse). With that layout a 1x1
//! convolution over the whole batch is a single GEMM with N = B*H*W, which is where
//! nearly all of MobileFaceNet's work is.

use rayon::prelude::*;

/// Geometry of a 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub h: usize,
    pub w: usize,
}

impl ConvGeom {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0 && self.groups == 1
    }
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.cin && self.groups == self.cout
    }
}

/// `c = a * b (+ c if accumulate)`, with explicit row/column strides (in elements).
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

/// Forward convolution. `x`: `[cin][b][h*w]`, weight `[cout][cin/groups][k][k]`, bias `[cout]`.
pub fn conv_forward(g: &ConvGeom, weight: &[f32], bias: &[f32], x: &[f32], b: usize) -> Vec<f32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let op = oh * ow;
    let mut y = vec![0f32; g.cout * b * op];
    if g.is_pointwise() {
        matmul(g.cout, b * op, g.cin, weight, g.cin, 1, x, b * op, 1, &mut y, false);
    } else if g.groups == 1 {
        let col = im2col(g, x, b);
        let kk = g.cin * g.k * g.k;
        matmul(g.cout, b * op, kk, weight, kk, 1, &col, b * op, 1, &mut y, false);
    } else {
        grouped_forward(g, weight, x, b, &mut y);
    }
    y.par_chunks_mut(b * op).zip(bias.par_iter()).for_each(|(plane, &bv)| plane.iter_mut().for_each(|v| *v += bv));
    y
}

/// Input gradient of a convolution (no weight gradient). `gy`: `[cout][b][oh*ow]` -> `[cin][b][h*w]`.
pub fn conv_backward_input(g: &ConvGeom, weight: &[f32], gy: &[f32], b: usize) -> Vec<f32> {
    let op = g.out_h() * g.out_w();
    if g.is_pointwise() {
        let mut gx = vec![0f32; g.cin * b * op];
        // gx[cin][n] = sum_cout W[cout][cin] gy[cout][n]: lhs is W^T.
        matmul(g.cin, b * op, g.cout, weight, 1, g.cin, gy, b * op, 1, &mut gx, false);
        gx
    } else if g.groups == 1 {
        let kk = g.cin * g.k * g.k;
        let mut col = vec![0f32; kk * b * op];
        matmul(kk, b * op, g.cout, weight, 1, kk, gy, b * op, 1, &mut col, false);
        col2im(g, &col, b)
    } else {
        grouped_backward_input(g, weight, gy, b)
    }
}

/// `[cin][b][h*w]` -> `[cin*k*k][b][oh*ow]`, zero outside the image.
fn im2col(g: &ConvGeom, x: &[f32], b: usize) -> Vec<f32> {
    let (oh, ow, hw) = (g.out_h(), g.out_w(), g.h * g.w);
    let op = oh * ow;
    let kk = g.k * g.k;
    let mut col = vec![0f32; g.cin * kk * b * op];
    col.par_chunks_mut(b * op).enumerate().for_each(|(row, dst)| {
        let (ci, kidx) = (row / kk, row % kk);
        let (ky, kx) = (kidx / g.k, kidx % g.k);
        for bi in 0..b {
            let src = &x[(ci * b + bi) * hw..(ci * b + bi + 1) * hw];
            let d = &mut dst[bi * op..(bi + 1) * op];
            for oy in 0..oh {
                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                for ox in 0..ow {
                    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                    if ix >= 0 && ix < g.w as isize {
                        d[oy * ow + ox] = src[iy as usize * g.w + ix as usize];
                    }
                }
            }
        }
    });
    col
}

/// Adjoint of [`im2col`]: scatter-adds columns back onto the image.
fn col2im(g: &ConvGeom, col: &[f32], b: usize) -> Vec<f32> {
    let (oh, ow, hw) = (g.out_h(), g.out_w(), g.h * g.w);
    let op = oh * ow;
    let kk = g.k * g.k;
    let mut gx = vec![0f32; g.cin * b * hw];
    gx.par_chunks_mut(b * hw).enumerate().for_each(|(ci, dst)| {
        for kidx in 0..kk {
            let (ky, kx) = (kidx / g.k, kidx % g.k);
            let src_row = &col[(ci * kk + kidx) * b * op..(ci * kk + kidx + 1) * b * op];
            for bi in 0..b {
                let s = &src_row[bi * op..(bi + 1) * op];
                let d = &mut dst[bi * hw..(bi + 1) * hw];
                for oy in 0..oh {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    for ox in 0..ow {
                        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                        if ix >= 0 && ix < g.w as isize {
                            d[iy as usize * g.w + ix as usize] += s[oy * ow + ox];
                        }
                    }
                }
            }
        }
    });
    gx
}

/// Direct grouped/depthwise convolution, parallel over output channels.
fn grouped_forward(g: &ConvGeom, weight: &[f32], x: &[f32], b: usize, y: &mut [f32]) {
    let (oh, ow, hw) = (g.out_h(), g.out_w(), g.h * g.w);
    let op = oh * ow;
    let (cin_g, cout_g) = (g.cin / g.groups, g.cout / g.groups);
    let kk = g.k * g.k;
    y.par_chunks_mut(b * op).enumerate().for_each(|(co, dst)| {
        let grp = co / cout_g;
        for cil in 0..cin_g {
            let ci = grp * cin_g + cil;
            let wk = &weight[(co * cin_g + cil) * kk..(co * cin_g + cil + 1) * kk];
            for bi in 0..b {
                let src = &x[(ci * b + bi) * hw..(ci * b + bi + 1) * hw];
                let d = &mut dst[bi * op..(bi + 1) * op];
                for ky in 0..g.k {
                    for kx in 0..g.k {
                        let wv = wk[ky * g.k + kx];
                        for oy in 0..oh {
                            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                            if iy < 0 || iy >= g.h as isize {
                                continue;
                            }
                            let srow = &src[iy as usize * g.w..(iy as usize + 1) * g.w];
                            let drow = &mut d[oy * ow..(oy + 1) * ow];
                            accumulate_row(drow, srow, wv, g.stride, kx, g.pad, g.w);
                        }
                    }
                }
            }
        }
    });
}

/// `drow[ox] += w * srow[ox*stride + kx - pad]` for the in-bounds range of `ox`.
#[inline]
fn accumulate_row(drow: &mut [f32], srow: &[f32], w: f32, stride: usize, kx: usize, pad: usize, width: usize) {
    let ow = drow.len();
    if kx >= width + pad {
        return;
    }
    // First and last output column whose input column is inside the image.
    let lo = if kx >= pad { 0 } else { (pad - kx).div_ceil(stride) };
    let hi = ((width + pad - kx - 1) / stride + 1).min(ow);
    if lo >= hi {
        return;
    }
    if stride == 1 {
        let off = lo + kx - pad;
        for (d, s) in drow[lo..hi].iter_mut().zip(&srow[off..off + (hi - lo)]) {
            *d += w * s;
        }
    } else {
        for ox in lo..hi {
            drow[ox] += w * srow[ox * stride + kx - pad];
        }
    }
}

/// Input gradient of a direct grouped/depthwise convolution, parallel over input channels.
fn grouped_backward_input(g: &ConvGeom, weight: &[f32], gy: &[f32], b: usize) -> Vec<f32> {
    let (oh, ow, hw) = (g.out_h(), g.out_w(), g.h * g.w);
    let op = oh * ow;
    let (cin_g, cout_g) = (g.cin / g.groups, g.cout / g.groups);
    let kk = g.k * g.k;
    let mut gx = vec![0f32; g.cin * b * hw];
    gx.par_chunks_mut(b * hw).enumerate().for_each(|(ci, dst)| {
        let grp = ci / cin_g;
        let cil = ci % cin_g;
        for col in 0..cout_g {
            let co = grp * cout_g + col;
            let wk = &weight[(co * cin_g + cil) * kk..(co * cin_g + cil + 1) * kk];
            for bi in 0..b {
                let src = &gy[(co * b + bi) * op..(co * b + bi + 1) * op];
                let d = &mut dst[bi * hw..(bi + 1) * hw];
                for ky in 0..g.k {
                    for kx in 0..g.k {
                        let wv = wk[ky * g.k + kx];
                        for oy in 0..oh {
                            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                            if iy < 0 || iy >= g.h as isize {
                                continue;
                            }
                            let drow = &mut d[iy as usize * g.w..(iy as usize + 1) * g.w];
                            let srow = &src[oy * ow..(oy + 1) * ow];
                            scatter_row(drow, srow, wv, g.stride, kx, g.pad, g.w);
                        }
                    }
                }
            }
        }
    });
    gx
}

/// Adjoint of [`accumulate_row`]: `drow[ox*stride + kx - pad] += w * srow[ox]`.
#[inline]
fn scatter_row(drow: &mut [f32], srow: &[f32], w: f32, stride: usize, kx: usize, pad: usize, width: usize) {
    let ow = srow.len();
    if kx >= width + pad {
        return;
    }
    let lo = if kx >= pad { 0 } else { (pad - kx).div_ceil(stride) };
    let hi = ((width + pad - kx - 1) / stride + 1).min(ow);
    if lo >= hi {
        return;
    }
    if stride == 1 {
        let off = lo + kx - pad;
        for (d, s) in drow[off..off + (hi - lo)].iter_mut().zip(&srow[lo..hi]) {
            *d += w * s;
        }
    } else {
        for ox in lo..hi {
            drow[ox * stride + kx - pad] += w * srow[ox];
        }
    }
}
