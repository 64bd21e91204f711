//! The ablation's TOML config: one backbone, the benchmark's data, subset and protocol sections
//! (the same types as `xfv-benchmark`, so a subset means the same pairs in both), and the list of
//! FGGB variants. Every key is spelled out in the checked-in configs because `--set` may only
//! replace keys that exist.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use facelens_saliency::reduce::ChannelReduction;
use facelens_saliency::FggbConfig;
use serde::{Deserialize, Serialize};
use xfv_benchmark::config::{
    Config as BenchConfig, DataConfig, ModelEntry, OutputConfig, ProtocolConfig,
    SubsetConfig, Threshold,
};

/// Name of the experiment: the folder under `--out` and the run-directory prefix.
pub const EXPERIMENT: &str = "fggb-ablation";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub subset: SubsetConfig,
    pub protocol: ProtocolConfig,
    /// Table rows, in order.
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Zoo name (`w600k_mbf`), `.safetensors` path, or `hf:` reference.
    pub name: String,
    /// The protocol's threshold (which pairs are eligible; re-verification along the curves) and
    /// FGGB's τ for `tau = "best-accuracy"`: `"calibrated"` (the zoo's best-accuracy threshold on
    /// LFW) or a cosine. Every variant is scored at this threshold, so only the maps differ.
    pub best_accuracy_threshold: Threshold,
    /// FGGB's τ for `tau = "eer"`: the model's equal-error-rate threshold on the same data
    /// (`facelens eval verify` prints it).
    pub eer_threshold: f32,
}

/// Which threshold FGGB shifts its dimension weights by (`v_k = w_k - τ/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tau {
    BestAccuracy,
    Eer,
}

impl Tau {
    pub fn as_str(self) -> &'static str {
        match self {
            Tau::BestAccuracy => "best-accuracy",
            Tau::Eer => "eer",
        }
    }
}

/// One FGGB configuration (DESIGN §6 switches plus τ).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Row label, TensorBoard run name and folder name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Differentiate the L2-normalised embedding (as specified) or the raw one.
    pub normalised_embedding: bool,
    pub channel_reduction: ChannelReduction,
    /// Unit-norm each dimension's gradient map before weighting.
    pub per_dimension_norm: bool,
    /// Smooth the maps (kernel 25, sigma 5) before ranking pixels.
    pub blur: bool,
    pub tau: Tau,
}

impl Variant {
    /// The variant as the explainer's config.
    pub fn fggb(&self) -> FggbConfig {
        FggbConfig {
            normalised_embedding: self.normalised_embedding,
            channel_reduction: self.channel_reduction,
            per_dimension_norm: self.per_dimension_norm,
            blur: self.blur,
        }
    }
}

