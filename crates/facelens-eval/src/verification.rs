//! Face verification metrics over scored pairs (higher score = more similar; decision
//! `score >= threshold` means "same person").
//!
//! Thresholds are not taken from a fixed grid (insightface steps through `arange(0, 4, 0.01)` on
//! distances) but from the data: the lowest score (accept everything), the midpoints between
//! consecutive distinct scores, and a value just above the highest score (reject everything).
//! Those candidates realise every decision the data allows, so the optimum is exact and does not
//! depend on the score range of the model.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// FAR targets reported in [`VerificationReport::tar_at_far`].
pub const REPORTED_FARS: [f64; 2] = [1e-3, 1e-2];

/// One point of the ROC curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// False accept rate: impostor pairs with `score >= threshold`, over all impostor pairs.
    pub far: f64,
    /// True accept rate: genuine pairs with `score >= threshold`, over all genuine pairs.
    pub tar: f64,
    pub threshold: f64,
}

/// Equal error rate: where FAR and FRR (= 1 - TAR) cross, linearly interpolated between the
/// two neighbouring thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eer {
    pub eer: f64,
    pub threshold: f64,
}

/// TAR at a FAR target, with the threshold and the FAR actually reached (`far <= target`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TarAtFar {
    pub tar: f64,
    pub far: f64,
    pub threshold: f64,
}

/// k-fold accuracy: each fold is scored at the threshold that is best on all other folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KFoldAccuracy {
    pub mean: f64,
    /// Population standard deviation over folds (`np.std`, as insightface reports it).
    pub std: f64,
    /// Fold ids in ascending order, matching the two vectors below.
    pub folds: Vec<usize>,
    pub fold_accuracies: Vec<f64>,
    pub fold_thresholds: Vec<f64>,
}

/// Everything the verification protocol reports, ready for JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationReport {
    pub accuracy_mean: f64,
    pub accuracy_std: f64,
    pub fold_accuracies: Vec<f64>,
    pub fold_thresholds: Vec<f64>,
    pub eer: f64,
    pub eer_threshold: f64,
    /// Threshold maximising accuracy over all pairs (the one to use on new pairs).
    pub best_threshold: f64,
    /// Accuracy of `best_threshold` over all pairs (optimistic: chosen on the same pairs).
    pub best_accuracy: f64,
    /// TAR keyed by FAR target as written by `format!("{}", far)`: "0.001", "0.01".
    pub tar_at_far: BTreeMap<String, f64>,
    /// Threshold used for each `tar_at_far` entry (same keys).
    pub far_thresholds: BTreeMap<String, f64>,
    pub pairs: usize,
    pub genuine_pairs: usize,
    pub impostor_pairs: usize,
    /// ROC points ordered by increasing FAR (decreasing threshold).
    pub roc: Vec<RocPoint>,
}

/// Runs the whole protocol: k-fold accuracy, best threshold, EER, TAR@FAR for [`REPORTED_FARS`], ROC.
pub fn evaluate(scores: &[f32], genuine: &[bool], folds: &[usize]) -> Result<VerificationReport> {
    check_folds(scores, folds)?;
    let sweep = Sweep::new(scores, genuine, |_| true)?;
    let kfold = kfold_accuracy(scores, genuine, folds)?;
    let (best_threshold, best_accuracy) = sweep.best();
    let eer = sweep.eer();
    let mut tar_map = BTreeMap::new();
    let mut thr_map = BTreeMap::new();
    for far in REPORTED_FARS {
        let t = sweep.tar_at_far(far)?;
        tar_map.insert(format!("{far}"), t.tar);
        thr_map.insert(format!("{far}"), t.threshold);
    }
    Ok(VerificationReport {
        accuracy_mean: kfold.mean,
        accuracy_std: kfold.std,
        fold_accuracies: kfold.fold_accuracies,
        fold_thresholds: kfold.fold_thresholds,
        eer: eer.eer,
        eer_threshold: eer.threshold,
        best_threshold,
        best_accuracy,
        tar_at_far: tar_map,
        far_thresholds: thr_map,
        pairs: scores.len(),
        genuine_pairs: sweep.n_genuine,
        impostor_pairs: sweep.n_impostor,
        roc: sweep.roc(),
    })
}

