//! The benchmark's TOML config. Every tunable is spelled out in the checked-in configs, because
//! `--set` may only replace keys that exist (a typo must fail, not silently run the default);
//! a config may start from another with `base = "other.toml"` and state only what differs.

use std::fmt;
use std::path::PathBuf;

use facelens_eval::deletion::Perturb;
use facelens_models::ModelSpec;
use facelens_saliency::FggbConfig;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Name of the experiment: the folder under `--out` and the run-directory prefix.
pub const EXPERIMENT: &str = "xfv-benchmark";

/// The method kind of DFV, which lives in facelens-recon rather than facelens-saliency.
pub const DFV: &str = "dfv";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Backbones. The first is explained with every method (Tables I and II); all are explained
    /// with FGGB (Table III).
    pub models: Vec<ModelEntry>,
    pub data: DataConfig,
    pub subset: SubsetConfig,
    /// Explainers, one table row each (see [`MethodEntry`]).
    pub methods: Vec<MethodEntry>,
    pub protocol: ProtocolConfig,
    pub output: OutputConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Zoo name (`w600k_mbf`), `.safetensors` path, or `hf:` reference.
    pub name: String,
    /// Cosine threshold τ: `"calibrated"` (the zoo's value) or a number.
    pub threshold: Threshold,
}

/// One explainer of the benchmark: `kind` is a `facelens_saliency::METHODS` name, `"dfv"`, or
/// `"all"` (every registered method with its defaults, so baselines added later join without a
/// config change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodEntry {
    pub kind: String,
    /// Table row label; defaults to `kind`. Variants of one kind need distinct names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `kind = "fggb"`: FGGB's switches (docs/design.md §6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fggb: Option<FggbConfig>,
    /// `kind = "fggb"`: the threshold the dimension weights are shifted by (`v_k = w_k - τ/N`);
    /// default the model's protocol threshold. Eligibility and re-verification always use the
    /// protocol threshold, so a τ variant changes the maps and nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f32>,
    /// `kind = "dfv"`: the decoder weights (default the committed w600k_mbf decoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder: Option<PathBuf>,
}

/// The default DFV decoder.
pub const DFV_DECODER: &str = "checkpoints/decoder-w600k_mbf.safetensors";

/// A method entry resolved: its row name and what computes its maps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Method {
    pub name: String,
    pub spec: MethodSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodSpec {
    Fggb { config: FggbConfig, tau: Option<f32> },
    Dfv { decoder: PathBuf },
    /// A registered explainer without settings (`facelens_saliency::by_name`).
    Named { kind: String },
}

impl MethodSpec {
    pub fn kind(&self) -> &str {
        match self {
            MethodSpec::Fggb { .. } => "fggb",
            MethodSpec::Dfv { .. } => DFV,
            MethodSpec::Named { kind } => kind,
        }
    }

    fn of_kind(kind: &str) -> MethodSpec {
        match kind {
            "fggb" => MethodSpec::Fggb { config: FggbConfig::default(), tau: None },
            DFV => MethodSpec::Dfv { decoder: PathBuf::from(DFV_DECODER) },
            k => MethodSpec::Named { kind: k.to_string() },
        }
    }
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
    /// Mid-grey (127.5 in 0..255) in each model's own normalisation: the informative fill on
    /// w600k_mbf, where blackened faces stay similar to each other (docs/design.md §8).
    Grey,
    Value(f32),
    /// ROAD's noisy linear imputation (Rong et al., ICML 2022; `facelens_eval::road`): removed
    /// pixels are solved from their neighbours plus noise, Deletion becomes MoRF and Insertion
    /// LeRF. Mid-grey is the value of an image with every pixel removed.
    Road,
}

impl Fill {
    /// The model-space value for a model (black and grey resolved through its normalisation; all channels
    /// must agree because Deletion fills every channel with one value).
    pub fn value_for(self, spec: &ModelSpec) -> Result<f32> {
        let (pixel, word) = match self {
            Fill::Value(v) => return Ok(v),
            Fill::Black => (0.0, "black"),
            Fill::Grey | Fill::Road => (127.5, "grey"),
        };
        let v: Vec<f32> = (0..3).map(|c| (pixel - spec.mean[c]) / spec.std[c]).collect();
        if v.iter().any(|x| (x - v[0]).abs() > 1e-6) {
            return Err(Error::config(
                "protocol.fill",
                format!("model `{}`: {word} differs per channel ({v:?}); set a number", spec.name),
            ));
        }
        Ok(v[0])
    }
}