impl Config {
    /// Checks what serde cannot; the benchmark's own checks run when it loads.
    pub fn validate(&self) -> Result<()> {
        if self.variants.is_empty() {
            bail!("`variants` is empty: list at least one [[variants]] table");
        }
        let mut seen = BTreeSet::new();
        for v in &self.variants {
            let ok = !v.name.is_empty()
                && v.name != "."
                && v.name != ".."
                && v.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                bail!(
                    "variant name `{}`: use letters, digits, `-`, `_` or `.` (it names a folder)",
                    v.name
                );
            }
            if !seen.insert(v.name.as_str()) {
                bail!("variant name `{}` appears twice", v.name);
            }
        }
        if !(self.model.eer_threshold.is_finite() && self.model.eer_threshold.abs() <= 1.0) {
            bail!(
                "`model.eer_threshold` must be a cosine within [-1, 1], got {}",
                self.model.eer_threshold
            );
        }
        self.benchmark().validate()
    }

    /// The benchmark config that loads the model and data and selects the pairs: FGGB on the
    /// first model, no panels.
    pub fn benchmark(&self) -> BenchConfig {
        BenchConfig {
            models: vec![ModelEntry {
                name: self.model.name.clone(),
                threshold: self.model.best_accuracy_threshold,
            }],
            data: self.data.clone(),
            subset: self.subset.clone(),
            methods: vec!["fggb".into()],
            fggb: FggbConfig::default(),
            dfv: Default::default(),
            protocol: self.protocol.clone(),
            output: OutputConfig { panels: 0 },
            seed: 0,
        }
    }

    pub fn variant_names(&self) -> Vec<String> {
        self.variants.iter().map(|v| v.name.clone()).collect()
    }

    /// Table rows: the variants, then their probe-only rows when
    /// [`ProtocolConfig::traces_probe_only`], as the benchmark's extra rows.
    pub fn row_names(&self) -> Vec<String> {
        self.protocol.row_names(&self.variant_names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facelens_board::config;
    use xfv_benchmark::config::Select;

    const CI: &str = include_str!("../ci.toml");
    const LFW: &str = include_str!("../lfw.toml");

    fn load(text: &str) -> Config {
        config::load_str::<Config, _, _>(text, std::iter::empty::<&str>())
            .expect("parses")
            .value
    }

    #[test]
    fn checked_in_configs_parse_and_validate() {
        for text in [CI, LFW] {
            load(text).validate().expect("valid");
        }
        let ci = load(CI);
        assert_eq!(ci.variants.len(), 2);
        let lfw = load(LFW);
        assert_eq!(
            (lfw.subset.select, lfw.subset.first, lfw.subset.seed),
            (Select::Random, 300, 0)
        );
        assert!(lfw.subset.folds.is_empty(), "all ten folds");
        assert_eq!(lfw.model.eer_threshold, 0.1910);
        // Every switch is flipped by some variant, and the first row is FGGB as specified.
        let v = &lfw.variants;
        assert_eq!(v[0].fggb(), FggbConfig::default());
        assert_eq!(v[0].tau, Tau::BestAccuracy);
        assert!(v.iter().any(|x| !x.normalised_embedding));
        assert!(v
            .iter()
            .any(|x| x.channel_reduction == ChannelReduction::MaxAbs));
        assert!(v.iter().any(|x| x.blur));
        assert!(v.iter().any(|x| x.tau == Tau::Eer));
        assert!(v.iter().any(|x| !x.per_dimension_norm));
    }

    #[test]
    fn the_benchmark_sees_the_same_subset() {
        let lfw = load(LFW);
        let bench = lfw.benchmark();
        assert_eq!(bench.subset, lfw.subset);
        assert_eq!(bench.protocol, lfw.protocol);
        assert_eq!(bench.models[0].threshold, Threshold::Calibrated);
        let xfv_subset = config::load_str::<BenchConfig, _, _>(
            include_str!("../../xfv-benchmark/lfw-subset.toml"),
            std::iter::empty::<&str>(),
        )
        .expect("xfv-benchmark/lfw-subset.toml")
        .value;
        assert_eq!(
            bench.subset, xfv_subset.subset,
            "same pairs as the benchmark's subset"
        );
        assert_eq!(bench.data, xfv_subset.data);
        // The same curves, probe-only rows included.
        assert_eq!(bench.protocol, xfv_subset.protocol);
        assert!(lfw.protocol.traces_probe_only());
        assert_eq!(lfw.row_names().len(), 2 * lfw.variants.len());
        assert!(!load(CI).protocol.traces_probe_only());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut cfg = load(CI);
        cfg.variants[1].name = cfg.variants[0].name.clone();
        assert!(cfg.validate().unwrap_err().to_string().contains("twice"));
        cfg.variants[1].name = "a/b".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("a/b"));
        cfg.variants.clear();
        assert!(cfg.validate().is_err());
        let mut cfg = load(CI);
        cfg.model.eer_threshold = 2.0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("eer_threshold"));
        assert!(config::load_str::<Config, _, _>(CI, ["variants.0.tau=median"]).is_err());
        let eer = config::load_str::<Config, _, _>(CI, ["variants.0.tau=eer"]).expect("override");
        assert_eq!(eer.value.variants[0].tau, Tau::Eer);
    }
}