/// k-fold accuracy (LFW View 2 uses the 10 folds of `pairs.txt`): for each fold, the threshold that
/// maximises accuracy on the other folds is applied to the held-out fold.
pub fn kfold_accuracy(scores: &[f32], genuine: &[bool], folds: &[usize]) -> Result<KFoldAccuracy> {
    check_folds(scores, folds)?;
    check_scores(scores, genuine)?;
    let ids: Vec<usize> = folds
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if ids.len() < 2 {
        return Err(EvalError::TooFewFolds(ids.len()));
    }
    let mut fold_accuracies = Vec::with_capacity(ids.len());
    let mut fold_thresholds = Vec::with_capacity(ids.len());
    for &fold in &ids {
        // The training folds may lack a class (tiny inputs); the best threshold is still defined.
        let train = Sweep::new_unchecked(scores, genuine, |i| folds[i] != fold);
        let (threshold, _) = train.best();
        let test: Vec<usize> = (0..scores.len()).filter(|&i| folds[i] == fold).collect();
        let correct = test
            .iter()
            .filter(|&&i| (f64::from(scores[i]) >= threshold) == genuine[i])
            .count();
        fold_accuracies.push(correct as f64 / test.len() as f64);
        fold_thresholds.push(threshold);
    }
    let k = fold_accuracies.len() as f64;
    let mean = fold_accuracies.iter().sum::<f64>() / k;
    let std = (fold_accuracies
        .iter()
        .map(|a| (a - mean).powi(2))
        .sum::<f64>()
        / k)
        .sqrt();
    Ok(KFoldAccuracy {
        mean,
        std,
        folds: ids,
        fold_accuracies,
        fold_thresholds,
    })
}

/// The threshold maximising accuracy over all pairs, and that accuracy. Ties go to the smallest
/// threshold.
pub fn best_threshold(scores: &[f32], genuine: &[bool]) -> Result<(f64, f64)> {
    check_scores(scores, genuine)?;
    Ok(Sweep::new_unchecked(scores, genuine, |_| true).best())
}

/// Fraction of pairs whose decision `score >= threshold` equals the label.
pub fn accuracy_at(scores: &[f32], genuine: &[bool], threshold: f64) -> Result<f64> {
    check_scores(scores, genuine)?;
    let correct = scores
        .iter()
        .zip(genuine)
        .filter(|(&s, &g)| (f64::from(s) >= threshold) == g)
        .count();
    Ok(correct as f64 / scores.len() as f64)
}

/// The candidate thresholds (ascending): lowest score, midpoints of consecutive distinct scores,
/// and a value just above the highest score.
pub fn candidate_thresholds(scores: &[f32]) -> Result<Vec<f64>> {
    let labels = vec![false; scores.len()];
    check_scores(scores, &labels)?;
    Ok(Sweep::new_unchecked(scores, &labels, |_| true).thresholds)
}

/// Equal error rate over all pairs.
pub fn eer(scores: &[f32], genuine: &[bool]) -> Result<Eer> {
    Ok(Sweep::new(scores, genuine, |_| true)?.eer())
}

/// TAR at the smallest candidate threshold whose FAR is at most `target_far`.
pub fn tar_at_far(scores: &[f32], genuine: &[bool], target_far: f64) -> Result<TarAtFar> {
    Sweep::new(scores, genuine, |_| true)?.tar_at_far(target_far)
}

/// ROC points ordered by increasing FAR (decreasing threshold), one per candidate threshold.
pub fn roc_curve(scores: &[f32], genuine: &[bool]) -> Result<Vec<RocPoint>> {
    Ok(Sweep::new(scores, genuine, |_| true)?.roc())
}

fn check_scores(scores: &[f32], genuine: &[bool]) -> Result<()> {
    if scores.is_empty() {
        return Err(EvalError::Empty);
    }
    if genuine.len() != scores.len() {
        return Err(EvalError::LengthMismatch {
            what: "genuine",
            expected: scores.len(),
            got: genuine.len(),
        });
    }
    if let Some((index, &value)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(EvalError::NonFiniteScore { index, value });
    }
    Ok(())
}

fn check_folds(scores: &[f32], folds: &[usize]) -> Result<()> {
    if folds.len() != scores.len() {
        return Err(EvalError::LengthMismatch {
            what: "folds",
            expected: scores.len(),
            got: folds.len(),
        });
    }
    Ok(())
}

/// Accept counts at every candidate threshold of a subset of pairs.
///
/// Candidate `k` accepts exactly the pairs scoring at least the `k`-th distinct score (candidate
/// 0 accepts all, the last accepts none), so one pass over the sorted scores gives every count.
struct Sweep {
    thresholds: Vec<f64>,
    /// Genuine pairs accepted at each candidate.
    tp: Vec<usize>,
    /// Impostor pairs accepted at each candidate.
    fp: Vec<usize>,
    n_genuine: usize,
    n_impostor: usize,
}

