//! CPU kernels of the frozen-network engine.
//!
//! Activations and gradients are stored `[C][H*W][B]`: channel-major, batch innermost, where
//! `B` is the number of images (forward) or Jacobian rows (reverse). With that layout a 1x1
//! convolution over the whole batch is a single GEMM with N = H*W*B (nearly all of
//! MobileFaceNet's work), and every tap of a depthwise or grouped convolution is a
//! contiguous, vectorisable run of B values whose index arithmetic is paid once.
//!
//! The forward's GEMMs run on this crate's register-blocked kernel ([`super::pointwise`]) in
//! tiles that finish with the fused epilogue; the reverse pass's on the `gemm` crate.

use rayon::prelude::*;

use super::epilogue::Epilogue;
use super::pointwise;
use crate::im2col::{col2im, im2col, matmul, valid_columns, Window};

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
    /// The window over the input, for [`im2col`].
    pub fn window(&self) -> Window {
        Window { channels: self.cin, h: self.h, w: self.w, k: self.k, stride: self.stride, pad: self.pad }
    }
}

/// Recycled buffers for the engine's passes.
///
/// A Jacobian pass allocates tens of buffers of up to ~100 MB; fresh allocations of that
/// size are page-faulted and zeroed by the kernel every time, which cost ~10 % of a pass.
#[derive(Default)]
pub struct Workspace {
    free: Vec<Vec<f32>>,
}

impl Workspace {
    /// A buffer of length `n` with unspecified contents (for outputs a GEMM overwrites).
    pub fn take(&mut self, n: usize) -> Vec<f32> {
        let best = (0..self.free.len())
            .filter(|&i| self.free[i].capacity() >= n)
            .min_by_key(|&i| self.free[i].capacity());
        let mut v = match best {
            Some(i) => self.free.swap_remove(i),
            None => Vec::with_capacity(n),
        };
        v.resize(n, 0.0);
        v.truncate(n);
        v
    }

    /// A zero-filled buffer of length `n`.
    pub fn take_zeroed(&mut self, n: usize) -> Vec<f32> {
        let mut v = self.take(n);
        v.fill(0.0);
        v
    }

    pub fn give(&mut self, v: Vec<f32>) {
        if v.capacity() > 0 {
            self.free.push(v);
        }
    }
}

/// Forward convolution. `x`: `[cin][h*w][b]`, weight `[cout][cin/groups][k][k]`; the output
/// `[cout][oh*ow][b]` goes through `epi` (the bias and any fused elementwise ops).
pub fn conv_forward(g: &ConvGeom, weight: &[f32], x: &[f32], b: usize, epi: &Epilogue, ws: &mut Workspace) -> Vec<f32> {
    let n = g.out_h() * g.out_w() * b;
    let mut y = ws.take(g.cout * n);
    if g.is_pointwise() {
        dense_product(g.cout, g.cin, n, weight, x, &mut y, epi);
    } else if g.groups == 1 {
        let kk = g.cin * g.k * g.k;
        let mut col = ws.take(kk * n);
        im2col(&g.window(), x, b, &mut col);
        dense_product(g.cout, kk, n, weight, &col, &mut y, epi);
        ws.give(col);
    } else {
        super::direct::grouped_forward(g, weight, x, b, &mut y, epi);
    }
    y
}

/// The kernel of dense (1x1 and im2col'd) convolutions on this CPU, for benchmark reports:
/// `"gemm-avx512"` where the CPU has AVX-512 (the `gemm` crate's 512-bit kernels, then the
/// epilogue as a pass per channel: measured 1.2-1.4x faster than the 256-bit register blocks
/// below on such a CPU), else `"avx2-6x16"` (see [`super::pointwise`]).
pub fn dense_kernel() -> &'static str {
    if wide_vectors() {
        "gemm-avx512"
    } else {
        "avx2-6x16"
    }
}

fn wide_vectors() -> bool {
    static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    #[cfg(target_arch = "x86_64")]
    return *WIDE.get_or_init(|| std::is_x86_feature_detected!("avx512f"));
    #[cfg(not(target_arch = "x86_64"))]
    return *WIDE.get_or_init(|| false);
}

