//! `facelens explain --pairs LIST`: a list of pairs explained by one process. Each pair gets a
//! folder `NNN-<label>` under `--out` with the files of a single explanation; `summary.csv` and
//! `summary.json` hold one entry per pair and method (score, decision, map mass, seconds, or the
//! error). A pair that fails is reported and the rest go on; the exit status says whether any
//! failed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{word, write, ExplainArgs, ExplainResult, Session};

/// One line of the list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPair {
    /// 1-based line number in the list.
    pub line: usize,
    pub a: PathBuf,
    pub b: PathBuf,
    pub label: Option<String>,
}

/// Longest list accepted: far more pairs than a session explains, small enough to hold in memory.
const MAX_PAIRS: usize = 1_000_000;

/// Parses a pair list: `A B [label]` per line, tab-separated when the line holds a tab, else
/// whitespace-separated; blank lines and `#` comments are skipped; relative paths are taken
/// relative to `base` (the list's folder).
pub fn parse_list(text: &str, list: &Path, base: &Path) -> Result<Vec<ListedPair>> {
    let mut pairs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = if line.contains('\t') {
            line.split('\t').map(str::trim).filter(|f| !f.is_empty()).collect()
        } else {
            line.split_whitespace().collect()
        };
        if !(2..=3).contains(&fields.len()) {
            bail!(
                "{}:{}: expected `A B [label]` (2 or 3 fields, tab-separated when paths hold spaces), found {}",
                list.display(),
                i + 1,
                fields.len()
            );
        }
        if pairs.len() == MAX_PAIRS {
            bail!("{}: more than {MAX_PAIRS} pairs; split the list", list.display());
        }
        let path = |f: &str| if Path::new(f).is_absolute() { PathBuf::from(f) } else { base.join(f) };
        pairs.push(ListedPair { line: i + 1, a: path(fields[0]), b: path(fields[1]), label: fields.get(2).map(|s| s.to_string()) });
    }
    if pairs.is_empty() {
        bail!("{}: no pairs (expected lines `A B [label]`)", list.display());
    }
    Ok(pairs)
}

/// The folder of the `k`-th pair (1-based): `NNN-<label or stems>`, reduced to characters safe
/// in a file name.
fn folder(k: usize, pair: &ListedPair) -> String {
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = pair.label.clone().unwrap_or_else(|| format!("{}_{}", stem(&pair.a), stem(&pair.b)));
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).take(80).collect();
    format!("{k:03}-{}", safe.trim_start_matches('.'))
}

#[derive(Serialize)]
struct Entry {
    index: usize,
    line: usize,
    label: Option<String>,
    a: String,
    b: String,
    /// The pair's folder under --out (absent when it failed).
    folder: Option<String>,
    error: Option<String>,
    seconds: f64,
    result: Option<ExplainResult>,
}

