//! The checked-in benchmark configs (those of the FGGB ablation included) parse, inherit from their
//! bases and validate; method entries are checked with the setting named.

use std::path::{Path, PathBuf};

use facelens_board::config;
use facelens_eval::deletion::Perturb;
use facelens_protocol::config::{Config, Fill, MethodSpec, Select, Threshold, DFV};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(rel: &str, overrides: &[&str]) -> facelens_protocol::Result<Config> {
    let c = config::load::<Config, _, _>(&repo().join(rel), overrides)?.value;
    c.validate()?;
    Ok(c)
}

#[test]
fn checked_in_configs_parse_and_validate() {
    let ci = load("experiments/xfv-benchmark/ci.toml", &[]).expect("ci");
    assert_eq!(ci.methods().expect("methods").iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["fggb", "xssab"]);
    let subset = load("experiments/xfv-benchmark/lfw-subset.toml", &[]).expect("subset");
    assert_eq!((subset.subset.select, subset.subset.limit, subset.subset.seed), (Select::Random, 300, 0));
    assert!(subset.subset.folds.is_empty());
    assert_eq!(subset.data, ci.data, "inherited from ci.toml");
    let methods = subset.methods().expect("methods");
    assert_eq!(methods.len(), facelens_saliency::METHODS.len() + 1);
    assert_eq!(methods.last().map(|m| m.spec.kind()), Some(DFV));
    let road = load("experiments/xfv-benchmark/road.toml", &[]).expect("road");
    assert_eq!((road.protocol.fill, road.protocol.perturb, &road.subset), (Fill::Road, ci.protocol.perturb, &ci.subset));
    let full = load("experiments/xfv-benchmark/lfw-full.toml", &[]).expect("full");
    assert_eq!(full.models.len(), 2);
    assert_eq!(full.subset.select, Select::Every);
    assert_eq!(full.methods, subset.methods);
    for ablation in ["experiments/fggb-ablation/ci.toml", "experiments/fggb-ablation/lfw.toml"] {
        let c = load(ablation, &[]).expect(ablation);
        let methods = c.methods().expect("methods");
        assert!(methods.len() >= 2 && methods.iter().all(|m| m.spec.kind() == "fggb"), "{ablation}");
        assert_eq!(methods[0].name, "spec");
    }
    // The ablation scores the benchmark's fixed subset under its protocol.
    let lfw = load("experiments/fggb-ablation/lfw.toml", &[]).expect("lfw");
    assert_eq!((&lfw.data, &lfw.subset, &lfw.protocol), (&subset.data, &subset.subset, &subset.protocol));
    let eer = lfw.methods().expect("methods").into_iter().find(|m| m.name == "tau-eer").expect("tau-eer");
    assert!(matches!(eer.spec, MethodSpec::Fggb { tau: Some(t), .. } if (t - 0.1910).abs() < 1e-6));
}

#[test]
fn ci_configs_are_informative_and_the_lfw_subset_follows_the_paper() {
    // CI-sized runs: by-kind perturbation with grey fill, where neither table saturates.
    for path in ["experiments/xfv-benchmark/ci.toml", "experiments/fggb-ablation/ci.toml"] {
        let c = load(path, &[]).expect(path);
        assert_eq!((c.protocol.perturb, c.protocol.fill), (Perturb::ByKind, Fill::Grey), "{path}");
    }
    // The published LFW subset keeps the FGGB paper's protocol, with the probe-only rows.
    let s = load("experiments/xfv-benchmark/lfw-subset.toml", &[]).expect("subset");
    assert_eq!((s.protocol.perturb, s.protocol.fill, s.protocol.also_probe), (Perturb::Both, Fill::Black, true));
}

#[test]
fn overrides_reach_keyword_fields() {
    let c = load(
        "experiments/xfv-benchmark/ci.toml",
        &["models.0.threshold=0.3", "protocol.fill=-0.5", "protocol.perturb=probe", "protocol.step=25", "methods.0.fggb.blur=true"],
    )
    .expect("overrides");
    assert_eq!(c.models[0].threshold, Threshold::Value(0.3));
    assert_eq!(c.protocol.fill, Fill::Value(-0.5));
    assert_eq!(c.protocol.perturb, Perturb::Probe);
    assert_eq!(c.protocol.step, 25);
    assert!(matches!(&c.methods().expect("methods")[0].spec, MethodSpec::Fggb { config, .. } if config.blur));
    let by_kind = load("experiments/xfv-benchmark/ci.toml", &["protocol.perturb=by-kind"]).expect("by-kind");
    assert_eq!(by_kind.protocol.perturb, Perturb::ByKind);
    assert_eq!("black".parse::<Fill>(), Ok(Fill::Black));
    assert_eq!("0".parse::<Fill>(), Ok(Fill::Value(0.0)));
    assert_eq!("grey".parse::<Fill>(), Ok(Fill::Grey));
    assert_eq!("road".parse::<Fill>(), Ok(Fill::Road));
    assert!("greyish".parse::<Fill>().unwrap_err().contains("greyish"));
    assert!("NaN".parse::<Fill>().is_err());
    let black = load("experiments/xfv-benchmark/ci.toml", &["protocol.fill=\"black\""]).expect("black");
    assert_eq!(black.protocol.fill, Fill::Black);
    assert!(load("experiments/xfv-benchmark/ci.toml", &["protocol.fill=greyish"]).is_err());
    assert!(load("experiments/xfv-benchmark/ci.toml", &["protocol.fill=1e40"]).is_err());
    assert!(load("experiments/xfv-benchmark/ci.toml", &["protocol.stepp=5"]).is_err());
    // Methods as inline tables on the command line.
    let c = load("experiments/xfv-benchmark/ci.toml", &["methods=[{kind=\"score-gradient\"}, {kind=\"random\"}]"]).expect("methods");
    assert_eq!(c.methods().expect("methods").len(), 2);
}

#[test]
fn method_entries_name_the_bad_setting() {
    let err = |overrides: &[&str]| load("experiments/xfv-benchmark/ci.toml", overrides).expect_err("refused").to_string();
    let e = err(&["methods=[{kind=\"nonsense\"}]"]);
    assert!(e.contains("methods.0.kind") && e.contains("nonsense"), "{e}");
    let e = err(&["methods=[{kind=\"xssab\", tau=0.2}]"]);
    assert!(e.contains("methods.0"), "{e}");
    let e = err(&["methods=[{kind=\"fggb\"}, {kind=\"fggb\", tau=0.1}]"]);
    assert!(e.contains("two different methods are named `fggb`"), "{e}");
    let e = err(&["methods=[{kind=\"fggb\", tau=3.0}]"]);
    assert!(e.contains("methods.0.tau"), "{e}");
    let e = err(&["methods=[]"]);
    assert!(e.contains("methods"), "{e}");
    let e = err(&["protocol.step=0"]);
    assert!(e.contains("protocol.step"), "{e}");
    let e = err(&["subset.limit=0"]);
    assert!(e.contains("subset.limit"), "{e}");
    // "all" twice, or "all" plus a method it contains, is the same method once.
    let c = load("experiments/xfv-benchmark/ci.toml", &["methods=[{kind=\"all\"}, {kind=\"fggb\"}, {kind=\"all\"}]"]).expect("all");
    assert_eq!(c.methods().expect("methods").len(), facelens_saliency::METHODS.len());
}
