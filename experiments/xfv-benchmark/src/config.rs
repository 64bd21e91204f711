//! The experiment's TOML config. Every tunable is spelled out in the checked-in configs, because
//! `--set` may only replace keys that exist (a typo must fail, not silently run the default).

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Result};
use facelens_eval::deletion::Perturb;
use facelens_saliency::FggbConfig;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Name of the experiment: the folder under `--out` and the run-directory prefix.
pub const EXPERIMENT: &str = "xfv-benchmark";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Backbones. The first is explained with every method (Tables I and II); all are explained
    /// with FGGB (Table III).
    pub models: Vec<ModelEntry>,
    pub data: DataConfig,
    pub subset: SubsetConfig,
    /// Explainer names from `facelens_saliency::METHODS`; `"all"` expands to every registered
    /// method, so baselines added later join the benchmark without a config change.
    pub methods: Vec<String>,
    /// FGGB switches (DESIGN §6), used wherever FGGB runs.
    pub fggb: FggbConfig,
    /// DFV (decoder feature visualisation, `facelens_recon::Dfv`): the decoder it probes. Only
    /// read when `methods` names `"dfv"` (it is not part of `"all"`: it needs a trained decoder).
    #[serde(default)]
    pub dfv: DfvConfig,
    pub protocol: ProtocolConfig,
    pub output: OutputConfig,
    /// Recorded with the results. The stochastic baselines carry their own fixed seeds in
    /// `facelens-saliency`; only `seed = 0` (keep them) is accepted until that crate takes one.
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DfvConfig {
    /// Decoder weights for the first model (decoder-train's `decoder.safetensors`).
    pub decoder: PathBuf,
}

impl Default for DfvConfig {
    fn default() -> Self {
        Self { decoder: PathBuf::from("checkpoints/decoder-w600k_mbf.safetensors") }
    }
}

/// The method name of DFV, which lives in facelens-recon rather than facelens-saliency.
pub const DFV: &str = "dfv";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Zoo name (`w600k_mbf`), `.safetensors` path, or `hf:` reference.
    pub name: String,
    /// Cosine threshold τ: `"calibrated"` (the zoo's value) or a number.
    pub threshold: Threshold,
}

/// τ from the model zoo or given explicitly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Calibrated,
    Value(f32),
}

/// The model-space value of a removed pixel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// Black (0 in 0..255) in each model's own normalisation.
    Black,
    Value(f32),
}

impl Fill {
    /// The model-space value for `model` (black resolved through its normalisation).
    pub fn value_for(self, model: &facelens_models::FaceModel) -> anyhow::Result<f32> {
        match self {
            Fill::Value(v) => Ok(v),
            Fill::Black => crate::bench::black_value(model),
        }
    }
}

