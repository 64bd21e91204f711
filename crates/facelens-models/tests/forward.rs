//! The frozen-network forward: each convolution kernel equals its definition summed in the
//! documented order (exactly, not within a tolerance), and the fused forward pass equals the
//! op-by-op tape bit for bit, whatever the batch size and the number of threads.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use facelens_models::reverse::{BufShape, ConvGeom, Net, Op};

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `y[b][co][oy][ox]` of a convolution on NCHW `x`, each value summed over (input channel of the
/// group, ky, kx) in ascending order from zero, taps outside the image skipped, then the bias.
/// `fma`: one fused multiply-add per tap (dense kernels) or a product and a sum (grouped).
fn reference(g: &ConvGeom, w: &[f32], bias: &[f32], x: &[f32], b: usize, fma: bool) -> Vec<f32> {
    let (oh, ow, cin_g, cout_g) = (g.out_h(), g.out_w(), g.cin / g.groups, g.cout / g.groups);
    let mut y = Vec::with_capacity(b * g.cout * oh * ow);
    for bi in 0..b {
        for co in 0..g.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0f32;
                    for cil in 0..cin_g {
                        let ci = co / cout_g * cin_g + cil;
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let (iy, ix) = ((oy * g.stride + ky) as isize - g.pad as isize, (ox * g.stride + kx) as isize - g.pad as isize);
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x[((bi * g.cin + ci) * g.h + iy as usize) * g.w + ix as usize];
                                let wv = w[((co * cin_g + cil) * g.k + ky) * g.k + kx];
                                acc = if fma { wv.mul_add(xv, acc) } else { acc + wv * xv };
                            }
                        }
                    }
                    y.push(acc + bias[co]);
                }
            }
        }
    }
    y
}

fn one_conv(g: ConvGeom, seed: u64) -> (Net, Vec<f32>, Vec<f32>) {
    let mut net = Net::new(BufShape { c: g.cin, h: g.h, w: g.w });
    let weight = values(g.cout * g.cin / g.groups * g.k * g.k, seed);
    let bias = values(g.cout, seed + 1);
    net.push(Op::Conv { input: 0, geom: g, weight: weight.clone(), bias: bias.clone() });
    (net, weight, bias)
}

#[test]
fn convolution_kernels_equal_their_definition() {
    let mut cases = Vec::new();
    // Dense 1x1 (pointwise, with column tails of 16 / 8 / 1 and row blocks of 6), dense k x k (im2col).
    for &(cin, cout, side) in &[(5, 7, 9), (16, 13, 7), (32, 64, 14), (3, 6, 11)] {
        cases.push(ConvGeom { cin, cout, k: 1, stride: 1, pad: 0, groups: 1, h: side, w: side });
        cases.push(ConvGeom { cin, cout, k: 3, stride: 2, pad: 1, groups: 1, h: side, w: side + 2 });
    }
    // Depthwise and grouped, every stride / padding combination face backbones use and odd ones.
    for &(k, stride, pad) in &[(3, 1, 1), (3, 2, 1), (3, 1, 0), (5, 2, 2), (7, 1, 0), (3, 3, 1), (2, 2, 0)] {
        for &(c, groups) in &[(4, 4), (6, 3), (4, 2)] {
            for &(h, w) in &[(7, 7), (9, 12), (1, 5), (16, 3)] {
                if h + 2 * pad >= k && w + 2 * pad >= k {
                    cases.push(ConvGeom { cin: c, cout: c, k, stride, pad, groups, h, w });
                }
            }
        }
    }
    for (i, g) in cases.into_iter().enumerate() {
        let (net, weight, bias) = one_conv(g, 10 + i as u64);
        for b in [1, 2, 3] {
            let x = values(b * g.cin * g.h * g.w, 100 + i as u64);
            let want = reference(&g, &weight, &bias, &x, b, g.groups == 1);
            let got = net.forward(&x, b);
            assert_eq!(got.len(), want.len());
            let bad = got.iter().zip(&want).position(|(a, w)| a != w);
            assert!(bad.is_none(), "{g:?} batch {b}: value {} is {} where the definition gives {}", bad.unwrap(), got[bad.unwrap()], want[bad.unwrap()]);
        }
    }
}

fn tiny_nets() -> Vec<(&'static str, Net)> {
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    facelens_models::mobilefacenet::MobileFaceNet::new(&facelens_models::mobilefacenet::Config::tiny(), vb.clone()).unwrap();
    facelens_models::sface::SFace::new(&facelens_models::sface::Config::tiny(), vb.pp("sface")).unwrap();
    facelens_models::weights::fill_deterministic(&map, 7).unwrap();
    // Built again after the fill: BatchNorm scale and shift are computed at construction.
    let mbf = facelens_models::mobilefacenet::MobileFaceNet::new(&facelens_models::mobilefacenet::Config::tiny(), vb.clone()).unwrap();
    let sface = facelens_models::sface::SFace::new(&facelens_models::sface::Config::tiny(), vb.pp("sface")).unwrap();
    vec![("mobilefacenet", Net::from_mobilefacenet(&mbf).unwrap()), ("sface", Net::from_sface(&sface).unwrap())]
}

#[test]
fn fused_forward_equals_the_op_by_op_tape_at_any_batch_and_thread_count() {
    for (name, net) in tiny_nets() {
        let n = net.input.numel();
        let b = 5;
        let x = values(b * n, 3);
        let tapes: Vec<f32> = x.chunks(n).flat_map(|img| net.tape(img).output().to_vec()).collect();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for batch in [1, 2, 5] {
                let got: Vec<f32> = pool.install(|| x.chunks(batch * n).flat_map(|c| net.forward(c, c.len() / n)).collect());
                assert_eq!(got, tapes, "{name}: fused forward at batch {batch} on {threads} threads differs from the tape");
            }
        }
        let (out, steps) = net.forward_profile(&x, b);
        assert_eq!(out, tapes, "{name}: the profiled forward differs");
        // Steps cover every op once, in order, and name what they ran.
        let per_pass = steps.iter().position(|s| s.ops.end == net.ops.len()).expect("a step ends the pass") + 1;
        let covered: Vec<usize> = steps[..per_pass].iter().flat_map(|s| s.ops.clone()).collect();
        assert_eq!(covered, (0..net.ops.len()).collect::<Vec<_>>(), "{name}");
        assert!(steps.iter().any(|s| s.label.contains("+prelu")), "{name}: nothing fused: {:?}", steps.iter().map(|s| &s.label).collect::<Vec<_>>());
    }
}
