//! Choosing which pairs a benchmark scores.
//!
//! Deletion/Insertion only scores pairs with a correct decision to explain (accepted genuine,
//! rejected impostor), so a balanced subset is "the first `quota` eligible pairs of each label in
//! some order". List order gives `select = "first"`; a seeded shuffle gives `select = "random"`,
//! which is a uniform draw without replacement from the eligible pairs: a uniformly random
//! permutation restricted to the eligible pairs is a uniformly random order of them, and its first
//! `quota` are a uniform subset. Pairs are classified lazily in that order, so a small subset of a
//! large list costs only the pairs scanned until both quotas fill.
//!
//! The shuffle uses SplitMix64 ([`facelens_saliency::perturb::Rng`]) with a fixed seed, so the
//! subset is the same on every machine and in every shard.

use facelens_eval::deletion::MapKind;
use facelens_saliency::perturb::Rng;

/// `0..n` in a random order fixed by `seed` (Fisher-Yates).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    order
}

/// Scans `order` (indices of candidates) and keeps the first `quota` genuine pairs that classify
/// as [`MapKind::Similarity`] and the first `quota` impostor pairs that classify as
/// [`MapKind::Dissimilarity`]. `genuine(i)` is candidate `i`'s label; `classify(i)` its kind at
/// the clean threshold, or `None` when it is misclassified or cannot be loaded. A candidate whose
/// label's quota is already full is never classified. Returns the chosen indices ascending (list
/// order), so records and tables keep the order of the pair list whatever the scan order.
///
/// `progress(scanned, total)` is called before each classification.
pub fn balanced<E>(
    order: impl IntoIterator<Item = usize>,
    total: usize,
    quota: usize,
    genuine: impl Fn(usize) -> bool,
    mut classify: impl FnMut(usize) -> Result<Option<MapKind>, E>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<usize>, E> {
    let (mut n_genuine, mut n_impostor) = (0usize, 0usize);
    let mut chosen = Vec::new();
    for (scanned, i) in order.into_iter().enumerate() {
        if n_genuine >= quota && n_impostor >= quota {
            break;
        }
        let is_genuine = genuine(i);
        let wanted = if is_genuine {
            n_genuine < quota
        } else {
            n_impostor < quota
        };
        if !wanted {
            continue;
        }
        progress(scanned, total);
        match (is_genuine, classify(i)?) {
            (true, Some(MapKind::Similarity)) => n_genuine += 1,
            (false, Some(MapKind::Dissimilarity)) => n_impostor += 1,
            _ => continue,
        }
        chosen.push(i);
    }
    chosen.sort_unstable();
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 200 candidates: even = genuine; every third is misclassified; 17 and 40 "have no face".
    // `%` rather than `is_multiple_of`: the workspace's rust-version (1.85) predates it.
    #[allow(clippy::manual_is_multiple_of)]
    fn label(i: usize) -> bool {
        i % 2 == 0
    }

    #[allow(clippy::manual_is_multiple_of)]
    fn kind(i: usize) -> Option<MapKind> {
        if i % 3 == 0 || i == 17 || i == 40 {
            return None;
        }
        MapKind::for_pair(label(i), if label(i) { 0.9 } else { 0.1 }, 0.5)
    }

    fn random(quota: usize, seed: u64) -> Vec<usize> {
        balanced(
            shuffled(200, seed),
            200,
            quota,
            label,
            |i| Ok::<_, ()>(kind(i)),
            |_, _| {},
        )
        .expect("selection")
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let a = shuffled(100, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, shuffled(100, 0));
        assert_ne!(a, shuffled(100, 1));
        assert_ne!(a, sorted, "seed 0 must not be the identity");
        assert!(shuffled(0, 3).is_empty());
        assert_eq!(shuffled(1, 3), vec![0]);
    }

    #[test]
    fn random_selection_is_deterministic_balanced_and_eligible() {
        let a = random(20, 0);
        assert_eq!(a, random(20, 0), "same seed, same pairs");
        assert_eq!(a.iter().filter(|&&i| label(i)).count(), 20);
        assert_eq!(a.iter().filter(|&&i| !label(i)).count(), 20);
        assert!(a.iter().all(|&i| kind(i).is_some()), "only eligible pairs");
        assert!(a.windows(2).all(|w| w[0] < w[1]), "list order, no repeats");
        let b = random(20, 1);
        assert_ne!(a, b, "another seed draws another subset");
        // Not the first eligible pairs in list order.
        let first = balanced(0..200, 200, 20, label, |i| Ok::<_, ()>(kind(i)), |_, _| {}).expect("first");
        assert_ne!(a, first);
    }

    #[test]
    fn quotas_larger_than_the_eligible_pairs_take_them_all() {
        let all = random(1000, 5);
        let eligible: Vec<usize> = (0..200).filter(|&i| kind(i).is_some()).collect();
        assert_eq!(all, eligible);
    }

    #[test]
    fn full_quotas_stop_classifying() {
        let mut classified = 0;
        let chosen = balanced(
            0..200,
            200,
            2,
            label,
            |i| {
                classified += 1;
                Ok::<_, ()>(kind(i))
            },
            |_, _| {},
        )
        .expect("first");
        assert_eq!(chosen, vec![1, 2, 4, 5]);
        assert_eq!(
            classified, 6,
            "0 to 5 (0 and 3 misclassified), then both quotas are full"
        );
    }
}
