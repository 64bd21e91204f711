//! Rank statistics shared by the explanation views: average ranks, Spearman's rank correlation
//! (the model-randomisation sanity check of Adebayo et al., NeurIPS 2018, compares maps with it)
//! and the area under the ROC curve of a score that should rank positives first (the
//! ground-truth patch benchmark's patch-vs-rest AUC), both through the same ranks so ties are
//! handled one way.

use crate::error::{EvalError, Result};

fn check_finite(what: &'static str, v: &[f32]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(EvalError::InvalidCurve(format!("{what}: value #{i} is {}, not a finite number", v[i]))),
        None => Ok(()),
    }
}

/// 1-based ranks of `v` ascending, tied values sharing the mean of their ranks.
pub fn average_ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].partial_cmp(&v[j]).unwrap_or(std::cmp::Ordering::Equal));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        // Positions i..=j hold one value: each gets the mean of ranks i+1..=j+1.
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rank correlation of `a` and `b` (Pearson's correlation of their average ranks).
/// A constant input has no ranking to agree with: its correlation is reported as 0.
pub fn spearman(a: &[f32], b: &[f32]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(EvalError::LengthMismatch { what: "second map", expected: a.len(), got: b.len() });
    }
    if a.len() < 2 {
        return Err(EvalError::InvalidCurve(format!("Spearman correlation needs at least 2 values, got {}", a.len())));
    }
    check_finite("first map", a)?;
    check_finite("second map", b)?;
    let (ra, rb) = (average_ranks(a), average_ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    if aa == 0.0 || bb == 0.0 {
        return Ok(0.0);
    }
    Ok(ab / (aa * bb).sqrt())
}

/// Probability that a random positive scores above a random negative, ties counting half
/// (the Mann-Whitney form of the ROC AUC).
pub fn auc(scores: &[f32], positive: &[bool]) -> Result<f64> {
    if scores.len() != positive.len() {
        return Err(EvalError::LengthMismatch { what: "labels", expected: scores.len(), got: positive.len() });
    }
    check_finite("scores", scores)?;
    let n1 = positive.iter().filter(|p| **p).count();
    let n0 = positive.len() - n1;
    if n1 == 0 || n0 == 0 {
        return Err(EvalError::MissingClass { genuine: n1, impostor: n0 });
    }
    let ranks = average_ranks(scores);
    let r1: f64 = ranks.iter().zip(positive).filter(|(_, p)| **p).map(|(r, _)| r).sum();
    let (n1, n0) = (n1 as f64, n0 as f64);
    Ok((r1 - n1 * (n1 + 1.0) / 2.0) / (n1 * n0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_with_ties() {
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn spearman_of_known_cases() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((spearman(&a, &[2.0, 4.0, 9.0, 16.0, 100.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        // d = (0, 0, 1, -1, 0): rho = 1 - 6 * 2 / (5 * 24) = 0.9.
        assert!((spearman(&a, &[1.0, 2.0, 4.0, 3.0, 5.0]).unwrap() - 0.9).abs() < 1e-12);
        assert_eq!(spearman(&a, &[1.0; 5]).unwrap(), 0.0);
        assert!(spearman(&a, &[1.0; 4]).is_err());
        assert!(spearman(&a, &[1.0, f32::NAN, 0.0, 0.0, 0.0]).is_err());
    }

    #[test]
    fn auc_of_known_cases() {
        let pos = [true, true, false, false];
        assert_eq!(auc(&[4.0, 3.0, 2.0, 1.0], &pos).unwrap(), 1.0);
        assert_eq!(auc(&[1.0, 2.0, 3.0, 4.0], &pos).unwrap(), 0.0);
        assert_eq!(auc(&[1.0; 4], &pos).unwrap(), 0.5);
        assert!(auc(&[1.0; 4], &[true; 4]).is_err());
    }
}