/// `y [m][n] = a [m][k] * x [k][n]`, then `epi` per output row, with [`dense_kernel`]'s kernel.
/// Either way every value depends on its row and column of the operands only, not on `n` or
/// the tiling, so a batch and its images one by one get the same values.
fn dense_product(m: usize, k: usize, n: usize, a: &[f32], x: &[f32], y: &mut [f32], epi: &Epilogue) {
    if wide_vectors() {
        matmul(m, n, k, a, k, 1, x, n, 1, y, false);
        y.par_chunks_mut(n).enumerate().for_each(|(c, row)| super::simd(|| epi.apply(c, n, 0, row)));
    } else {
        gemm_epilogue(m, k, n, a, x, y, epi);
    }
}

/// Output values per GEMM tile: small enough that a tile is still in L2 when its epilogue runs.
const TILE_VALUES: usize = 16 * 1024;

/// A pointer that rayon's tasks may share; every task writes its own tile.
#[derive(Clone, Copy)]
struct TilePtr(*mut f32);
// SAFETY: tasks write disjoint tiles of one buffer that outlives them.
unsafe impl Send for TilePtr {}
unsafe impl Sync for TilePtr {}

impl TilePtr {
    /// The buffer's start. A method, so closures capture the whole `TilePtr` (which is `Send`),
    /// not its raw-pointer field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `y [m][n] = a [m][k] * x [k][n]` (all row-major), then `epi` per output row (channel), in
/// tiles of rows x columns run in parallel, each tile's epilogue right after its product.
/// Every value is one chain over `k` whatever the tile (see [`super::pointwise`]), so the
/// tiling and the number of threads change no value.
fn gemm_epilogue(m: usize, k: usize, n: usize, a: &[f32], x: &[f32], y: &mut [f32], epi: &Epilogue) {
    assert!(a.len() >= m * k && x.len() >= k * n && y.len() >= m * n);
    if m * n == 0 {
        return;
    }
    // Tiles cut at whole register blocks, as equal as that allows.
    let (cols, rows) = (pointwise::COLS, pointwise::ROWS);
    let (panels, row_blocks) = (n.div_ceil(cols), m.div_ceil(rows));
    let col_tiles = panels.div_ceil((TILE_VALUES / m / cols).max(4)).max(1);
    // Few column tiles (14x14 and 7x7 maps at batch 1): split the rows too, into enough tiles
    // that the threads finish together, each of at least 8 register blocks of rows (a tile
    // packs its own activation panels).
    let want = 8 * rayon::current_num_threads();
    let row_tiles = if col_tiles >= want { 1 } else { want.div_ceil(col_tiles).min((row_blocks / 8).max(1)) };
    let out = TilePtr(y.as_mut_ptr());
    (0..row_tiles * col_tiles).into_par_iter().for_each(|t| {
        let (rt, ct) = (t / col_tiles, t % col_tiles);
        let (r0, r1) = ((rt * row_blocks / row_tiles * rows).min(m), ((rt + 1) * row_blocks / row_tiles * rows).min(m));
        let (c0, c1) = ((ct * panels / col_tiles * cols).min(n), ((ct + 1) * panels / col_tiles * cols).min(n));
        super::simd(
            #[inline(always)]
            || {
                // SAFETY: the asserts above bound every index; tiles are disjoint.
                unsafe { pointwise::tile(a, x, out.get(), k, n, (r0, r1), (c0, c1)) };
                for r in r0..r1 {
                    // SAFETY: row r, columns c0..c1 of this task's tile.
                    let row = unsafe { std::slice::from_raw_parts_mut(out.get().add(r * n + c0), c1 - c0) };
                    epi.apply(r, n, c0, row);
                }
            },
        );
    });
}

/// Input gradient of a convolution (no weight gradient). `gy`: `[cout][oh*ow][b]` -> `[cin][h*w][b]`.
pub fn conv_backward_input(g: &ConvGeom, weight: &[f32], gy: &[f32], b: usize, ws: &mut Workspace) -> Vec<f32> {
    let op = g.out_h() * g.out_w();
    if g.is_pointwise() {
        let mut gx = ws.take(g.cin * op * b);
        // gx[cin][n] = sum_cout W[cout][cin] gy[cout][n]: lhs is W^T.
        matmul(g.cin, op * b, g.cout, weight, 1, g.cin, gy, op * b, 1, &mut gx, false);
        gx
    } else if g.groups == 1 {
        let kk = g.cin * g.k * g.k;
        let mut col = ws.take(kk * op * b);
        matmul(kk, op * b, g.cout, weight, 1, kk, gy, op * b, 1, &mut col, false);
        let mut gx = ws.take_zeroed(g.cin * g.h * g.w * b);
        col2im(&g.window(), &col, b, &mut gx);
        ws.give(col);
        gx
    } else if g.stride == 1 && g.pad < g.k {
        // Stride 1: the input gradient is the same kind of grouped convolution of `gy`, with
        // the kernels flipped, input and output channels swapped within each group and
        // padding `k - 1 - pad`, so the forward's register-blocked kernel runs it.
        let (cin_g, cout_g, kk) = (g.cin / g.groups, g.cout / g.groups, g.k * g.k);
        let mut flipped = ws.take(weight.len());
        for co in 0..g.cout {
            let (grp, col) = (co / cout_g, co % cout_g);
            for cil in 0..cin_g {
                let src = &weight[(co * cin_g + cil) * kk..(co * cin_g + cil + 1) * kk];
                let ci = grp * cin_g + cil;
                let dst = &mut flipped[(ci * cout_g + col) * kk..(ci * cout_g + col + 1) * kk];
                dst.iter_mut().zip(src.iter().rev()).for_each(|(d, v)| *d = *v);
            }
        }
        let back = ConvGeom { cin: g.cout, cout: g.cin, k: g.k, stride: 1, pad: g.k - 1 - g.pad, groups: g.groups, h: g.out_h(), w: g.out_w() };
        debug_assert_eq!((back.out_h(), back.out_w()), (g.h, g.w));
        let zero = ws.take_zeroed(g.cin);
        let mut gx = ws.take(g.cin * g.h * g.w * b);
        super::direct::grouped_forward(&back, &flipped, gy, b, &mut gx, &Epilogue::bias(&zero));
        ws.give(flipped);
        ws.give(zero);
        gx
    } else {
        grouped_backward_input(g, weight, gy, b, ws.take_zeroed(g.cin * g.h * g.w * b))
    }
}

/// For output position `o` (row or column) and tap `k`, the input position, if inside.
#[inline]
fn tap(o: usize, k: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    let i = (o * stride + k) as isize - pad as isize;
    (i >= 0 && (i as usize) < size).then_some(i as usize)
}

/// `y += a * x`.
#[inline]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (d, s) in y.iter_mut().zip(x) {
        *d += a * s;
    }
}