impl Fill {
    /// ROAD's settings for a model when the fill is [`Fill::Road`]: the model's normalisation (one
    /// for every channel, since imputation runs in pixel space), the default noise and a fixed seed.
    pub fn road_for(self, spec: &ModelSpec) -> Result<Option<facelens_eval::road::Road>> {
        if self != Fill::Road {
            return Ok(None);
        }
        if (0..3).any(|c| spec.mean[c] != spec.mean[0] || spec.std[c] != spec.std[0]) {
            return Err(Error::config(
                "protocol.fill",
                format!("model `{}` normalises channels differently; ROAD imputes in pixel space with one normalisation", spec.name),
            ));
        }
        let road = facelens_eval::road::Road { noise: facelens_eval::road::DEFAULT_NOISE, mean: spec.mean[0], std: spec.std[0], seed: 0 };
        road.check("protocol.fill").map_err(|e| Error::config("protocol.fill", e.to_string()))?;
        Ok(Some(road))
    }
}

/// `black`, `grey`, `road` or a finite model-space number (command-line spelling of `protocol.fill`).
impl std::str::FromStr for Fill {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "black" => return Ok(Fill::Black),
            "grey" | "gray" => return Ok(Fill::Grey),
            "road" => return Ok(Fill::Road),
            _ => {}
        }
        match s.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(Fill::Value(v)),
            _ => Err(format!("`{s}`: expected `black`, `grey`, `road` or a finite number (model space)")),
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
    /// The first `limit` genuine pairs the (first) model accepts and the first `limit` impostor
    /// pairs it rejects, in list order: a small set where every pair is scored.
    First,
    /// Every `every`-th pair of the list (1 = all), scored where eligible.
    Every,
    /// `limit` genuine pairs the (first) model accepts and `limit` impostor pairs it rejects,
    /// drawn uniformly without replacement from the eligible pairs of `folds` with `seed`: a
    /// fixed subset that, unlike `"first"`, does not favour the top of the list.
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetConfig {
    /// 1-based folds of `pairs.txt` to draw from; empty = all.
    pub folds: Vec<usize>,
    pub select: Select,
    /// Genuine and impostor pairs each, for `"first"` and `"random"` (the CLI's `--limit`).
    pub limit: usize,
    /// For `"every"`: every k-th pair.
    pub every: usize,
    /// Seed of the `"random"` draw.
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    /// Percent of pixels between curve points (5: p = 0, 5, ..., 100). An integer so that
    /// TensorBoard steps are the percentages themselves.
    pub step: u32,
    /// `"black"`, `"grey"`, `"road"` (noisy linear imputation; Deletion/Insertion become
    /// MoRF/LeRF) or a model-space number.
    pub fill: Fill,
    /// `"both"` images, only the `"probe"` (A), or `"by-kind"`.
    pub perturb: Perturb,
    /// Perturbed images per forward pass.
    pub batch: usize,
    /// Jacobian rows per backward pass. Fixed here rather than sized from free memory so that
    /// maps, and hence results, do not depend on the machine or on how a run is sharded.
    pub jacobian_rows: usize,
    /// With `perturb = "both"`, also trace every method's curves with only the probe perturbed,
    /// as extra rows `<method> (probe only)`: the same maps, one more set of curves (on
    /// w600k_mbf, blackening both faces of a genuine pair keeps them similar, so Table I
    /// saturates under "both"; probe-only curves separate the methods there).
    pub also_probe: bool,
}

/// Which curves a table row holds: the configured perturbation, or the extra probe-only curves
/// of `protocol.also_probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Configured,
    ProbeOnly,
}

/// A table row: a method's curves under one perturbation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Row {
    pub method: String,
    pub variant: Variant,
}

impl Row {
    pub fn configured(method: &str) -> Row {
        Row { method: method.to_string(), variant: Variant::Configured }
    }

    /// The label tables print.
    pub fn label(&self) -> String {
        match self.variant {
            Variant::Configured => self.method.clone(),
            Variant::ProbeOnly => format!("{} (probe only)", self.method),
        }
    }
}

impl ProtocolConfig {
    /// Whether every method also gets probe-only curves: `also_probe` with both images perturbed.
    pub fn traces_probe_only(&self) -> bool {
        self.also_probe && self.perturb == Perturb::Both
    }

    /// Table rows for `methods`: the methods, then their probe-only rows when traced.
    pub fn rows(&self, methods: &[String]) -> Vec<Row> {
        let mut rows: Vec<Row> = methods.iter().map(|m| Row::configured(m)).collect();
        if self.traces_probe_only() {
            rows.extend(methods.iter().map(|m| Row { method: m.clone(), variant: Variant::ProbeOnly }));
        }
        rows
    }

