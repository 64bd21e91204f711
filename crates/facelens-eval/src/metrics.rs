//! Curve summaries shared by the explanation benchmarks.

use crate::error::{EvalError, Result};

/// Area under the piecewise-linear curve through `(xs[i], ys[i])` (trapezoid rule).
///
/// Used for Deletion/Insertion curves (docs/design.md §8), where `xs` is the perturbed fraction in percent
/// and `ys` the verification accuracy; the units of the area are those of `x * y`, so the caller
/// chooses the scale it reports. `xs` must be non-decreasing: a curve that goes back on itself is a
/// bug upstream, not something to integrate.
pub fn trapezoid_auc(xs: &[f64], ys: &[f64]) -> Result<f64> {
    if xs.len() != ys.len() {
        return Err(EvalError::InvalidCurve(format!(
            "{} x values but {} y values",
            xs.len(),
            ys.len()
        )));
    }
    if xs.len() < 2 {
        return Err(EvalError::InvalidCurve(format!(
            "need at least 2 points, got {}",
            xs.len()
        )));
    }
    if let Some(i) = xs.iter().chain(ys).position(|v| !v.is_finite()) {
        return Err(EvalError::InvalidCurve(format!("value #{i} is not finite")));
    }
    if let Some(i) = xs.windows(2).position(|w| w[1] < w[0]) {
        return Err(EvalError::InvalidCurve(format!(
            "x values must not decrease, but x[{}] = {} > x[{}] = {}",
            i,
            xs[i],
            i + 1,
            xs[i + 1]
        )));
    }
    Ok(xs
        .windows(2)
        .zip(ys.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0)
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_areas() {
        // Constant 1 over [0, 100].
        assert_eq!(
            trapezoid_auc(&[0.0, 50.0, 100.0], &[1.0, 1.0, 1.0]),
            Ok(100.0)
        );
        // Line from 1 to 0 over [0, 1]: a triangle of area 1/2.
        assert_eq!(trapezoid_auc(&[0.0, 1.0], &[1.0, 0.0]), Ok(0.5));
        // Uneven steps: [0,1] at (0 -> 2) = 1, [1,3] at (2 -> 2) = 4, [3,4] at (2 -> 0) = 1.
        assert_eq!(
            trapezoid_auc(&[0.0, 1.0, 3.0, 4.0], &[0.0, 2.0, 2.0, 0.0]),
            Ok(6.0)
        );
        // Deletion-style: p = 0, 5, ..., 100 with accuracy falling linearly from 1 to 0 -> 50.
        let xs: Vec<f64> = (0..=20).map(|i| f64::from(i) * 5.0).collect();
        let ys: Vec<f64> = xs.iter().map(|p| 1.0 - p / 100.0).collect();
        assert!((trapezoid_auc(&xs, &ys).expect("auc") - 50.0).abs() < 1e-9);
        // A vertical step (repeated x) adds no area.
        assert_eq!(
            trapezoid_auc(&[0.0, 1.0, 1.0, 2.0], &[1.0, 1.0, 0.0, 0.0]),
            Ok(1.0)
        );
    }

    #[test]
    fn bad_curves() {
        assert!(trapezoid_auc(&[0.0], &[1.0]).is_err());
        assert!(trapezoid_auc(&[0.0, 1.0], &[1.0]).is_err());
        assert!(trapezoid_auc(&[1.0, 0.0], &[1.0, 1.0]).is_err());
        assert!(trapezoid_auc(&[0.0, f64::NAN], &[1.0, 1.0]).is_err());
    }
}