impl Sweep {
    /// Validates the inputs and requires both classes (FAR and TAR need both denominators).
    fn new(scores: &[f32], genuine: &[bool], keep: impl Fn(usize) -> bool) -> Result<Self> {
        check_scores(scores, genuine)?;
        let sweep = Self::new_unchecked(scores, genuine, keep);
        if sweep.n_genuine == 0 || sweep.n_impostor == 0 {
            return Err(EvalError::MissingClass {
                genuine: sweep.n_genuine,
                impostor: sweep.n_impostor,
            });
        }
        Ok(sweep)
    }

    /// Builds the sweep of the kept pairs; the caller has checked lengths and finiteness.
    fn new_unchecked(scores: &[f32], genuine: &[bool], keep: impl Fn(usize) -> bool) -> Self {
        let mut items: Vec<(f64, bool)> = (0..scores.len())
            .filter(|&i| keep(i))
            .map(|i| (f64::from(scores[i]), genuine[i]))
            .collect();
        items.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Distinct scores with the genuine/impostor count at each.
        let mut groups: Vec<(f64, usize, usize)> = Vec::new();
        for &(s, g) in &items {
            match groups.last_mut() {
                Some(last) if last.0 == s => {
                    if g {
                        last.1 += 1
                    } else {
                        last.2 += 1
                    }
                }
                _ => groups.push((s, usize::from(g), usize::from(!g))),
            }
        }
        let n_genuine = items.iter().filter(|p| p.1).count();
        let n_impostor = items.len() - n_genuine;
        let m = groups.len();
        let mut thresholds = Vec::with_capacity(m + 1);
        if let Some(first) = groups.first() {
            thresholds.push(first.0);
        }
        thresholds.extend(groups.windows(2).map(|w| (w[0].0 + w[1].0) / 2.0));
        if let Some(last) = groups.last() {
            thresholds.push(last.0 + 1e-6 * last.0.abs().max(1.0));
        }
        // Suffix sums: accepted at candidate k = pairs in groups k.. (none at k = m).
        let (mut tp, mut fp) = (vec![0; m + 1], vec![0; m + 1]);
        for k in (0..m).rev() {
            tp[k] = tp[k + 1] + groups[k].1;
            fp[k] = fp[k + 1] + groups[k].2;
        }
        Self {
            thresholds,
            tp,
            fp,
            n_genuine,
            n_impostor,
        }
    }

    fn correct(&self, k: usize) -> usize {
        self.tp[k] + (self.n_impostor - self.fp[k])
    }

    fn far(&self, k: usize) -> f64 {
        self.fp[k] as f64 / self.n_impostor as f64
    }

    fn tar(&self, k: usize) -> f64 {
        self.tp[k] as f64 / self.n_genuine as f64
    }

    /// Best (threshold, accuracy); the first maximum, i.e. the smallest threshold, wins ties.
    fn best(&self) -> (f64, f64) {
        let n = (self.n_genuine + self.n_impostor).max(1);
        let mut best = 0;
        for k in 1..self.thresholds.len() {
            if self.correct(k) > self.correct(best) {
                best = k;
            }
        }
        let t = self.thresholds.get(best).copied().unwrap_or(0.0);
        (t, self.correct(best) as f64 / n as f64)
    }

    /// FAR - FRR falls from 1 (accept all) to -1 (reject all); interpolate where it reaches 0.
    fn eer(&self) -> Eer {
        let diff = |k: usize| self.far(k) - (1.0 - self.tar(k));
        let last = self.thresholds.len() - 1;
        let k = (0..=last).find(|&k| diff(k) <= 0.0).unwrap_or(last);
        if k == 0 || diff(k) == 0.0 {
            return Eer {
                eer: self.far(k),
                threshold: self.thresholds[k],
            };
        }
        let (d0, d1) = (diff(k - 1), diff(k));
        let alpha = d0 / (d0 - d1);
        let lerp = |a: f64, b: f64| a + alpha * (b - a);
        Eer {
            eer: lerp(self.far(k - 1), self.far(k)),
            threshold: lerp(self.thresholds[k - 1], self.thresholds[k]),
        }
    }