    /// The rows a method's maps give on backbone `backbone` for a pair with this label, with what
    /// each perturbs ([`Perturb::Both`] or [`Perturb::Probe`]).
    pub fn rows_of(&self, backbone: usize, method: &str, genuine: bool) -> Vec<(Row, Perturb)> {
        let mut rows = vec![(Row::configured(method), self.perturb.for_pair(genuine))];
        if backbone == 0 && self.traces_probe_only() {
            rows.push((Row { method: method.to_string(), variant: Variant::ProbeOnly }, Perturb::Probe));
        }
        rows
    }
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
            return Err(Error::config("models", "empty: name at least one backbone"));
        }
        self.methods()?;
        let p = &self.protocol;
        if !(1..=100).contains(&p.step) {
            return Err(Error::config("protocol.step", format!("must be 1..=100 percent, got {}", p.step)));
        }
        if p.batch == 0 {
            return Err(Error::config("protocol.batch", "must be at least 1"));
        }
        if p.jacobian_rows == 0 {
            return Err(Error::config("protocol.jacobian_rows", "must be at least 1"));
        }
        match self.subset.select {
            Select::First | Select::Random if self.subset.limit == 0 => {
                return Err(Error::config("subset.limit", "must be at least 1 with select = \"first\" or \"random\""))
            }
            Select::Every if self.subset.every == 0 => {
                return Err(Error::config("subset.every", "must be at least 1 with select = \"every\""))
            }
            _ => {}
        }
        if let Some(f) = self.subset.folds.iter().find(|&&f| f == 0 || f > 10) {
            return Err(Error::config("subset.folds", format!("folds are 1..=10, found {f}")));
        }
        Ok(())
    }

    /// The methods in config order, `"all"` expanded; an entry repeating an earlier one is
    /// dropped, two different methods under one name are an error.
    pub fn methods(&self) -> Result<Vec<Method>> {
        if self.methods.is_empty() {
            return Err(Error::config("methods", "empty: name at least one explainer"));
        }
        let mut out: Vec<Method> = Vec::new();
        for (i, m) in self.methods.iter().enumerate() {
            let key = |field: &str| format!("methods.{i}.{field}");
            let known = facelens_saliency::METHODS.contains(&m.kind.as_str()) || m.kind == DFV;
            if m.kind == "all" {
                if m.name.is_some() || m.fggb.is_some() || m.tau.is_some() || m.decoder.is_some() {
                    return Err(Error::config(key("kind"), "\"all\" takes no other settings"));
                }
            } else if !known {
                return Err(Error::config(
                    key("kind"),
                    format!("unknown method `{}`; known: {}, {DFV}, or \"all\"", m.kind, facelens_saliency::METHODS.join(", ")),
                ));
            }
            if m.kind != "fggb" && (m.fggb.is_some() || m.tau.is_some()) {
                return Err(Error::config(key("fggb"), "`fggb` and `tau` apply to kind = \"fggb\" only"));
            }
            if m.kind != DFV && m.decoder.is_some() {
                return Err(Error::config(key("decoder"), "applies to kind = \"dfv\" only"));
            }
            if let Some(t) = m.tau {
                if !t.is_finite() || !(-1.0..=1.0).contains(&t) {
                    return Err(Error::config(key("tau"), format!("{t} is not a cosine in [-1, 1]")));
                }
            }
            let expanded: Vec<Method> = if m.kind == "all" {
                facelens_saliency::METHODS
                    .iter()
                    .map(|k| Method { name: k.to_string(), spec: MethodSpec::of_kind(k) })
                    .collect()
            } else {
                let spec = match m.kind.as_str() {
                    "fggb" => MethodSpec::Fggb { config: m.fggb.clone().unwrap_or_default(), tau: m.tau },
                    DFV => MethodSpec::Dfv { decoder: m.decoder.clone().unwrap_or_else(|| PathBuf::from(DFV_DECODER)) },
                    k => MethodSpec::Named { kind: k.to_string() },
                };
                vec![Method { name: m.name.clone().unwrap_or_else(|| m.kind.clone()), spec }]
            };
            for e in expanded {
                if e.name.is_empty() || !e.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                    return Err(Error::config(key("name"), format!("`{}`: use letters, digits, `-`, `_`, `.`", e.name)));
                }
                match out.iter().find(|o| o.name == e.name) {
                    Some(o) if o.spec == e.spec => {}
                    Some(_) => {
                        return Err(Error::config(key("name"), format!("two different methods are named `{}`", e.name)))
                    }
                    None => out.push(e),
                }
            }
        }
        Ok(out)
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
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Number(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) => w.parse().map_err(de::Error::custom),
            Raw::Number(v) if (v as f32).is_finite() => Ok(Fill::Value(v as f32)),
            Raw::Number(v) => Err(de::Error::custom(format!("{v} is not a finite f32"))),
        }
    }
}

impl Serialize for Fill {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Fill::Black => s.serialize_str("black"),
            Fill::Grey => s.serialize_str("grey"),
            Fill::Road => s.serialize_str("road"),
            Fill::Value(v) => s.serialize_f32(*v),
        }
    }
}