/// One tap of a convolution's input gradient over one output row of `ow` columns: adds
/// `w` times the output-gradient row `src` (`[ow][b]`) onto the input-gradient row `out`
/// (`[width][b]`) where the tap lands. With stride 1 the valid span is one contiguous run of
/// `(hi - lo) * b` values, so the tap is a single axpy.
#[inline]
fn row_tap(src: &[f32], out: &mut [f32], w: f32, kx: usize, g: &ConvGeom, b: usize, ow: usize) {
    let (lo, hi) = valid_columns(kx, g.stride, g.pad, g.w, ow);
    if lo >= hi {
        return;
    }
    let (o, i) = (lo * b, (lo * g.stride + kx - g.pad) * b);
    if g.stride == 1 {
        let n = (hi - lo) * b;
        axpy(&mut out[i..i + n], w, &src[o..o + n]);
    } else {
        let step = g.stride * b;
        for t in 0..hi - lo {
            let (o, i) = (o + t * b, i + t * step);
            axpy(&mut out[i..i + b], w, &src[o..o + b]);
        }
    }
}

/// Input gradient of a direct grouped/depthwise convolution into the zeroed `gx`,
/// parallel over input channels: the strided layers and paddings of a kernel's size or more
/// (stride 1 otherwise runs on the forward's kernel, see [`conv_backward_input`]).
fn grouped_backward_input(g: &ConvGeom, weight: &[f32], gy: &[f32], b: usize, mut gx: Vec<f32>) -> Vec<f32> {
    let (oh, ow, hw) = (g.out_h(), g.out_w(), g.h * g.w);
    let op = oh * ow;
    let (cin_g, cout_g) = (g.cin / g.groups, g.cout / g.groups);
    let kk = g.k * g.k;
    let (irow_len, orow_len) = (g.w * b, ow * b);
    gx.par_chunks_mut(hw * b).enumerate().for_each(|(ci, dst)| {
        let grp = ci / cin_g;
        let cil = ci % cin_g;
        for col in 0..cout_g {
            let co = grp * cout_g + col;
            let wk = &weight[(co * cin_g + cil) * kk..(co * cin_g + cil + 1) * kk];
            let src = &gy[co * op * b..(co + 1) * op * b];
            for oy in 0..oh {
                let orow = &src[oy * orow_len..(oy + 1) * orow_len];
                for ky in 0..g.k {
                    let Some(iy) = tap(oy, ky, g.stride, g.pad, g.h) else { continue };
                    let irow = &mut dst[iy * irow_len..(iy + 1) * irow_len];
                    for kx in 0..g.k {
                        row_tap(orow, irow, wk[ky * g.k + kx], kx, g, b, ow);
                    }
                }
            }
        }
    });
    gx
}

