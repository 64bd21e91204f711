//! Experiment configs: TOML file + `--set key.sub=value` overrides → typed struct.
//!
//! Overrides may only replace keys that already exist in the base config.
//! That is deliberate: `--set trian.lr=0.1` must fail loudly instead of
//! silently adding an unused key and running the wrong experiment. The base
//! config is therefore expected to spell out every tunable key.
//!
//! A config may start from another: a top-level `base = "other.toml"` (relative to the config's
//! folder) is loaded first and this file's keys are laid over it, table by table; values that are
//! not tables (numbers, strings, arrays) are replaced whole. So an experiment's variant states only
//! what differs, and the resolved text a run directory records is complete on its own.
//!
//! Every error names the offending key, and deserialization errors carry the
//! full dotted path (via `serde_path_to_error`), e.g.
//! `invalid config value at 'train.lr': invalid type: string "fast", expected f64`.

use std::path::Path;

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use toml::Value;

use crate::error::{Error, Result};

/// Placeholder path in errors for configs parsed from memory.
const IN_MEMORY: &str = "<string>";

/// A fully resolved config: typed value plus the exact TOML it came from.
#[derive(Debug, Clone)]
pub struct ResolvedConfig<T> {
    /// The caller's typed config.
    pub value: T,
    /// The merged TOML tree (base + overrides).
    pub toml: Value,
    /// `toml` rendered as text; this is what a run directory records.
    pub text: String,
    /// [`config_hash`] of `text`.
    pub hash: String,
}

/// How many `base` links a config may follow (a guard against cycles through links).
const MAX_BASE_DEPTH: usize = 16;

/// Reads and parses a TOML file, following `base = "..."` (see the module docs).
pub fn load_toml(path: &Path) -> Result<Value> {
    load_with_bases(path, &mut Vec::new())
}

fn load_with_bases(path: &Path, chain: &mut Vec<std::path::PathBuf>) -> Result<Value> {
    let text = facelens_core::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut value = parse_toml_at(&text, path)?;
    let Some(base) = value.as_table_mut().and_then(|t| t.remove("base")) else {
        return Ok(value);
    };
    let fail = |reason: String| Error::ConfigBase {
        path: path.to_path_buf(),
        reason,
    };
    let Value::String(rel) = base else {
        return Err(fail("expected a file name (a string)".into()));
    };
    let base_path = path.parent().unwrap_or(Path::new(".")).join(&rel);
    let canonical = base_path
        .canonicalize()
        .map_err(|e| fail(format!("{}: {e}", base_path.display())))?;
    if chain.contains(&canonical) {
        return Err(fail(format!("{} is its own base (a cycle)", base_path.display())));
    }
    if chain.len() >= MAX_BASE_DEPTH {
        return Err(fail(format!("more than {MAX_BASE_DEPTH} bases in a chain")));
    }
    chain.push(canonical);
    let mut merged = load_with_bases(&base_path, chain)?;
    lay_over(&mut merged, value);
    Ok(merged)
}

