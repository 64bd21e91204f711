//! Forward of grouped (depthwise) convolutions by direct summation, vectorised along the row.
//!
//! Each input plane is first copied into a zero-padded (rows and columns), *phase-split*
//! form: for stride `s`, padded column `i * s + p` goes to phase row `p` at position `i`. Tap
//! `kx` of output column `ox` then reads phase `kx % s` at `ox + kx / s`, so a tap over an
//! output row is one contiguous run of `ow * B` values (`B` images innermost), at an offset
//! that is the same for every row. With stride 1 consecutive rows are consecutive too and
//! the whole plane is one run (two padding columns per row are computed and dropped). Runs
//! are cut in blocks of 32 outputs that accumulate every tap in registers (four independent
//! vector sums) and are stored once; no block needs a shorter tail, the buffers have slack.
//!
//! Sums follow the graph's order for every output value: input channel, then `ky`, then
//! `kx`, starting from zero, one rounding per product and per sum (no fused multiply-add);
//! taps on the padding add a zero product, which leaves the sum unchanged.

use rayon::prelude::*;

use super::epilogue::Epilogue;
use super::kernels::ConvGeom;

/// Outputs accumulated together in registers (four AVX vectors).
const BLOCK: usize = 32;

/// Padded, phase-split copies of one group's input planes, `[cin_g][h + 2 pad][s][row]` with
/// `row = cols * b`, followed by slack for the last blocks' reads; and the output scratch.
#[derive(Default)]
struct Scratch {
    data: Vec<f32>,
    out: Vec<f32>,
}

/// The layout of [`Scratch::data`] for a geometry and batch.
struct Layout {
    /// Values per phase row.
    row: usize,
    /// Padded rows per plane.
    rows: usize,
}

impl Layout {
    fn new(g: &ConvGeom, b: usize) -> Self {
        // Enough phase columns for the last output's last tap.
        let cols = g.out_w() + (g.k - 1) / g.stride;
        Self { row: cols * b, rows: g.h + 2 * g.pad }
    }

    fn plane(&self, g: &ConvGeom) -> usize {
        self.rows * g.stride * self.row
    }

    /// Start of tap `(cil, ky, kx)` relative to its output row's start.
    fn tap(&self, g: &ConvGeom, b: usize, (cil, ky, kx): (usize, usize, usize)) -> usize {
        let s = g.stride;
        cil * self.plane(g) + (ky * s + kx % s) * self.row + (kx / s) * b
    }
}

impl Scratch {
    #[inline(always)]
    fn fill(&mut self, g: &ConvGeom, lay: &Layout, planes: &[f32], b: usize) {
        let (s, row) = (g.stride, lay.row);
        let cin_g = planes.len() / (g.h * g.w * b);
        self.data.clear();
        self.data.resize(cin_g * lay.plane(g) + s * row + g.k * b + 2 * BLOCK, 0.0);
        for (cil, plane) in planes.chunks_exact(g.h * g.w * b).enumerate() {
            let base = cil * lay.plane(g) + g.pad * s * row;
            for (iy, src) in plane.chunks_exact(g.w * b).enumerate() {
                let dst = &mut self.data[base + iy * s * row..base + (iy + 1) * s * row];
                if s == 1 {
                    let n = (g.w * b).min(row - g.pad * b);
                    dst[g.pad * b..g.pad * b + n].copy_from_slice(&src[..n]);
                    continue;
                }
                let mut from = 0;
                if s == 2 && b == 1 {
                    from = deinterleave(dst, src, g.pad, row);
                }
                for p in 0..s {
                    // Input columns `ix >= from` whose padded column `ix + pad` is in phase `p`.
                    let first = from + (p + 2 * s - (from + g.pad) % s) % s;
                    let phase = &mut dst[p * row..(p + 1) * row];
                    let i0 = (first + g.pad) / s;
                    let count = g.w.saturating_sub(first).div_ceil(s).min((row / b).saturating_sub(i0));
                    let phase = &mut phase[i0 * b..(i0 + count) * b];
                    for (d, ix) in phase.chunks_exact_mut(b).zip((first..g.w).step_by(s)) {
                        d.copy_from_slice(&src[ix * b..(ix + 1) * b]);
                    }
                }
            }
        }
    }
}

/// Stride 2, one image: splits a row into its even and odd padded columns two input columns
/// at a time (a loop the compiler turns into shuffles). Returns the first column left for the
/// general path.
#[inline(always)]
fn deinterleave(dst: &mut [f32], src: &[f32], pad: usize, row: usize) -> usize {
    let (even, odd) = dst.split_at_mut(row);
    let q = pad / 2;
    // Pairs (2j, 2j + 1) whose destinations (at most j + q + 1) lie inside the phase rows.
    let pairs = (src.len() / 2).min(row.saturating_sub(q + 1));
    let (src, even, odd) = (&src[..2 * pairs], &mut even[q..q + pairs + 1], &mut odd[q..q + pairs]);
    if pad.is_multiple_of(2) {
        for (j, p) in src.chunks_exact(2).enumerate() {
            even[j] = p[0];
            odd[j] = p[1];
        }
    } else {
        for (j, p) in src.chunks_exact(2).enumerate() {
            odd[j] = p[0];
            even[j + 1] = p[1];
        }
    }
    2 * pairs
}

