//! Growing a benchmark without recomputing what it already measured.
//!
//! A pair's record (clean score, kind, every method's curves) depends on the pair, the models and
//! their weights, the methods with their switches, the protocol and the seed, never on which
//! other pairs were selected. So the records of an earlier run whose config differs only in
//! `subset` (which pairs) and `output` (how many panels) are exactly what this run would compute
//! for the same pairs: `--reuse` takes them, and a 300 + 300 draw that contains an earlier
//! 80 + 80 draw (random draws with one seed are nested) costs only its new pairs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use facelens_board::config as board_config;
use facelens_data::Pair;

use crate::bench::{PairRecord, Records};
use crate::config::Config;
use crate::output::{find_shards, read_shard};

/// Records of earlier runs, by `pairs.txt` line.
#[derive(Debug, Default)]
pub struct Reuse {
    by_line: BTreeMap<usize, (PairRecord, PathBuf)>,
}

impl Reuse {
    /// Nothing to reuse.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads run (or shard) directories, or folders of them, and keeps their records after
    /// checking each was measured under a config compatible with `config` and with the same
    /// models, methods, steps and perturbation as `expected` (the header of this run's records).
    pub fn load(dirs: &[PathBuf], config: &Config, expected: &Records) -> Result<Reuse> {
        let mut reuse = Reuse::none();
        if dirs.is_empty() {
            return Ok(reuse);
        }
        for dir in find_shards(dirs)? {
            let shard = read_shard(&dir)?;
            let old = board_config::load_str::<Config, _, _>(
                &shard.config_text,
                std::iter::empty::<&str>(),
            )
            .map_err(|e| anyhow::anyhow!("{}: its config.toml does not parse: {e}", dir.display()))?
            .value;
            check_compatible(&old, config)
                .map_err(|e| anyhow::anyhow!("cannot reuse {}: {e}", dir.display()))?;
            check_same_measurement(&shard.records, expected)
                .map_err(|e| anyhow::anyhow!("cannot reuse {}: {e}", dir.display()))?;
            for r in shard.records.records {
                match reuse.by_line.get(&r.line) {
                    Some((seen, from)) if !same_pair_result(seen, &r) => bail!(
                        "pairs.txt line {} was measured differently in {} and {}",
                        r.line,
                        from.display(),
                        dir.display()
                    ),
                    Some(_) => {}
                    None => {
                        reuse.by_line.insert(r.line, (r, dir.clone()));
                    }
                }
            }
        }
        Ok(reuse)
    }

    /// Pairs available.
    pub fn len(&self) -> usize {
        self.by_line.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_line.is_empty()
    }

    /// The earlier record of `pair`, renumbered as selection entry `index`, if one exists for the
    /// same two images and label.
    pub fn take(&self, index: usize, pair: &Pair) -> Option<PairRecord> {
        let (old, _) = self.by_line.get(&pair.line)?;
        let fresh = PairRecord::new(index, pair);
        let same = old.a == fresh.a
            && old.b == fresh.b
            && old.genuine == fresh.genuine
            && old.fold == fresh.fold;
        same.then(|| PairRecord {
            index,
            ..old.clone()
        })
    }
}

/// Everything but the selection index.
fn same_pair_result(a: &PairRecord, b: &PairRecord) -> bool {
    PairRecord {
        index: b.index,
        ..a.clone()
    } == *b
}

/// `old` may differ from `new` only in `subset` and `output`.
pub fn check_compatible(old: &Config, new: &Config) -> Result<()> {
    let differing: Vec<&str> = [
        ("models", old.models != new.models),
        ("data", old.data != new.data),
        ("methods", old.methods != new.methods),
        ("fggb", old.fggb != new.fggb),
        ("dfv", old.dfv != new.dfv),
        ("protocol", old.protocol != new.protocol),
        ("seed", old.seed != new.seed),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect();
    if !differing.is_empty() {
        bail!(
            "its config differs in {} (only `subset` and `output` may differ)",
            differing.join(", ")
        );
    }
    Ok(())
}

/// The same weights (by sha256), thresholds, fill values, methods, steps and perturbation.
fn check_same_measurement(old: &Records, new: &Records) -> Result<()> {
    if old.experiment != new.experiment {
        bail!("it is a `{}` run, not `{}`", old.experiment, new.experiment);
    }
    if old.models != new.models {
        bail!("its models differ (weights, threshold or fill value)");
    }
    if old.methods != new.methods || old.steps != new.steps || old.perturb != new.perturb {
        bail!("its methods, steps or perturbation differ");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CI: &str = include_str!("../ci.toml");

    fn cfg(overrides: &[&str]) -> Config {
        board_config::load_str::<Config, _, _>(CI, overrides.iter().copied())
            .expect("config")
            .value
    }

    #[test]
    fn only_subset_and_output_may_differ() {
        let base = cfg(&[]);
        check_compatible(
            &base,
            &cfg(&["subset.first=300", "subset.seed=3", "output.panels=0"]),
        )
        .expect("subset and output are free");
        let err = check_compatible(&base, &cfg(&["protocol.step=10"])).unwrap_err();
        assert!(err.to_string().contains("protocol"), "{err}");
        let err = check_compatible(
            &base,
            &cfg(&["methods=[\"random\"]", "seed=0", "fggb.blur=true"]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("methods, fggb"), "{err}");
    }

    #[test]
    fn a_record_is_taken_only_for_the_same_images() {
        let pair = Pair {
            a: "x/x_0001.jpg".into(),
            b: "y/y_0001.jpg".into(),
            genuine: false,
            fold: 2,
            line: 40,
        };
        let mut old = PairRecord::new(7, &pair);
        old.skipped = Some("no face".into());
        let mut reuse = Reuse::none();
        reuse
            .by_line
            .insert(40, (old.clone(), PathBuf::from("old")));
        let taken = reuse.take(3, &pair).expect("same pair");
        assert_eq!(taken.index, 3);
        assert_eq!(taken.skipped.as_deref(), Some("no face"));
        assert!(same_pair_result(&taken, &old));
        // Another pair list with a different pair on line 40.
        let other = Pair {
            b: "z/z_0001.jpg".into(),
            ..pair.clone()
        };
        assert!(reuse.take(3, &other).is_none());
        assert!(reuse.take(3, &Pair { line: 41, ..pair }).is_none());
    }
}
