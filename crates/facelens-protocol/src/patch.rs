//! The ground-truth patch benchmark on real pairs (the model-free part is
//! `facelens_eval::patch`): which genuine pairs are patched, with which region and donor face, all
//! fixed by a seed so every method is scored on the same patched pairs.
//!
//! A donor is an image of an identity that appears in neither face of the pair, drawn from the
//! pair list's own images (aligned the same way), so the patch is an impostor's eyes, nose or mouth
//! at the position the template puts them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use facelens_data::Pair;
use facelens_eval::patch::Region;

/// The identity of an LFW image: its folder (`Name/Name_0001.jpg`), else its file stem without the
/// trailing `_NNNN`.
pub fn identity(path: &Path) -> String {
    if let Some(dir) = path.parent().and_then(|d| d.file_name()).and_then(|d| d.to_str()) {
        return dir.to_string();
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    stem.rsplit_once('_').map_or(stem, |(name, _)| name).to_string()
}

/// Every image of the pair list, sorted and without repeats: the donor pool.
pub fn donor_pool(pairs: &[Pair]) -> Vec<PathBuf> {
    pairs.iter().flat_map(|p| [p.a.clone(), p.b.clone()]).collect::<BTreeSet<_>>().into_iter().collect()
}

/// A seeded choice for one pair (`line`) and attempt: the region to replace and a donor of
/// another identity (`None` when the pool holds only the pair's identities).
pub fn choose(pool: &[PathBuf], pair: &Pair, seed: u64, attempt: u64) -> (Region, Option<PathBuf>) {
    let mut rng = facelens_core::rng::SplitMix64::new(facelens_core::rng::hash_words(&[seed, pair.line as u64, attempt]));
    let region = Region::ALL[rng.below(Region::ALL.len())];
    let own = [identity(&pair.a), identity(&pair.b)];
    let others: Vec<&PathBuf> = pool.iter().filter(|p| !own.contains(&identity(p))).collect();
    let donor = (!others.is_empty()).then(|| others[rng.below(others.len())].clone());
    (region, donor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &str, b: &str, line: usize) -> Pair {
        Pair { a: a.into(), b: b.into(), genuine: true, fold: 0, line }
    }

    #[test]
    fn donors_are_other_identities_and_choices_are_seeded() {
        let pairs = vec![pair("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", 2), pair("Bob/Bob_0001.jpg", "Cy/Cy_0003.jpg", 3)];
        let pool = donor_pool(&pairs);
        assert_eq!(pool.len(), 4);
        assert_eq!(identity(Path::new("Cy_0003.jpg")), "Cy");
        for attempt in 0..20 {
            let (_, donor) = choose(&pool, &pairs[0], 7, attempt);
            assert_ne!(identity(&donor.expect("a donor")), "Ann");
            assert_eq!(choose(&pool, &pairs[0], 7, attempt), choose(&pool, &pairs[0], 7, attempt));
        }
        let only = vec![pairs[0].clone()];
        assert_eq!(choose(&donor_pool(&only), &only[0], 0, 0).1, None);
    }
}
