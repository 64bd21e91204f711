//! One table per backbone over the explanation views of docs/design.md §8.1: Deletion/Insertion
//! (grey fill), ROAD (Rong et al., ICML 2022), ground-truth patches and model-parameter
//! randomisation (Adebayo et al., NeurIPS 2018), read from the per-pair files of the `facelens eval`
//! commands, with paired percentile-bootstrap intervals of a reference method against each other
//! method on the pairs both scored.
//!
//! A folder holds, for one backbone (any part may be missing; its columns are empty then):
//! `xfv-grey/<method>.jsonl` and `xfv-road/<method>.jsonl` (`eval xfv --per-pair`),
//! `sanity/<method>.jsonl` (the `per-pair.jsonl` of `eval sanity`) and `patch/*.jsonl` (the
//! `per-pair.jsonl` of `eval patch` runs; several merge).

use std::collections::BTreeMap;
use std::path::Path;

use facelens_core::rng::Xoshiro256;
use serde_json::Value;

use crate::error::{Error, Result};

/// Where a column's per-pair values come from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `(folder, kind of map, curve)` of `eval xfv` files.
    Xfv(&'static str, &'static str, &'static str),
    /// A field of each method's scores in `eval patch` files.
    Patch(&'static str),
    /// Spearman correlation at the last cascading step ("all layers randomised").
    Sanity,
    /// Seconds per explanation, from every `eval xfv` file: per pair, the mean over the files
    /// that explained it (a pair served from `--maps` repeats the seconds of its explanation).
    Seconds,
}

/// A column of the table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    /// TensorBoard tag of the column's means.
    pub tag: &'static str,
    pub higher_is_better: bool,
    source: Source,
}

const fn col(name: &'static str, tag: &'static str, higher_is_better: bool, source: Source) -> Column {
    Column { name, tag, higher_is_better, source }
}

pub const COLUMNS: [Column; 13] = [
    col("sim Del", "grey/similarity/deletion", false, Source::Xfv("xfv-grey", "similarity", "deletion")),
    col("sim Ins", "grey/similarity/insertion", true, Source::Xfv("xfv-grey", "similarity", "insertion")),
    col("dis Del", "grey/dissimilarity/deletion", false, Source::Xfv("xfv-grey", "dissimilarity", "deletion")),
    col("dis Ins", "grey/dissimilarity/insertion", true, Source::Xfv("xfv-grey", "dissimilarity", "insertion")),
    col("sim MoRF", "road/similarity/morf", false, Source::Xfv("xfv-road", "similarity", "deletion")),
    col("sim LeRF", "road/similarity/lerf", true, Source::Xfv("xfv-road", "similarity", "insertion")),
    col("dis MoRF", "road/dissimilarity/morf", false, Source::Xfv("xfv-road", "dissimilarity", "deletion")),
    col("dis LeRF", "road/dissimilarity/lerf", true, Source::Xfv("xfv-road", "dissimilarity", "insertion")),
    col("patch PG", "patch/pointing_game", true, Source::Patch("pointing_game")),
    col("patch mass", "patch/mass_in_patch", true, Source::Patch("mass_in_patch")),
    col("patch AUC", "patch/auc", true, Source::Patch("auc")),
    col("rand. Spearman (all)", "sanity/spearman_all_layers", false, Source::Sanity),
    col("s / expl.", "seconds_per_explanation", false, Source::Seconds),
];

/// Per column, per method, per pair (its pair-list line): a value.
pub type Values = Vec<BTreeMap<String, BTreeMap<String, f64>>>;