/// Lays `over` onto `into`: tables merge key by key, anything else replaces.
fn lay_over(into: &mut Value, over: Value) {
    match (into, over) {
        (Value::Table(a), Value::Table(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) => lay_over(slot, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Parses TOML text (errors report the path as `<string>`).
pub fn parse_toml(text: &str) -> Result<Value> {
    parse_toml_at(text, Path::new(IN_MEMORY))
}

fn parse_toml_at(text: &str, path: &Path) -> Result<Value> {
    text.parse::<toml::Table>()
        .map(Value::Table)
        .map_err(|source| Error::ConfigParse {
            path: path.to_path_buf(),
            source,
        })
}

/// Applies one `key.sub=value` override in place.
///
/// `value` is parsed as a TOML literal (`3`, `1e-4`, `true`, `"s"`, `[1, 2]`,
/// `{ a = 1 }`); if that fails it is taken as a bare string, so
/// `--set model.backbone=iresnet50` works without quoting. Two coercions keep
/// the resolved config type-stable: an integer replacing a float becomes a
/// float (`lr=1`), and anything replacing a string stays the raw string
/// (`name=2024`). Array elements can be addressed by index (`stages.0=2`).
pub fn apply_override(config: &mut Value, assignment: &str) -> Result<()> {
    let syntax = |reason| Error::OverrideSyntax {
        arg: assignment.to_owned(),
        reason,
    };
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| syntax("expected key=value"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(syntax("empty key"));
    }
    let segments: Vec<&str> = key.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(syntax("empty segment in dotted key"));
    }

    let mut slot = config;
    for (i, seg) in segments.iter().enumerate() {
        let next = match slot {
            Value::Table(t) => t.get_mut(*seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|idx| a.get_mut(idx)),
            _ => None,
        };
        slot = next.ok_or_else(|| Error::UnknownKey {
            key: key.to_owned(),
            missing: segments[..=i].join("."),
        })?;
    }
    *slot = coerce(parse_literal(raw.trim()), raw.trim(), slot);
    Ok(())
}

/// Applies overrides in order; later ones win.
pub fn apply_overrides<I, S>(config: &mut Value, assignments: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    assignments
        .into_iter()
        .try_for_each(|a| apply_override(config, a.as_ref()))
}

/// Parses `raw` as a single TOML value, falling back to a plain string.
fn parse_literal(raw: &str) -> Value {
    // Parse as the right-hand side of a one-key document; requiring exactly
    // one key stops a value containing newlines from smuggling in others.
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) if t.len() == 1 => t
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_owned())),
        _ => Value::String(raw.to_owned()),
    }
}

/// Keeps the override's type consistent with the value it replaces.
fn coerce(new: Value, raw: &str, old: &Value) -> Value {
    match (old, new) {
        (Value::Float(_), Value::Integer(i)) => Value::Float(i as f64),
        (Value::String(_), Value::String(s)) => Value::String(s),
        (Value::String(_), _) => Value::String(raw.to_owned()),
        (_, new) => new,
    }
}

/// Deserializes a TOML tree into `T`; errors carry the dotted key path.
pub fn deserialize<T: DeserializeOwned>(config: Value) -> Result<T> {
    serde_path_to_error::deserialize(config).map_err(|err| Error::ConfigDeserialize {
        key: err.path().to_string(),
        message: err.inner().to_string(),
    })
}

/// Renders a TOML tree as text (the form recorded in a run directory).
pub fn to_toml_string(config: &Value) -> Result<String> {
    toml::to_string(config).map_err(|source| Error::ConfigRender { source })
}

/// Hex SHA-256 of a config text; run directories use its first 8 digits.
pub fn config_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads `path`, applies `overrides`, and deserializes into `T`.
pub fn load<T, I, S>(path: &Path, overrides: I) -> Result<ResolvedConfig<T>>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut toml = load_toml(path)?;
    apply_overrides(&mut toml, overrides)?;
    resolve(toml)
}

/// Like [`load`] for a config already in memory.
pub fn load_str<T, I, S>(text: &str, overrides: I) -> Result<ResolvedConfig<T>>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut toml = parse_toml(text)?;
    apply_overrides(&mut toml, overrides)?;
    resolve(toml)
}

