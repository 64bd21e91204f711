//! Forward + backward time of the decoder's 3x3 convolutions: `facelens_recon::conv3x3` against
//! candle's `conv2d`, at the shapes of a width-128 decoder and batch 16. Prints a markdown table.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p facelens-recon --example conv3x3_bench`

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use facelens_recon::conv3x3::conv3x3;

fn time_fwd_bwd(x: &Var, w: &Var, ours: bool, reps: usize) -> candle_core::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let y = if ours { conv3x3(x.as_tensor(), w.as_tensor())? } else { x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1)? };
        let grads = y.sqr()?.sum_all()?.backward()?;
        assert!(grads.get(x.as_tensor()).is_some() && grads.get(w.as_tensor()).is_some());
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let batch = 16;
    println!("threads: {}, batch {batch}, best of 3\n", rayon::current_num_threads());
    println!("| layer (in -> out @ side) | candle conv2d fwd+bwd (ms) | conv3x3 fwd+bwd (ms) | speed-up |");
    println!("|---|---|---|---|");
    let (mut total_c, mut total_o) = (0.0, 0.0);
    for &(c, o, s) in &[(128usize, 64usize, 14usize), (64, 32, 28), (32, 16, 56), (16, 16, 112), (16, 3, 112)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (batch, c, s, s), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (o, c, 3, 3), &dev)?)?;
        let candle = time_fwd_bwd(&x, &w, false, 3)?;
        let ours = time_fwd_bwd(&x, &w, true, 3)?;
        total_c += candle;
        total_o += ours;
        println!("| {c} -> {o} @ {s}x{s} | {:.1} | {:.1} | {:.2}x |", 1e3 * candle, 1e3 * ours, candle / ours);
    }
    println!("| all | {:.1} | {:.1} | {:.2}x |", 1e3 * total_c, 1e3 * total_o, total_c / total_o);
    Ok(())
}
