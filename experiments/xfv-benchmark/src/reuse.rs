//! Growing a benchmark without recomputing what it already measured.
//!
//! A pair's curves under one method depend on the pair, the models and their weights, that
//! method with its switches, the fill and steps, the perturbation and the seed, never on which
//! other pairs or methods were selected. So `--reuse` takes, pair by pair and method by method,
//! the curves an earlier run measured under the same conditions:
//!
//! * a larger draw takes the pairs of a smaller one (random draws with one seed are nested, so
//!   a 300 + 300 draw costs only the pairs its 80 + 80 start did not have);
//! * a run with more methods takes the methods the earlier run had and explains only the others;
//! * a `perturb = "by-kind"` run takes the probe-only curves of a `"both"` run with
//!   `also_probe` for its genuine pairs and the both-images curves for its impostor pairs.
//!
//! Everything else (models, weights, thresholds, data, fill, steps, batch sizes, seed) must match.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Result};
use facelens_board::config as board_config;
use facelens_data::Pair;
use facelens_eval::deletion::{MapKind, Perturb};

use crate::bench::{MethodCurves, PairRecord, Records};
use crate::config::{Config, ProtocolConfig, DFV};
use crate::output::{find_shards, read_shard};

/// What one earlier run measured that this run would measure identically.
#[derive(Debug)]
struct Earlier {
    dir: PathBuf,
    /// Methods with the same name and, for FGGB and DFV, the same switches.
    methods: BTreeSet<String>,
    /// Its protocol, which says which of its rows perturbed what.
    protocol: ProtocolConfig,
}

impl Earlier {
    /// Curves of `method` on backbone `backbone` of `record` with `wanted` perturbed
    /// ([`Perturb::Both`] or [`Perturb::Probe`]), if this run has them.
    fn curves<'a>(
        &self,
        record: &'a PairRecord,
        backbone: usize,
        method: &str,
        wanted: Perturb,
    ) -> Option<&'a MethodCurves> {
        if !self.methods.contains(method) {
            return None;
        }
        let (row, _) = self
            .protocol
            .rows_of(backbone, method, record.genuine)
            .into_iter()
            .find(|(_, perturbed)| *perturbed == wanted)?;
        record.models.get(backbone)?.methods.get(&row)
    }
}

/// What a pair came to before any method ran: skipped, or each backbone's clean score and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub skipped: Option<String>,
    pub models: Vec<(f32, Option<MapKind>)>,
}

impl Outcome {
    fn of(record: &PairRecord) -> Outcome {
        Outcome {
            skipped: record.skipped.clone(),
            models: record
                .models
                .iter()
                .map(|m| (m.clean_score, m.kind))
                .collect(),
        }
    }
}

/// Records of earlier runs, by `pairs.txt` line.
#[derive(Debug, Default)]
pub struct Reuse {
    earlier: Vec<Earlier>,
    /// (index into `earlier`, record), in the order the runs were given.
    by_line: BTreeMap<usize, Vec<(usize, PairRecord)>>,
}

impl Reuse {
    /// Nothing to reuse.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads run (or shard) directories, or folders of them, and keeps their records after
    /// checking each was measured under a config compatible with `config` and with the same
    /// models (weights, thresholds, fill values) and steps as `expected` (this run's header).
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
            let methods = reusable_methods(&old, config)
                .map_err(|e| anyhow::anyhow!("cannot reuse {}: {e}", dir.display()))?;
            check_same_measurement(&shard.records, expected)
                .map_err(|e| anyhow::anyhow!("cannot reuse {}: {e}", dir.display()))?;
            let from = reuse.earlier.len();
            for r in shard.records.records {
                let entries = reuse.by_line.entry(r.line).or_default();
                if let Some((other, seen)) = entries.first() {
                    if Outcome::of(seen) != Outcome::of(&r) {
                        bail!(
                            "pairs.txt line {} was scored differently in {} and {}",
                            r.line,
                            reuse.earlier[*other].dir.display(),
                            dir.display()
                        );
                    }
                }
                entries.push((from, r));
            }
            reuse.earlier.push(Earlier {
                dir,
                methods,
                protocol: old.protocol,
            });
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