    fn tar_at_far(&self, target: f64) -> Result<TarAtFar> {
        if !(0.0..=1.0).contains(&target) {
            return Err(EvalError::InvalidFar(target));
        }
        // FAR is non-increasing along the candidates and reaches 0 at the last one.
        let last = self.thresholds.len() - 1;
        let k = (0..=last).find(|&k| self.far(k) <= target).unwrap_or(last);
        Ok(TarAtFar {
            tar: self.tar(k),
            far: self.far(k),
            threshold: self.thresholds[k],
        })
    }

    fn roc(&self) -> Vec<RocPoint> {
        (0..self.thresholds.len())
            .rev()
            .map(|k| RocPoint {
                far: self.far(k),
                tar: self.tar(k),
                threshold: self.thresholds[k],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn candidates_are_extremes_and_midpoints() {
        let t = candidate_thresholds(&[0.5, 0.1, 0.5, 0.3]).expect("thresholds");
        assert_eq!(t.len(), 4);
        assert!(close(t[0], 0.1) && close(t[1], 0.2) && close(t[2], 0.4));
        assert!(t[3] > 0.5 && t[3] < 0.5001);
    }

    #[test]
    fn perfectly_separable() {
        let scores = [0.1, 0.2, 0.8, 0.9];
        let genuine = [false, false, true, true];
        let (t, acc) = best_threshold(&scores, &genuine).expect("best");
        assert!(close(acc, 1.0) && close(t, 0.5), "{t} {acc}");
        let e = eer(&scores, &genuine).expect("eer");
        assert!(close(e.eer, 0.0) && close(e.threshold, 0.5), "{e:?}");
        let tar = tar_at_far(&scores, &genuine, 0.0).expect("tar");
        assert!(close(tar.tar, 1.0) && close(tar.far, 0.0));
    }

    #[test]
    fn one_overlap_by_hand() {
        // Sorted: 0.1 I, 0.3 I, 0.4 G, 0.6 I, 0.7 G, 0.9 G. Correct per candidate:
        // 0.1:3, 0.2:4, 0.35:5, 0.5:4, 0.65:5, 0.8:4, >0.9:3. FAR = FRR = 1/3 exactly at 0.5.
        let scores = [0.1, 0.3, 0.6, 0.4, 0.7, 0.9];
        let genuine = [false, false, false, true, true, true];
        let (t, acc) = best_threshold(&scores, &genuine).expect("best");
        assert!(close(t, 0.35) && close(acc, 5.0 / 6.0), "{t} {acc}");
        let e = eer(&scores, &genuine).expect("eer");
        assert!(close(e.eer, 1.0 / 3.0) && close(e.threshold, 0.5), "{e:?}");
        assert!(close(
            accuracy_at(&scores, &genuine, 0.65).expect("acc"),
            5.0 / 6.0
        ));
    }

    #[test]
    fn eer_interpolates_between_thresholds() {
        // Impostors 0.1 0.3 0.35 0.36, genuine 0.2 0.6 0.7. FAR - FRR is 1/6 at t = 0.325 and
        // -1/12 at t = 0.355; FRR stays 1/3, so EER = 1/3 at 0.325 + 2/3 * 0.03 = 0.345.
        let scores = [0.1, 0.3, 0.35, 0.36, 0.2, 0.6, 0.7];
        let genuine = [false, false, false, false, true, true, true];
        let e = eer(&scores, &genuine).expect("eer");
        assert!((e.eer - 1.0 / 3.0).abs() < 1e-6, "{e:?}");
        assert!((e.threshold - 0.345).abs() < 1e-6, "{e:?}");
    }

    #[test]
    fn tar_at_far_by_hand() {
        // Ten impostors 0.0..0.9 and four genuine pairs.
        let mut scores: Vec<f32> = (0..10).map(|i| i as f32 / 10.0).collect();
        scores.extend([0.55, 0.85, 0.95, 0.99]);
        let genuine: Vec<bool> = (0..14).map(|i| i >= 10).collect();
        // FAR <= 0.1 allows only impostor 0.9: smallest such threshold is (0.8 + 0.85) / 2.
        let t = tar_at_far(&scores, &genuine, 0.1).expect("tar");
        assert!(
            (t.threshold - 0.825).abs() < 1e-6 && close(t.tar, 0.75) && close(t.far, 0.1),
            "{t:?}"
        );
        // FAR <= 0.05 allows none: (0.9 + 0.95) / 2 keeps two genuine pairs.
        let t = tar_at_far(&scores, &genuine, 0.05).expect("tar");
        assert!(
            (t.threshold - 0.925).abs() < 1e-6 && close(t.tar, 0.5) && close(t.far, 0.0),
            "{t:?}"
        );
        // FAR <= 0.3: threshold (0.6 + 0.7) / 2 = 0.65 accepts 0.7, 0.8, 0.9 and 3 genuine pairs.
        let t = tar_at_far(&scores, &genuine, 0.3).expect("tar");
        assert!(
            (t.threshold - 0.65).abs() < 1e-6 && close(t.tar, 0.75) && close(t.far, 0.3),
            "{t:?}"
        );
        assert!(tar_at_far(&scores, &genuine, 1.5).is_err());
    }

    #[test]
    fn folds_pick_thresholds_on_the_other_folds() {
        // Each fold is one impostor and one genuine pair; a threshold learnt on the other two folds
        // can misclassify the held-out pair, which a threshold learnt on all pairs would hide.
        let scores = [0.38, 0.5, 0.2, 0.4, 0.3, 0.6];
        let genuine = [false, true, false, true, false, true];
        let folds = [0, 0, 1, 1, 2, 2];
        let k = kfold_accuracy(&scores, &genuine, &folds).expect("kfold");
        assert_eq!(k.folds, vec![0, 1, 2]);
        // Training on folds {1,2}: scores 0.2I 0.3I 0.4G 0.6G -> best 0.35.
        assert!(close(k.fold_thresholds[0], 0.35), "{k:?}");
        assert!(close(k.fold_accuracies[0], 0.5));
        // Training on {0,2}: 0.3I 0.38I 0.5G 0.6G -> 0.44; fold 1 (0.2I, 0.4G) -> 0.4 < 0.44 wrong.
        assert!(
            close(k.fold_thresholds[1], 0.44) && close(k.fold_accuracies[1], 0.5),
            "{k:?}"
        );
        // Training on {0,1}: 0.2I 0.38I 0.4G 0.5G -> 0.39; fold 2 (0.3I, 0.6G) both right.
        assert!(
            close(k.fold_thresholds[2], 0.39) && close(k.fold_accuracies[2], 1.0),
            "{k:?}"
        );
        assert!(close(k.mean, 2.0 / 3.0));
        // Population std of (0.5, 0.5, 1.0).
        assert!(close(k.std, (1.0f64 / 18.0).sqrt()), "{}", k.std);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(eer(&[], &[]), Err(EvalError::Empty));
        assert!(matches!(
            eer(&[0.1], &[true, false]),
            Err(EvalError::LengthMismatch { .. })
        ));
        assert!(matches!(
            eer(&[0.1, f32::NAN], &[true, false]),
            Err(EvalError::NonFiniteScore { index: 1, .. })
        ));
        assert!(matches!(
            eer(&[0.1, 0.2], &[true, true]),
            Err(EvalError::MissingClass { .. })
        ));
        assert!(matches!(
            kfold_accuracy(&[0.1, 0.2], &[true, false], &[3, 3]),
            Err(EvalError::TooFewFolds(1))
        ));
        assert!(matches!(
            kfold_accuracy(&[0.1, 0.2], &[true, false], &[3]),
            Err(EvalError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn report_serialises_with_far_keys() {
        let scores = [0.1, 0.3, 0.6, 0.4, 0.7, 0.9, 0.05, 0.95];
        let genuine = [false, false, false, true, true, true, false, true];
        let folds = [0, 1, 0, 1, 0, 1, 0, 1];
        let r = evaluate(&scores, &genuine, &folds).expect("report");
        assert_eq!(r.pairs, 8);
        assert_eq!(
            r.tar_at_far.keys().collect::<Vec<_>>(),
            vec!["0.001", "0.01"]
        );
        assert_eq!(r.roc.len(), 9);
        assert!(r
            .roc
            .windows(2)
            .all(|w| w[0].far <= w[1].far && w[0].threshold > w[1].threshold));
        assert_eq!((r.roc[0].far, r.roc[0].tar), (0.0, 0.0));
        assert_eq!((r.roc[8].far, r.roc[8].tar), (1.0, 1.0));
        // No impostor above (0.6 + 0.7) / 2: TAR 3/4 at both targets.
        assert!(
            close(r.tar_at_far["0.001"], 0.75) && close(r.far_thresholds["0.01"], 0.65),
            "{r:?}"
        );
        let json = serde_json::to_value(&r).expect("json");
        assert!(json["tar_at_far"]["0.001"].is_number() && json["roc"][0]["threshold"].is_number());
        let back: VerificationReport = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, r);
    }
}
