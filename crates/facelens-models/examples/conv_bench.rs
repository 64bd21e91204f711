//! Time of single convolution layers through the frozen-network engine's forward, in
//! multiply-adds per second: `cargo run --release -p facelens-models --example conv_bench`.
//! Shapes are MobileFaceNet's (1x1 and depthwise 3x3 at 56, 28, 14 and 7 px).
use facelens_models::reverse::{BufShape, ConvGeom, Net, Op};

fn main() {
    facelens_core::alloc::keep_freed_memory();
    let batch: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    for &(cin, cout, k, stride, groups, side) in &[
        (128, 128, 1, 1, 1, 56),
        (128, 128, 1, 1, 1, 28),
        (256, 256, 1, 1, 1, 14),
        (256, 256, 1, 1, 1, 7),
        (128, 128, 3, 1, 128, 56),
        (128, 128, 3, 1, 64, 56),
        (128, 128, 3, 2, 128, 56),
        (128, 128, 3, 1, 128, 28),
        (256, 256, 3, 1, 256, 14),
        (256, 256, 3, 1, 256, 7),
    ] {
        let geom = ConvGeom { cin, cout, k, stride, pad: k / 2, groups, h: side, w: side };
        let mut net = Net::new(BufShape { c: cin, h: side, w: side });
        let n = cout * cin / groups * k * k;
        let weight = (0..n).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
        net.push(Op::Conv { input: 0, geom, weight, bias: vec![0.1; cout] });
        let x: Vec<f32> = (0..batch * cin * side * side).map(|i| ((i * 31) % 97) as f32 / 97.0).collect();
        net.forward(&x, batch);
        let reps = 50;
        // The step's own time, without the batch layout changes around the pass.
        let s: f64 = (0..reps).map(|_| net.forward_profile(&x, batch).1.iter().map(|t| t.seconds).sum::<f64>()).sum::<f64>() / reps as f64;
        let macs = (batch * cout * geom.out_h() * geom.out_w() * cin / groups * k * k) as f64;
        println!("{cin}->{cout} k{k}/{stride} g{groups} @{side} b{batch}: {:.3} ms, {:.2} GMAC/s", s * 1e3, macs / s / 1e9);
    }
}