    /// Earlier records of `pair`: the same line, images and label.
    fn records_of<'a>(
        &'a self,
        pair: &'a Pair,
    ) -> impl Iterator<Item = (&'a Earlier, &'a PairRecord)> + 'a {
        let fresh = PairRecord::new(0, pair);
        self.by_line
            .get(&pair.line)
            .into_iter()
            .flatten()
            .filter(move |(_, r)| {
                r.a == fresh.a
                    && r.b == fresh.b
                    && r.genuine == fresh.genuine
                    && r.fold == fresh.fold
            })
            .map(|(i, r)| (&self.earlier[*i], r))
    }

    /// Whether `pair` was skipped, and its clean scores and kinds, as an earlier run found them.
    pub fn outcome(&self, pair: &Pair) -> Option<Outcome> {
        self.records_of(pair).next().map(|(_, r)| Outcome::of(r))
    }

    /// Curves of `method` on `pair` and backbone `backbone` with `wanted` perturbed
    /// ([`Perturb::Both`] or [`Perturb::Probe`]), from the first earlier run that has them.
    pub fn curves(
        &self,
        pair: &Pair,
        backbone: usize,
        method: &str,
        wanted: Perturb,
    ) -> Option<MethodCurves> {
        self.records_of(pair)
            .find_map(|(earlier, r)| earlier.curves(r, backbone, method, wanted))
            .cloned()
    }
}