pub fn run(session: &Session, list: &Path, a: &ExplainArgs, t0: Instant) -> Result<()> {
    let text = facelens_core::fs::read_to_string(list).with_context(|| format!("cannot read pair list {}", list.display()))?;
    let base = list.parent().unwrap_or(Path::new(""));
    let pairs = parse_list(&text, list, base)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let load_s = t0.elapsed().as_secs_f64();

    let bar = facelens_board::progress::bar(pairs.len() as u64).with_message("explaining pairs");
    let mut entries = Vec::with_capacity(pairs.len());
    for (i, pair) in pairs.iter().enumerate() {
        let t = Instant::now();
        let name = folder(i + 1, pair);
        let mut notes = Vec::new();
        let outcome = session
            .explain(&pair.a, &pair.b, (a.face_a, a.face_b), Instant::now(), &mut |n| notes.push(n))
            .and_then(|done| write(&a.out.join(&name), &done).map(|()| done.result));
        for n in notes {
            bar.suspend(|| eprintln!("pair {} (line {}): {n}", i + 1, pair.line));
        }
        let (folder, error, result) = match outcome {
            Ok(r) => (Some(name), None, Some(r)),
            Err(e) => {
                let msg = format!("{e:#}");
                bar.suspend(|| eprintln!("pair {} (line {} of {}) failed: {msg}", i + 1, pair.line, list.display()));
                (None, Some(msg), None)
            }
        };
        entries.push(Entry {
            index: i + 1,
            line: pair.line,
            label: pair.label.clone(),
            a: pair.a.display().to_string(),
            b: pair.b.display().to_string(),
            folder,
            error,
            seconds: t.elapsed().as_secs_f64(),
            result,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();

    crate::output::write_atomic(&a.out.join("summary.csv"), summary_csv(&entries).as_bytes())?;
    crate::output::write_json(&a.out.join("summary.json"), &entries)?;
    let failed = entries.iter().filter(|e| e.error.is_some()).count();
    let wall = t0.elapsed().as_secs_f64();
    let explained = entries.iter().filter(|e| e.error.is_none()).map(|e| e.seconds).sum::<f64>();
    eprintln!(
        "explained {} of {} pairs into {} ({:.2} s per pair, {:.1} s loading, {:.1} s in all); summary.csv",
        pairs.len() - failed,
        pairs.len(),
        a.out.display(),
        explained / (pairs.len() - failed).max(1) as f64,
        load_s,
        wall
    );
    if failed > 0 {
        bail!("{failed} of {} pairs failed (see the `error` column of {})", pairs.len(), a.out.join("summary.csv").display());
    }
    Ok(())
}

/// One row per pair and method; a failed pair has one row with its error.
fn summary_csv(entries: &[Entry]) -> String {
    let mut s = String::from("index,line,label,a,b,method,score,threshold,decision,sa_pos,sa_neg,sb_pos,sb_neg,seconds,folder,error\n");
    let q = |v: &str| if v.contains([',', '"', '\n']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_string() };
    for e in entries {
        let head = format!("{},{},{},{},{}", e.index, e.line, q(e.label.as_deref().unwrap_or("")), q(&e.a), q(&e.b));
        match &e.result {
            Some(r) => {
                for m in &r.methods {
                    let mass = |k: &str| m.map_mass.get(k).copied().unwrap_or(f64::NAN);
                    s.push_str(&format!(
                        "{head},{},{},{},{},{},{},{},{},{:.3},{},\n",
                        q(&m.method),
                        r.score,
                        r.threshold,
                        word(r.decision),
                        mass("sa_pos"),
                        mass("sa_neg"),
                        mass("sb_pos"),
                        mass("sb_neg"),
                        m.seconds,
                        q(e.folder.as_deref().unwrap_or("")),
                    ));
                }
            }
            None => s.push_str(&format!("{head},,,,,,,,,{:.3},,{}\n", e.seconds, q(e.error.as_deref().unwrap_or("")))),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_labels_comments_tabs_and_relative_paths() {
        let text = "# a comment\n\na.jpg b.jpg\n/x/c d.jpg\te.jpg\tsame person\r\n  f.png g.png  impostor \n";
        let pairs = parse_list(text, Path::new("l.txt"), Path::new("/data")).expect("parses");
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0], ListedPair { line: 3, a: "/data/a.jpg".into(), b: "/data/b.jpg".into(), label: None });
        assert_eq!(pairs[1].a, PathBuf::from("/x/c d.jpg"));
        assert_eq!(pairs[1].label.as_deref(), Some("same person"));
        assert_eq!((pairs[2].line, pairs[2].label.as_deref()), (5, Some("impostor")));
        assert_eq!(folder(2, &pairs[1]), "002-same_person");
        assert_eq!(folder(1, &pairs[0]), "001-a_b");
    }

    #[test]
    fn bad_lists_are_refused_naming_the_line() {
        let err = parse_list("a.jpg b.jpg\nonly-one\n", Path::new("l.txt"), Path::new("")).unwrap_err().to_string();
        assert!(err.contains("l.txt:2") && err.contains("found 1"), "{err}");
        let err = parse_list("a b c d\n", Path::new("l.txt"), Path::new("")).unwrap_err().to_string();
        assert!(err.contains("l.txt:1") && err.contains("found 4"), "{err}");
        let err = parse_list("# nothing\n\n", Path::new("l.txt"), Path::new("")).unwrap_err().to_string();
        assert!(err.contains("no pairs"), "{err}");
    }
}