/// `black` or a finite model-space number (command-line spelling of `protocol.fill`).
impl std::str::FromStr for Fill {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "black" {
            return Ok(Fill::Black);
        }
        match s.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(Fill::Value(v)),
            _ => Err(format!("`{s}`: expected `black` or a finite number (model space, e.g. 0 = mid-grey)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// LFW View-2 `pairs.txt`. Relative paths are relative to the working directory (the
    /// repository root in the checked-in configs).
    pub pairs: PathBuf,
    pub images: PathBuf,
    pub landmarks: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Select {
    /// The first `first` genuine pairs the (first) model accepts and the first `first` impostor
    /// pairs it rejects, in list order: a small set where every pair is scored.
    First,
    /// Every `every`-th pair of the list (1 = all), scored where eligible.
    Every,
    /// `first` genuine pairs the (first) model accepts and `first` impostor pairs it rejects,
    /// drawn uniformly without replacement from the eligible pairs of `folds` with the seed
    /// `subset.seed`: a fixed subset that, unlike `"first"`, does not favour the top of the list.
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetConfig {
    /// 1-based folds of `pairs.txt` to draw from; empty = all.
    pub folds: Vec<usize>,
    pub select: Select,
    /// Genuine and impostor pairs each, for `"first"` and `"random"`.
    pub first: usize,
    pub every: usize,
    /// Seed of the `"random"` draw. Defaults to 0 so that configs written before the key existed
    /// still load unchanged.
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    /// Percent of pixels between curve points (5: p = 0, 5, ..., 100). An integer so that
    /// TensorBoard steps are the percentages themselves.
    pub step: u32,
    /// `"black"` or a model-space number.
    pub fill: Fill,
    /// `"both"` images or only the `"probe"` (A).
    pub perturb: Perturb,
    /// Perturbed images per forward pass.
    pub batch: usize,
    /// Jacobian rows per backward pass. Fixed here rather than sized from free memory so that
    /// maps, and hence results, do not depend on the machine or on how a run is sharded.
    pub jacobian_rows: usize,
    /// With `perturb = "both"`, also trace every method's curves with only the probe perturbed,
    /// reported as extra rows `<method> (probe only)`: the same maps, one more set of curves
    /// (on w600k_mbf, blackening both faces of a genuine pair keeps them similar, so Table I
    /// saturates under "both"; probe-only curves separate the methods there).
    #[serde(default)]
    pub also_probe: bool,
}

impl ProtocolConfig {
    /// Whether every method also gets probe-only curves: `also_probe` with both images perturbed.
    pub fn traces_probe_only(&self) -> bool {
        self.also_probe && self.perturb == Perturb::Both
    }

    /// Table rows for `methods`: the methods, then their probe-only rows when
    /// [`ProtocolConfig::traces_probe_only`].
    pub fn row_names(&self, methods: &[String]) -> Vec<String> {
        let mut names = methods.to_vec();
        if self.traces_probe_only() {
            names.extend(methods.iter().map(|m| probe_only_name(m)));
        }
        names
    }

    /// The rows a method's maps give on backbone `backbone` for a pair with this label, with
    /// what each perturbs ([`Perturb::Both`] or [`Perturb::Probe`]): the configured
    /// perturbation, plus probe-only curves on the first backbone where traced.
    pub fn rows_of(&self, backbone: usize, method: &str, genuine: bool) -> Vec<(String, Perturb)> {
        let mut rows = vec![(method.to_string(), self.perturb.for_pair(genuine))];
        if backbone == 0 && self.traces_probe_only() {
            rows.push((probe_only_name(method), Perturb::Probe));
        }
        rows
    }
}

const PROBE_ONLY_SUFFIX: &str = " (probe only)";

/// Row name of a method's probe-only curves (`protocol.also_probe`).
pub fn probe_only_name(method: &str) -> String {
    format!("{method}{PROBE_ONLY_SUFFIX}")
}

/// The method whose maps a table row scores: `row` itself, or the method of a probe-only row.
pub fn row_method(row: &str) -> &str {
    row.strip_suffix(PROBE_ONLY_SUFFIX).unwrap_or(row)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Example panels: the first `panels` genuine and the first `panels` impostor pairs of the
    /// selection, shown with every method.
    pub panels: usize,
}

impl Config {
    /// Checks what serde cannot: values in range, known methods, at least one model.
    pub fn validate(&self) -> Result<()> {
        if self.models.is_empty() {
            bail!("`models` is empty: name at least one backbone");
        }
        if self.methods.is_empty() {
            bail!("`methods` is empty: name at least one explainer or \"all\"");
        }
        for m in self.method_names() {
            if !facelens_saliency::METHODS.contains(&m.as_str()) && m != DFV {
                bail!(
                    "unknown method `{m}` in `methods`; known: {}, {DFV}, or \"all\"",
                    facelens_saliency::METHODS.join(", ")
                );
            }
        }
        if !(1..=100).contains(&self.protocol.step) {
            bail!(
                "`protocol.step` must be 1..=100 percent, got {}",
                self.protocol.step
            );
        }
        if self.protocol.batch == 0 || self.protocol.jacobian_rows == 0 {
            bail!("`protocol.batch` and `protocol.jacobian_rows` must be at least 1");
        }
        match self.subset.select {
            Select::First | Select::Random if self.subset.first == 0 => {
                bail!("`subset.first` must be at least 1 with select = \"first\" or \"random\"")
            }
            Select::Every if self.subset.every == 0 => {
                bail!("`subset.every` must be at least 1 with select = \"every\"")
            }
            _ => {}
        }
        if let Some(f) = self.subset.folds.iter().find(|&&f| f == 0) {
            bail!("`subset.folds` are 1-based, found {f}");
        }
        if self.seed != 0 {
            bail!(
                "`seed` = {}: the explainers in facelens-saliency use their own fixed seeds and cannot take another yet; keep seed = 0",
                self.seed
            );
        }
        Ok(())
    }

    /// Methods in config order with `"all"` expanded and duplicates dropped.
    pub fn method_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in &self.methods {
            let expanded: Vec<String> = if m == "all" {
                facelens_saliency::METHODS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                vec![m.clone()]
            };
            for e in expanded {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        out
    }
}

/// `"keyword"` or a number. `--set` keeps a value that replaces a string as a string, so numbers
/// may also arrive as strings like `"0.3"`.
fn keyword_or_number<'de, D: Deserializer<'de>>(
    d: D,
    keyword: &'static str,
) -> Result<Option<f32>, D::Error> {
    struct V(&'static str);
    impl de::Visitor<'_> for V {
        type Value = Option<f32>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "\"{}\" or a number", self.0)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() {
                Ok(Some(v as f32))
            } else {
                Err(E::custom(format!("{v} is not a finite number")))
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            self.visit_f64(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            self.visit_f64(v as f64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v == self.0 {
                return Ok(None);
            }
            match v.trim().parse::<f64>() {
                Ok(x) => self.visit_f64(x),
                Err(_) => Err(E::custom(format!(
                    "expected \"{}\" or a number, found \"{v}\"",
                    self.0
                ))),
            }
        }
    }
    d.deserialize_any(V(keyword))
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(keyword_or_number(d, "calibrated")?.map_or(Threshold::Calibrated, Threshold::Value))
    }
}

impl Serialize for Threshold {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Threshold::Calibrated => s.serialize_str("calibrated"),
            Threshold::Value(v) => s.serialize_f32(*v),
        }
    }
}

impl<'de> Deserialize<'de> for Fill {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(keyword_or_number(d, "black")?.map_or(Fill::Black, Fill::Value))
    }
}

impl Serialize for Fill {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Fill::Black => s.serialize_str("black"),
            Fill::Value(v) => s.serialize_f32(*v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facelens_board::config;

    const CI: &str = include_str!("../ci.toml");
    const FULL: &str = include_str!("../lfw-full.toml");
    const SUBSET: &str = include_str!("../lfw-subset.toml");

    #[test]
    fn checked_in_configs_parse_and_validate() {
        for text in [CI, FULL, SUBSET] {
            let cfg =
                config::load_str::<Config, _, _>(text, std::iter::empty::<&str>()).expect("parses");
            cfg.value.validate().expect("valid");
        }
        let full = config::load_str::<Config, _, _>(FULL, std::iter::empty::<&str>())
            .expect("parses")
            .value;
        assert_eq!(full.method_names().len(), facelens_saliency::METHODS.len() + 1);
        assert_eq!(full.method_names().last().map(String::as_str), Some(DFV));
        let subset = config::load_str::<Config, _, _>(SUBSET, std::iter::empty::<&str>())
            .expect("parses")
            .value;
        assert_eq!(
            (
                subset.subset.select,
                subset.subset.first,
                subset.subset.seed
            ),
            (Select::Random, 300, 0)
        );
        assert!(subset.subset.folds.is_empty());
    }

    #[test]
    fn configs_without_a_subset_seed_still_load() {
        let old: String = CI
            .lines()
            .filter(|l| !(l.starts_with("seed") && l.contains("\"random\" draw")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            old.lines().count() + 1,
            CI.lines().count(),
            "the key was removed"
        );
        let cfg = config::load_str::<Config, _, _>(&old, ["subset.select=random"])
            .expect("parses")
            .value;
        assert_eq!((cfg.subset.select, cfg.subset.seed), (Select::Random, 0));
        cfg.validate().expect("valid");
    }

    #[test]
    fn overrides_reach_keyword_fields() {
        let cfg = config::load_str::<Config, _, _>(
            CI,
            [
                "models.0.threshold=0.3",
                "protocol.fill=-0.5",
                "protocol.perturb=probe",
                "protocol.step=25",
            ],
        )
        .expect("overrides");
        assert_eq!(cfg.value.models[0].threshold, Threshold::Value(0.3));
        assert_eq!(cfg.value.protocol.fill, Fill::Value(-0.5));
        assert_eq!(cfg.value.protocol.perturb, Perturb::Probe);
        assert_eq!(cfg.value.protocol.step, 25);
        let by_kind = config::load_str::<Config, _, _>(CI, ["protocol.perturb=by-kind"]).expect("by-kind");
        assert_eq!(by_kind.value.protocol.perturb, Perturb::ByKind);
        assert_eq!("black".parse::<Fill>(), Ok(Fill::Black));
        assert_eq!("0".parse::<Fill>(), Ok(Fill::Value(0.0)));
        assert_eq!("-0.5".parse::<Fill>(), Ok(Fill::Value(-0.5)));
        assert!("grey".parse::<Fill>().unwrap_err().contains("grey"));
        assert!("NaN".parse::<Fill>().is_err());
        let back = config::load_str::<Config, _, _>(CI, ["protocol.fill=black"]).expect("keyword");
        assert_eq!(back.value.protocol.fill, Fill::Black);
        assert!(config::load_str::<Config, _, _>(CI, ["protocol.fill=grey"]).is_err());
        assert!(config::load_str::<Config, _, _>(CI, ["protocol.stepp=5"]).is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut cfg = config::load_str::<Config, _, _>(CI, std::iter::empty::<&str>())
            .expect("parses")
            .value;
        cfg.methods = vec!["fggb".into(), "nonsense".into()];
        assert!(cfg.validate().unwrap_err().to_string().contains("nonsense"));
        cfg.methods = vec!["all".into(), "fggb".into()];
        assert_eq!(
            cfg.method_names(),
            facelens_saliency::METHODS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        );
        cfg.protocol.step = 0;
        assert!(cfg.validate().is_err());
    }
}