/// The methods of `old` that `new` would measure identically. Besides `subset` and `output`,
/// only the methods, their switches and which images are perturbed may differ.
pub fn reusable_methods(old: &Config, new: &Config) -> Result<BTreeSet<String>> {
    let protocol_apart_from_perturb = ProtocolConfig {
        perturb: new.protocol.perturb,
        also_probe: new.protocol.also_probe,
        ..old.protocol.clone()
    };
    let differing: Vec<&str> = [
        ("models", old.models != new.models),
        ("data", old.data != new.data),
        ("protocol", protocol_apart_from_perturb != new.protocol),
        ("seed", old.seed != new.seed),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect();
    if !differing.is_empty() {
        bail!(
            "its config differs in {} (only `subset`, `output`, the methods, their switches and \
             `protocol.perturb`/`also_probe` may differ)",
            differing.join(", ")
        );
    }
    let wanted = new.method_names();
    let mut methods: BTreeSet<String> = old
        .method_names()
        .into_iter()
        .filter(|m| wanted.contains(m))
        .collect();
    if old.fggb != new.fggb {
        methods.remove("fggb");
    }
    if old.dfv != new.dfv {
        methods.remove(DFV);
    }
    if methods.is_empty() {
        bail!("it measured none of this run's methods with the same switches");
    }
    Ok(methods)
}

/// The same weights (by sha256), thresholds, fill values and steps.
fn check_same_measurement(old: &Records, new: &Records) -> Result<()> {
    if old.experiment != new.experiment {
        bail!("it is a `{}` run, not `{}`", old.experiment, new.experiment);
    }
    if old.models != new.models {
        bail!("its models differ (weights, threshold or fill value)");
    }
    if old.steps != new.steps {
        bail!("its steps differ");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::ModelPairRecord;

    const CI: &str = include_str!("../ci.toml");

    fn cfg(overrides: &[&str]) -> Config {
        board_config::load_str::<Config, _, _>(CI, overrides.iter().copied())
            .expect("config")
            .value
    }

    #[test]
    fn methods_switches_and_perturbation_may_differ_nothing_else() {
        let base = cfg(&[]);
        let same = reusable_methods(
            &base,
            &cfg(&["subset.first=300", "subset.seed=3", "output.panels=0"]),
        )
        .expect("subset and output are free");
        assert_eq!(
            same,
            BTreeSet::from(["fggb".to_string(), "xssab".to_string()])
        );
        // More methods and another perturbation: the shared methods are reusable.
        let more = reusable_methods(
            &base,
            &cfg(&[
                "methods=[\"xssab\", \"random\"]",
                "protocol.perturb=\"by-kind\"",
                "protocol.also_probe=true",
            ]),
        )
        .expect("methods and perturbation are free");
        assert_eq!(more, BTreeSet::from(["xssab".to_string()]));
        // FGGB with other switches is not the same method.
        let blur = reusable_methods(&base, &cfg(&["fggb.blur=true"])).expect("xssab is");
        assert_eq!(blur, BTreeSet::from(["xssab".to_string()]));
        let err = reusable_methods(&base, &cfg(&["protocol.step=10"])).unwrap_err();
        assert!(err.to_string().contains("protocol"), "{err}");
        let err = reusable_methods(&base, &cfg(&["protocol.fill=0", "seed=0"])).unwrap_err();
        assert!(err.to_string().contains("differs in protocol"), "{err}");
        let err = reusable_methods(&base, &cfg(&["methods=[\"random\"]"])).unwrap_err();
        assert!(
            err.to_string().contains("none of this run's methods"),
            "{err}"
        );
    }

    fn pair(genuine: bool, b: &str) -> Pair {
        Pair {
            a: "x/x_0001.jpg".into(),
            b: b.into(),
            genuine,
            fold: 2,
            line: 40,
        }
    }

    fn curves(v: f32) -> MethodCurves {
        MethodCurves {
            deletion: vec![v],
            insertion: vec![v],
        }
    }

    /// One earlier run holding `rows` for `pair` on the first backbone.
    fn reuse_of(pair: &Pair, protocol: &[&str], rows: &[(&str, f32)]) -> Reuse {
        let mut record = PairRecord::new(7, pair);
        record.models.push(ModelPairRecord {
            clean_score: 0.5,
            kind: Some(MapKind::Similarity),
            methods: rows
                .iter()
                .map(|(n, v)| (n.to_string(), curves(*v)))
                .collect(),
        });
        let mut reuse = Reuse::none();
        reuse.earlier.push(Earlier {
            dir: PathBuf::from("old"),
            methods: BTreeSet::from(["xssab".to_string()]),
            protocol: cfg(protocol).protocol,
        });
        reuse.by_line.insert(pair.line, vec![(0, record)]);
        reuse
    }

    #[test]
    fn curves_are_taken_only_for_the_same_images_method_and_perturbation() {
        let genuine = pair(true, "x/x_0002.jpg");
        let rows = [("xssab", 1.0), ("xssab (probe only)", 2.0), ("fggb", 3.0)];
        let reuse = reuse_of(
            &genuine,
            &["protocol.perturb=\"both\"", "protocol.also_probe=true"],
            &rows,
        );
        assert_eq!(
            reuse.curves(&genuine, 0, "xssab", Perturb::Both),
            Some(curves(1.0))
        );
        assert_eq!(
            reuse.curves(&genuine, 0, "xssab", Perturb::Probe),
            Some(curves(2.0))
        );
        // fggb is in the record but was measured with other switches.
        assert_eq!(reuse.curves(&genuine, 0, "fggb", Perturb::Both), None);
        // Probe-only rows exist for the first backbone only.
        assert_eq!(reuse.curves(&genuine, 1, "xssab", Perturb::Probe), None);
        // Another pair on the same line of another pair list.
        assert_eq!(
            reuse.curves(&pair(true, "y/y_0001.jpg"), 0, "xssab", Perturb::Both),
            None
        );
        assert_eq!(
            reuse.outcome(&genuine),
            Some(Outcome {
                skipped: None,
                models: vec![(0.5, Some(MapKind::Similarity))]
            })
        );

        // A by-kind run perturbed only the probe of a genuine pair and both images of an impostor.
        let reuse = reuse_of(
            &genuine,
            &["protocol.perturb=\"by-kind\""],
            &[("xssab", 4.0)],
        );
        assert_eq!(
            reuse.curves(&genuine, 0, "xssab", Perturb::Probe),
            Some(curves(4.0))
        );
        assert_eq!(reuse.curves(&genuine, 0, "xssab", Perturb::Both), None);
        let impostor = pair(false, "z/z_0001.jpg");
        let reuse = reuse_of(
            &impostor,
            &["protocol.perturb=\"by-kind\""],
            &[("xssab", 5.0)],
        );
        assert_eq!(
            reuse.curves(&impostor, 0, "xssab", Perturb::Both),
            Some(curves(5.0))
        );
        assert_eq!(reuse.curves(&impostor, 0, "xssab", Perturb::Probe), None);
    }
}