fn resolve<T: DeserializeOwned>(toml: Value) -> Result<ResolvedConfig<T>> {
    let text = to_toml_string(&toml)?;
    let hash = config_hash(&text);
    let value = deserialize(toml.clone())?;
    Ok(ResolvedConfig {
        value,
        toml,
        text,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const BASE: &str = r#"
name = "baseline"

[train]
lr = 0.001
epochs = 10
augment = true
stages = [1, 2, 3]

[model]
backbone = "iresnet50"
"#;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        name: String,
        train: Train,
        model: Model,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Train {
        lr: f64,
        epochs: u32,
        augment: bool,
        stages: Vec<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Model {
        backbone: String,
    }

    #[test]
    fn overrides_are_typed() {
        let cfg: ResolvedConfig<Cfg> = load_str(
            BASE,
            [
                "train.lr=1",
                "train.epochs=3",
                "train.augment=false",
                "train.stages.1=7",
                "model.backbone=vit-tiny",
                "name=2024",
            ],
        )
        .expect("valid overrides");
        assert_eq!(cfg.value.train.lr, 1.0);
        assert_eq!(cfg.value.train.epochs, 3);
        assert!(!cfg.value.train.augment);
        assert_eq!(cfg.value.train.stages, vec![1, 7, 3]);
        assert_eq!(cfg.value.model.backbone, "vit-tiny");
        assert_eq!(cfg.value.name, "2024");
        assert!(cfg.text.contains("lr = 1.0"), "{}", cfg.text);
        assert_eq!(cfg.hash, config_hash(&cfg.text));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_str::<Cfg, _, _>(BASE, ["trian.lr=0.1"]).unwrap_err();
        assert!(
            matches!(&err, Error::UnknownKey { key, missing } if key == "trian.lr" && missing == "trian")
        );
        let err = load_str::<Cfg, _, _>(BASE, ["train.lrr=0.1"]).unwrap_err();
        assert!(err.to_string().contains("'train.lrr'"), "{err}");
        let err = load_str::<Cfg, _, _>(BASE, ["train.lr.x=1"]).unwrap_err();
        assert!(err.to_string().contains("'train.lr.x'"), "{err}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = load_str::<Cfg, _, _>(BASE, ["train.epochs=many"]).unwrap_err();
        match &err {
            Error::ConfigDeserialize { key, .. } => assert_eq!(key, "train.epochs"),
            other => panic!("unexpected error: {other}"),
        }
    }

    #[test]
    fn malformed_overrides() {
        let mut v = parse_toml(BASE).expect("valid base");
        assert!(matches!(
            apply_override(&mut v, "train.lr"),
            Err(Error::OverrideSyntax { .. })
        ));
        assert!(matches!(
            apply_override(&mut v, "=1"),
            Err(Error::OverrideSyntax { .. })
        ));
        assert!(matches!(
            apply_override(&mut v, "train..lr=1"),
            Err(Error::OverrideSyntax { .. })
        ));
    }

    #[test]
    fn literal_parsing() {
        assert_eq!(parse_literal("3"), Value::Integer(3));
        assert_eq!(parse_literal("1e-4"), Value::Float(1e-4));
        assert_eq!(parse_literal("\"quoted\""), Value::String("quoted".into()));
        assert_eq!(parse_literal("bare"), Value::String("bare".into()));
        assert_eq!(parse_literal("1\nx = 2"), Value::String("1\nx = 2".into()));
    }

    #[test]
    fn a_config_inherits_from_its_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("base.toml"), BASE).expect("base");
        std::fs::create_dir(dir.path().join("v")).expect("dir");
        let child = dir.path().join("v/child.toml");
        std::fs::write(&child, "base = \"../base.toml\"\nname = \"child\"\n[train]\nlr = 0.5\nstages = [4]\n")
            .expect("child");
        let t = load_toml(&child).expect("inherits");
        assert_eq!(t.get("base"), None, "the link itself is not part of the resolved config");
        assert_eq!(t["name"].as_str(), Some("child"));
        assert_eq!(t["train"]["lr"].as_float(), Some(0.5));
        assert_eq!(t["train"]["epochs"].as_integer(), Some(10), "untouched keys come from the base");
        assert_eq!(t["train"]["stages"].as_array().map(Vec::len), Some(1), "arrays are replaced whole");
        // Overrides reach inherited keys.
        let mut t = t;
        apply_override(&mut t, "train.epochs=3").expect("inherited key");
        // Cycles and bad links are named.
        let a = dir.path().join("a.toml");
        std::fs::write(&a, "base = \"b.toml\"\n").expect("a");
        std::fs::write(dir.path().join("b.toml"), "base = \"a.toml\"\n").expect("b");
        let err = load_toml(&a).expect_err("cycle").to_string();
        assert!(err.contains("cycle"), "{err}");
        std::fs::write(&a, "base = 3\n").expect("a");
        assert!(load_toml(&a).expect_err("not a string").to_string().contains("base"));
        std::fs::write(&a, "base = \"missing.toml\"\n").expect("a");
        assert!(load_toml(&a).expect_err("missing").to_string().contains("missing.toml"));
    }

    #[test]
    fn hash_is_sha256() {
        assert_eq!(
            config_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
