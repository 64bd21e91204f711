//! LFW View-2 pair lists (`pairs.txt`).
//!
//! Format: a header `folds pairs_per_class` (View 2: `10 300`; a single number means one fold), then
//! for every fold `pairs_per_class` genuine lines `name i j` followed by as many impostor lines
//! `name1 i name2 j`, fields separated by tabs or spaces. Image `i` of `name` is
//! `name/name_{i:04}.jpg` under the images folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// One verification pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// First image, relative to the images folder (e.g. `Name/Name_0001.jpg`).
    pub a: PathBuf,
    /// Second image, relative to the images folder.
    pub b: PathBuf,
    /// Same identity?
    pub genuine: bool,
    /// Fold index, 0-based.
    pub fold: usize,
    /// 1-based line in the pair list, for error messages.
    pub line: usize,
}

/// The relative path of image `index` (1-based) of `name` in the LFW layout.
pub fn lfw_image_path(name: &str, index: u32) -> PathBuf {
    PathBuf::from(name).join(format!("{name}_{index:04}.jpg"))
}

/// Reads and parses a pair list.
pub fn load_pairs(path: &Path) -> Result<Vec<Pair>> {
    let text = facelens_core::fs::read_to_string(path)
        .map_err(|e| DataError::io(path, "cannot read pair list", e))?;
    parse_pairs(&text, path)
}

/// Parses pair-list text; `path` names the source in errors.
pub fn parse_pairs(text: &str, path: &Path) -> Result<Vec<Pair>> {
    let err = |line: usize, message: String| DataError::Pairs {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let (hline, header) = lines
        .next()
        .ok_or_else(|| err(1, "the pair list is empty".into()))?;
    let counts = header
        .split_whitespace()
        .map(|f| f.parse::<usize>().ok().filter(|&n| n > 0))
        .collect::<Option<Vec<_>>>();
    let (folds, per_class) = match counts.as_deref() {
        Some([n]) => (1, *n),
        Some([f, n]) => (*f, *n),
        _ => {
            return Err(err(
                hline,
                format!("expected a header `folds pairs_per_class` of positive integers (e.g. `10 300`), found `{header}`"),
            ))
        }
    };
    let expected = folds
        .checked_mul(per_class)
        .and_then(|n| n.checked_mul(2))
        .ok_or_else(|| {
            err(
                hline,
                format!("header `{header}` asks for an absurd number of pairs"),
            )
        })?;

    let mut pairs = Vec::with_capacity(expected.min(1 << 20));
    let mut last_line = hline;
    for (line, content) in lines {
        last_line = line;
        let k = pairs.len();
        if k == expected {
            return Err(err(
                line,
                format!("unexpected extra line: the header promises {expected} pairs ({folds} folds x 2 x {per_class})"),
            ));
        }
        let fold = k / (2 * per_class);
        let genuine = k % (2 * per_class) < per_class;
        let fields: Vec<&str> = content.split_whitespace().collect();
        let (a, b) = match (genuine, fields.as_slice()) {
            (true, [name, i, j]) => {
                let name = parse_name(name).map_err(|m| err(line, m))?;
                let i = parse_index(i).map_err(|m| err(line, m))?;
                let j = parse_index(j).map_err(|m| err(line, m))?;
                (lfw_image_path(name, i), lfw_image_path(name, j))
            }
            (false, [n1, i, n2, j]) => {
                let n1 = parse_name(n1).map_err(|m| err(line, m))?;
                let n2 = parse_name(n2).map_err(|m| err(line, m))?;
                let i = parse_index(i).map_err(|m| err(line, m))?;
                let j = parse_index(j).map_err(|m| err(line, m))?;
                (lfw_image_path(n1, i), lfw_image_path(n2, j))
            }
            _ => {
                let (kind, shape) = if genuine {
                    ("a genuine", "`name i j`")
                } else {
                    ("an impostor", "`name1 i name2 j`")
                };
                return Err(err(
                    line,
                    format!(
                        "expected {kind} line {shape} (fold {}, pair {} of the fold), found {} fields: `{content}`",
                        fold + 1,
                        k % (2 * per_class) + 1,
                        fields.len()
                    ),
                ));
            }
        };
        pairs.push(Pair {
            a,
            b,
            genuine,
            fold,
            line,
        });
    }
    if pairs.len() != expected {
        return Err(err(
            last_line + 1,
            format!(
                "the header promises {expected} pairs ({folds} folds x 2 x {per_class}) but the list ends after {}",
                pairs.len()
            ),
        ));
    }
    Ok(pairs)
}

fn parse_name(s: &str) -> std::result::Result<&str, String> {
    // A name is a folder name; anything that could escape the images folder is malformed.
    if s.contains(['/', '\\']) || s == "." || s == ".." {
        return Err(format!("`{s}` is not a valid person name"));
    }
    Ok(s)
}

fn parse_index(s: &str) -> std::result::Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| format!("`{s}` is not a positive image number"))
}

/// Checks that every image referenced by `pairs` exists under `images_dir`.
///
/// Reports the first problem with the pair list's line: a name without a folder
/// ([`DataError::UnknownName`]) or a missing image number ([`DataError::MissingImage`]).
pub fn check_pair_images(pairs: &[Pair], pairs_path: &Path, images_dir: &Path) -> Result<()> {
    let mut known_dirs: HashMap<PathBuf, bool> = HashMap::new();
    for pair in pairs {
        for rel in [&pair.a, &pair.b] {
            let Some(name_dir) = rel.parent() else {
                continue;
            };
            let dir = images_dir.join(name_dir);
            let exists = *known_dirs
                .entry(dir.clone())
                .or_insert_with(|| dir.is_dir());
            if !exists {
                return Err(DataError::UnknownName {
                    path: pairs_path.to_path_buf(),
                    line: pair.line,
                    name: name_dir.to_string_lossy().into_owned(),
                    dir,
                });
            }
            let image = images_dir.join(rel);
            if !image.is_file() {
                return Err(DataError::MissingImage {
                    path: pairs_path.to_path_buf(),
                    line: pair.line,
                    image,
                });
            }
        }
    }
    Ok(())
}