/// Reads every per-pair file under `root`; `patch_dir` names the patch folder (`patch`, or e.g.
/// `patch-reject` for `--reject-only` runs).
pub fn load(root: &Path, patch_dir: &str) -> Result<Values> {
    if !root.is_dir() {
        return Err(Error::invalid(root, "not a folder of per-pair files"));
    }
    let mut values: Values = vec![BTreeMap::new(); COLUMNS.len()];
    let mut seconds: BTreeMap<(String, u64), (f64, u32)> = BTreeMap::new();
    for (c, column) in COLUMNS.iter().enumerate() {
        let folders = match column.source {
            Source::Xfv(folder, ..) => vec![folder],
            Source::Patch(_) => vec![patch_dir],
            Source::Sanity => vec!["sanity"],
            Source::Seconds => vec!["xfv-grey", "xfv-road"],
        };
        for folder in folders {
            for (path, stem) in jsonl_files(&root.join(folder))? {
                for (n, row) in read_rows(&path)? {
                    let bad = |what: &str| Error::invalid(&path, format!("line {n}: {what}"));
                    let line = row.get("line").and_then(Value::as_u64).ok_or_else(|| bad("no pair-list `line`"))?;
                    let number = |v: Option<&Value>, what: &str| v.and_then(Value::as_f64).filter(|x| x.is_finite()).ok_or_else(|| bad(what));
                    match column.source {
                        Source::Xfv(_, kind, mode) => {
                            if row.get("kind").and_then(Value::as_str) == Some(kind) {
                                let v = number(row.get(mode), mode)?;
                                values[c].entry(stem.clone()).or_default().insert(line.to_string(), v);
                            }
                        }
                        Source::Seconds => {
                            let v = number(row.get("seconds"), "seconds")?;
                            let (sum, n) = seconds.entry((stem.clone(), line)).or_insert((0.0, 0));
                            (*sum, *n) = (*sum + v, *n + 1);
                        }
                        Source::Sanity => {
                            let last = row.get("cascading").and_then(Value::as_array).and_then(|s| s.last());
                            let v = number(last.and_then(|s| s.get("spearman")), "cascading spearman")?;
                            values[c].entry(stem.clone()).or_default().insert(line.to_string(), v);
                        }
                        Source::Patch(field) => {
                            let methods = row.get("methods").and_then(Value::as_object).ok_or_else(|| bad("no `methods`"))?;
                            for (method, scores) in methods {
                                let v = scores.get(field);
                                let v = match v.and_then(Value::as_bool) {
                                    Some(b) => f64::from(u8::from(b)),
                                    None => number(v, field)?,
                                };
                                values[c].entry(method.clone()).or_default().insert(line.to_string(), v);
                            }
                        }
                    }
                }
            }
        }
    }
    let c = COLUMNS.iter().position(|c| matches!(c.source, Source::Seconds)).expect("a seconds column");
    for ((method, line), (sum, n)) in seconds {
        values[c].entry(method).or_default().insert(line.to_string(), sum / f64::from(n));
    }
    Ok(values)
}

/// `*.jsonl` files of `dir` with their stems, sorted; none when `dir` does not exist.
fn jsonl_files(dir: &Path) -> Result<Vec<(std::path::PathBuf, String)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, "listing per-pair files", e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, "listing per-pair files", e))?.path();
        if let (Some(stem), Some("jsonl")) = (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str())) {
            out.push((path.clone(), stem.to_string()));
        }
    }
    out.sort();
    Ok(out)
}

/// The JSON objects of a JSON-lines file with their 1-based line numbers (blank lines skipped).
fn read_rows(path: &Path) -> Result<Vec<(usize, Value)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "reading per-pair results", e))?;
    let mut rows = Vec::new();
    for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(l).map_err(|e| Error::invalid(path, format!("line {}: {e}", i + 1)))?;
        rows.push((i + 1, v));
    }
    Ok(rows)
}

/// The rows' order: the reference first, the random baseline last, the others by name.
pub fn methods(values: &Values, reference: &str) -> Vec<String> {
    let mut m: Vec<String> = values.iter().flat_map(|c| c.keys().cloned()).collect();
    m.sort_by_key(|m| (m != reference, m == "random", m.clone()));
    m.dedup();
    m
}

/// Mean and count of one cell, `None` when nothing was measured.
pub fn cell(values: &Values, column: usize, method: &str) -> Option<(f64, usize)> {
    let d = values[column].get(method).filter(|d| !d.is_empty())?;
    Some((d.values().sum::<f64>() / d.len() as f64, d.len()))
}

/// A paired difference: `reference - other` over the pairs both scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub pairs: usize,
    pub mean: f64,
    /// 95 % percentile-bootstrap interval of the mean.
    pub low: f64,
    pub high: f64,
}