/// Forward of a grouped convolution: `x` `[cin][h*w][b]` -> `y` `[cout][oh*ow][b]`, each output
/// channel finished by `epi`. Parallel over output channels.
pub fn grouped_forward(g: &ConvGeom, weight: &[f32], x: &[f32], b: usize, y: &mut [f32], epi: &Epilogue) {
    let (op, hw) = (g.out_h() * g.out_w(), g.h * g.w);
    let (cin_g, cout_g) = (g.cin / g.groups, g.cout / g.groups);
    let kk = g.k * g.k;
    let lay = Layout::new(g, b);
    let taps: Vec<usize> = (0..cin_g)
        .flat_map(|cil| (0..g.k).flat_map(move |ky| (0..g.k).map(move |kx| (cil, ky, kx))))
        .map(|t| lay.tap(g, b, t))
        .collect();
    y.par_chunks_mut(op * b).enumerate().for_each_init(
        || (Scratch::default(), usize::MAX),
        |(scratch, filled), (co, dst)| {
            let grp = co / cout_g;
            super::simd(
                #[inline(always)]
                || {
                    // Output channels of one group share their input planes.
                    if *filled != grp {
                        scratch.fill(g, &lay, &x[grp * cin_g * hw * b..(grp + 1) * cin_g * hw * b], b);
                        *filled = grp;
                    }
                    channel(g, &lay, &weight[co * cin_g * kk..(co + 1) * cin_g * kk], &taps, scratch, b, dst);
                },
            );
            epi.apply(co, op * b, 0, dst);
        },
    );
}

/// One output channel plane `dst` `[oh][ow*b]`.
#[inline(always)]
fn channel(g: &ConvGeom, lay: &Layout, wk: &[f32], taps: &[usize], scratch: &mut Scratch, b: usize, dst: &mut [f32]) {
    let (oh, out_row) = (g.out_h(), g.out_w() * b);
    let Scratch { data, out } = scratch;
    if g.stride == 1 {
        // One run over the plane, rows `lay.row` apart; keep the first `out_row` of each.
        let n = oh * lay.row;
        run(data, 0, wk, taps, n, out);
        for (d, o) in dst.chunks_exact_mut(out_row).zip(out.chunks(lay.row)) {
            d.copy_from_slice(&o[..out_row]);
        }
    } else {
        let step = g.stride * g.stride * lay.row;
        for (oy, d) in dst.chunks_exact_mut(out_row).enumerate() {
            run(data, oy * step, wk, taps, out_row, out);
            d.copy_from_slice(&out[..out_row]);
        }
    }
}

/// `out[j] = sum_t wk[t] * data[base + taps[t] + j]` for `j < n` (rounded up to [`BLOCK`]).
#[inline(always)]
fn run(data: &[f32], base: usize, wk: &[f32], taps: &[usize], n: usize, out: &mut Vec<f32>) {
    let blocks = n.div_ceil(BLOCK);
    out.resize(blocks * BLOCK, 0.0);
    let reach = base + taps.iter().max().copied().unwrap_or(0) + blocks * BLOCK;
    assert!(reach <= data.len() && wk.len() >= taps.len(), "depthwise run reads past its input");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: every read is below `reach`, checked above; the CPU has AVX2.
        unsafe { run_avx2(data, base, wk, taps, out) };
        return;
    }
    for (blk, o) in out.chunks_exact_mut(BLOCK).enumerate() {
        let mut acc = [0f32; BLOCK];
        let j = base + blk * BLOCK;
        for (&w, &t) in wk.iter().zip(taps) {
            let src = &data[j + t..j + t + BLOCK];
            for l in 0..BLOCK {
                acc[l] += w * src[l];
            }
        }
        o.copy_from_slice(&acc);
    }
}

/// [`run`] with AVX2 intrinsics: four vector sums per block, a product then a sum per tap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(data: &[f32], base: usize, wk: &[f32], taps: &[usize], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let d = data.as_ptr().add(base);
    for (blk, o) in out.chunks_exact_mut(BLOCK).enumerate() {
        let mut acc = [_mm256_setzero_ps(); BLOCK / 8];
        let j = blk * BLOCK;
        for (&w, &t) in wk.iter().zip(taps) {
            let wv = _mm256_set1_ps(w);
            let src = d.add(j + t);
            for (v, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, _mm256_loadu_ps(src.add(8 * v))));
            }
        }
        for (v, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(o.as_mut_ptr().add(8 * v), *a);
        }
    }
}