/// Partial sums of [`dots`]: four AVX vectors of lanes.
const DOT_LANES: usize = 32;

/// `out[i] = sum_j w[j] * images[i][j]`, each as [`DOT_LANES`] interleaved partial sums (fused
/// multiply-adds) added pairwise in a fixed order: vectorised, and the same value whatever
/// else is computed alongside. The weight row is read once for all images.
#[inline(always)]
fn dots(w: &[f32], images: &[Vec<f32>], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && images.len() <= 4 {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { dots_avx2(w, images, out) };
        return;
    }
    for (o, img) in out.iter_mut().zip(images) {
        let mut acc = [0f32; DOT_LANES];
        for (x, y) in w.chunks(DOT_LANES).zip(img.chunks(DOT_LANES)) {
            for (l, (a, b)) in x.iter().zip(y).enumerate() {
                acc[l] = a.mul_add(*b, acc[l]);
            }
        }
        *o = reduce(acc);
    }
}

/// The pairwise sum of [`dots`]' partial sums.
#[inline(always)]
fn reduce(mut acc: [f32; DOT_LANES]) -> f32 {
    let mut width = DOT_LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0]
}

/// [`dots`] with AVX2 intrinsics for up to four images: the same partial sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2(w: &[f32], images: &[Vec<f32>], out: &mut [f32]) {
    use std::arch::x86_64::*;
    const V: usize = DOT_LANES / 8;
    let d = w.len();
    let full = d / DOT_LANES * DOT_LANES;
    let mut acc = [[_mm256_setzero_ps(); V]; 4];
    let m = images.len();
    for j in (0..full).step_by(DOT_LANES) {
        for v in 0..V {
            let wv = _mm256_loadu_ps(w.as_ptr().add(j + 8 * v));
            for (a, img) in acc.iter_mut().zip(images).take(m) {
                a[v] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(img.as_ptr().add(j + 8 * v)), a[v]);
            }
        }
    }
    for ((o, a), img) in out.iter_mut().zip(&acc).zip(images) {
        let mut lanes = [0f32; DOT_LANES];
        for (v, av) in a.iter().enumerate() {
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * v), *av);
        }
        for (l, (x, y)) in w[full..].iter().zip(&img[full..d]).enumerate() {
            lanes[l] = x.mul_add(*y, lanes[l]);
        }
        *o = reduce(lanes);
    }
}

/// Fully connected layer: `x` `[d][b]` (a flattened activation, batch innermost), `weight`
/// `[out][d]` -> `[out][b]` with the bias added. Each value is one dot product of a weight row
/// and one image (see [`dots`]), so an embedding does not depend on the batch it was computed in.
pub fn dense_forward(weight: &[f32], bias: &[f32], x: &[f32], b: usize, out: usize) -> Vec<f32> {
    let d = x.len() / b.max(1);
    assert!(weight.len() >= out * d && bias.len() >= out);
    // One contiguous row per image.
    let images: Vec<Vec<f32>> = (0..b).map(|bi| x.iter().skip(bi).step_by(b).copied().collect()).collect();
    let mut y = vec![0f32; out * b];
    y.par_chunks_mut(b).enumerate().for_each(|(o, row)| {
        let w = &weight[o * d..(o + 1) * d];
        for (i, chunk) in images.chunks(4).enumerate() {
            dots(w, chunk, &mut row[i * 4..(i * 4 + chunk.len())]);
        }
        row.iter_mut().for_each(|v| *v += bias[o]);
    });
    y
}