/// Mean of `x[k] - y[k]` over the keys both hold, with its 95 % percentile-bootstrap interval
/// (`resamples` resamples of the pairs, seeded); `None` when no key is shared.
pub fn paired_interval(x: &BTreeMap<String, f64>, y: &BTreeMap<String, f64>, resamples: usize, rng: &mut Xoshiro256) -> Option<Interval> {
    let diffs: Vec<f64> = x.iter().filter_map(|(k, a)| y.get(k).map(|b| a - b)).collect();
    let n = diffs.len();
    if n == 0 || resamples == 0 {
        return None;
    }
    let mut means: Vec<f64> =
        (0..resamples).map(|_| (0..n).map(|_| diffs[rng.below(n as u64) as usize]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let (low, high) = ((0.025 * resamples as f64) as usize, ((0.975 * resamples as f64) as usize).saturating_sub(1));
    Some(Interval { pairs: n, mean: diffs.iter().sum::<f64>() / n as f64, low: means[low], high: means[high.max(low)] })
}

/// Per method other than the reference, per column: the reference minus the method.
pub fn intervals(values: &Values, reference: &str, resamples: usize, seed: u64) -> Vec<(String, Vec<Option<Interval>>)> {
    let mut rng = Xoshiro256::new(seed);
    let empty = BTreeMap::new();
    methods(values, reference)
        .into_iter()
        .filter(|m| m != reference)
        .map(|m| {
            let cells = (0..COLUMNS.len())
                .map(|c| {
                    let r = values[c].get(reference).unwrap_or(&empty);
                    paired_interval(r, values[c].get(&m).unwrap_or(&empty), resamples, &mut rng)
                })
                .collect();
            (m, cells)
        })
        .collect()
}

/// The table as Markdown (cells: mean with the number of pairs).
pub fn table_markdown(values: &Values, reference: &str) -> String {
    let mut s = format!("| method | {} |\n|---|{}\n", COLUMNS.map(|c| c.name).join(" | "), "---:|".repeat(COLUMNS.len()));
    for m in methods(values, reference) {
        let cells: Vec<String> =
            (0..COLUMNS.len()).map(|c| cell(values, c, &m).map_or_else(String::new, |(v, n)| format!("{v:.3} ({n})"))).collect();
        s += &format!("| {m} | {} |\n", cells.join(" | "));
    }
    s
}

/// The table as CSV: per column, its mean and its number of pairs.
pub fn table_csv(values: &Values, reference: &str) -> String {
    let mut s = String::from("method");
    for c in COLUMNS {
        s += &format!(",{0},{0} pairs", c.name);
    }
    s.push('\n');
    for m in methods(values, reference) {
        s += &m;
        for c in 0..COLUMNS.len() {
            match cell(values, c, &m) {
                Some((v, n)) => s += &format!(",{v:.4},{n}"),
                None => s += ",,0",
            }
        }
        s.push('\n');
    }
    s
}

/// The intervals as Markdown, with the sign that favours the reference per column.
pub fn intervals_markdown(rows: &[(String, Vec<Option<Interval>>)], reference: &str, resamples: usize) -> String {
    let heads: Vec<String> = COLUMNS.iter().map(|c| format!("{} ({})", c.name, if c.higher_is_better { '+' } else { '-' })).collect();
    let mut s = format!(
        "{reference} minus each method on the pairs both scored: mean and 95 % percentile-bootstrap interval \
         ({resamples} resamples). The sign that favours {reference} is given per column.\n\n| method | {} |\n|---|{}\n",
        heads.join(" | "),
        "---|".repeat(COLUMNS.len())
    );
    for (m, cells) in rows {
        let cells: Vec<String> = cells
            .iter()
            .map(|i| i.map_or_else(String::new, |i| format!("{:+.3} [{:+.3}, {:+.3}] ({})", i.mean, i.low, i.high, i.pairs)))
            .collect();
        s += &format!("| {m} | {} |\n", cells.join(" | "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, rows: &[Value]) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, rows.iter().map(|r| format!("{r}\n")).collect::<String>()).unwrap();
    }

    fn xfv(line: u64, kind: &str, deletion: f64, insertion: f64) -> Value {
        serde_json::json!({ "line": line, "kind": kind, "seconds": 2.0, "deletion": deletion, "insertion": insertion })
    }

    #[test]
    fn cells_are_per_kind_means_and_intervals_pair_the_shared_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // fggb beats other by exactly 10 on every similarity pair; other has one extra pair.
        write(d, "xfv-grey/fggb.jsonl", &[xfv(1, "similarity", 20.0, 90.0), xfv(2, "similarity", 30.0, 80.0), xfv(3, "dissimilarity", 50.0, 70.0)]);
        write(d, "xfv-grey/other.jsonl", &[xfv(1, "similarity", 30.0, 90.0), xfv(2, "similarity", 40.0, 80.0), xfv(9, "similarity", 0.0, 0.0)]);
        write(d, "sanity/other.jsonl", &[serde_json::json!({ "line": 1, "kind": "similarity", "cascading": [{ "spearman": 0.9, "ssim": 0.9 }, { "spearman": 0.25, "ssim": 0.1 }] })]);
        write(d, "patch/run.jsonl", &[serde_json::json!({ "line": 7, "methods": { "fggb": { "pointing_game": true, "mass_in_patch": 0.5, "auc": 0.9 }, "other": { "pointing_game": false, "mass_in_patch": 0.1, "auc": 0.6 } } })]);
        let v = load(d, "patch").unwrap();
        let col = |name: &str| COLUMNS.iter().position(|c| c.name == name).unwrap();
        assert_eq!(cell(&v, col("sim Del"), "fggb"), Some((25.0, 2)));
        assert_eq!(cell(&v, col("sim Del"), "other"), Some((70.0 / 3.0, 3)));
        assert_eq!(cell(&v, col("dis Ins"), "fggb"), Some((70.0, 1)));
        assert_eq!(cell(&v, col("dis Ins"), "other"), None);
        assert_eq!(cell(&v, col("sim MoRF"), "fggb"), None, "no ROAD files");
        assert_eq!(cell(&v, col("rand. Spearman (all)"), "other"), Some((0.25, 1)), "the last cascading step");
        assert_eq!(cell(&v, col("patch PG"), "fggb"), Some((1.0, 1)));
        assert_eq!(cell(&v, col("patch PG"), "other"), Some((0.0, 1)));
        assert_eq!(cell(&v, col("s / expl."), "fggb"), Some((2.0, 3)));
        // A pair in both the grey and the ROAD folder is one pair, its seconds averaged.
        write(d, "xfv-road/fggb.jsonl", &[serde_json::json!({ "line": 1, "kind": "similarity", "seconds": 4.0, "deletion": 1.0, "insertion": 2.0 })]);
        let v = load(d, "patch").unwrap();
        assert_eq!(cell(&v, col("s / expl."), "fggb"), Some((7.0 / 3.0, 3)));
        write(d, "xfv-road/fggb.jsonl", &[]);
        let v = load(d, "patch").unwrap();
        assert_eq!(methods(&v, "fggb"), ["fggb", "other"]);

        let rows = intervals(&v, "fggb", 500, 0);
        assert_eq!(rows.len(), 1);
        let sim_del = rows[0].1[col("sim Del")].unwrap();
        // A constant difference has a degenerate interval at it; line 9 is not shared.
        assert_eq!(sim_del, Interval { pairs: 2, mean: -10.0, low: -10.0, high: -10.0 });
        assert_eq!(rows[0].1[col("sim Ins")].unwrap().mean, 0.0);
        assert!(rows[0].1[col("dis Del")].is_none(), "nothing shared");
        let md = table_markdown(&v, "fggb");
        assert!(md.lines().nth(2).unwrap().starts_with("| fggb | 25.000 (2) |"), "{md}");
        assert!(intervals_markdown(&rows, "fggb", 500).contains("-10.000 [-10.000, -10.000] (2)"));
        let csv = table_csv(&v, "fggb");
        assert!(csv.lines().nth(1).unwrap().starts_with("fggb,25.0000,2,"), "{csv}");
    }

    #[test]
    fn bootstrap_intervals_cover_the_mean_and_are_seeded() {
        let x: BTreeMap<String, f64> = (0..40).map(|i| (i.to_string(), f64::from(i % 7))).collect();
        let y: BTreeMap<String, f64> = (0..40).map(|i| (i.to_string(), f64::from(i % 3))).collect();
        let a = paired_interval(&x, &y, 2000, &mut Xoshiro256::new(3)).unwrap();
        assert!(a.low < a.mean && a.mean < a.high, "{a:?}");
        assert_eq!(Some(a), paired_interval(&x, &y, 2000, &mut Xoshiro256::new(3)));
        assert!(paired_interval(&x, &BTreeMap::new(), 2000, &mut Xoshiro256::new(3)).is_none());
    }

    #[test]
    fn a_malformed_row_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "xfv-road/fggb.jsonl", &[xfv(1, "similarity", 1.0, 2.0), serde_json::json!({ "kind": "similarity" })]);
        let e = load(dir.path(), "patch").unwrap_err().to_string();
        assert!(e.contains("fggb.jsonl") && e.contains("line 2") && e.contains("line"), "{e}");
        std::fs::write(dir.path().join("xfv-road/fggb.jsonl"), "{not json\n").unwrap();
        let e = load(dir.path(), "patch").unwrap_err().to_string();
        assert!(e.contains("fggb.jsonl") && e.contains("line 1"), "{e}");
        assert!(load(&dir.path().join("missing"), "patch").unwrap_err().to_string().contains("missing"));
    }
}
