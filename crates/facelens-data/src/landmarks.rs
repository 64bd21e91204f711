//! Landmark CSVs as shipped in `shared/data/*/landmarks.csv`.
//!
//! Columns (found by header name, so their order may change):
//! `file,status,score,box_x1,box_y1,box_x2,box_y2,lm0_x,lm0_y,...,lm4_x,lm4_y`, with `file` relative
//! to the dataset's images folder. Rows whose status is `nodet` may leave every other field empty.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Detector outcome for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandmarkStatus {
    /// A confident detection.
    Ok,
    /// A detection below the detector's usual confidence; keypoints are still given.
    LowConf,
    /// No face found; the row carries no keypoints.
    NoDet,
}

impl LandmarkStatus {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Self::Ok),
            "lowconf" => Some(Self::LowConf),
            "nodet" => Some(Self::NoDet),
            _ => None,
        }
    }
}

/// One row of a landmark CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct LandmarkRecord {
    /// Path relative to the images folder, with `/` separators.
    pub file: String,
    pub status: LandmarkStatus,
    /// Detector score, when given.
    pub score: Option<f32>,
    /// Face box `[x1, y1, x2, y2]`, when given.
    pub bbox: Option<[f32; 4]>,
    /// The 5 keypoints (left eye, right eye, nose, left and right mouth corner); `None` only for
    /// `nodet` rows.
    pub keypoints: Option<[[f32; 2]; 5]>,
}

/// All rows of a landmark CSV, looked up by relative file path.
#[derive(Debug, Clone, Default)]
pub struct LandmarkTable {
    records: HashMap<String, LandmarkRecord>,
}

const BOX_COLUMNS: [&str; 4] = ["box_x1", "box_y1", "box_x2", "box_y2"];
const LM_COLUMNS: [&str; 10] = [
    "lm0_x", "lm0_y", "lm1_x", "lm1_y", "lm2_x", "lm2_y", "lm3_x", "lm3_y", "lm4_x", "lm4_y",
];

impl LandmarkTable {
    /// Reads and parses a landmark CSV file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = facelens_core::fs::read_to_string(path)
            .map_err(|e| DataError::io(path, "cannot read landmark CSV", e))?;
        Self::parse(&text, path)
    }

    /// Parses CSV text; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let csv_err = |line: usize, message: String| DataError::Csv {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
        let (_, header) = lines
            .next()
            .ok_or_else(|| csv_err(1, "the file is empty (no header line)".into()))?;
        let columns: Vec<&str> = header
            .trim_start_matches('\u{feff}')
            .split(',')
            .map(str::trim)
            .collect();
        let col = |name: &str| {
            columns
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| DataError::MissingColumn {
                    path: path.to_path_buf(),
                    line: 1,
                    column: name.to_string(),
                })
        };
        let file_col = col("file")?;
        let status_col = col("status")?;
        let score_col = col("score")?;
        let box_cols = BOX_COLUMNS.map(col);
        let lm_cols = LM_COLUMNS.map(col);
        let box_cols = collect_cols(box_cols)?;
        let lm_cols = collect_cols(lm_cols)?;

        let mut records = HashMap::new();
        for (line, row) in lines {
            if row.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = row.split(',').map(str::trim).collect();
            if fields.len() != columns.len() {
                return Err(csv_err(
                    line,
                    format!("expected {} fields, found {}", columns.len(), fields.len()),
                ));
            }
            let number = |c: usize| -> Result<Option<f32>> {
                let s = fields[c];
                if s.is_empty() {
                    return Ok(None);
                }
                match s.parse::<f32>() {
                    Ok(v) if v.is_finite() => Ok(Some(v)),
                    _ => Err(csv_err(
                        line,
                        format!("column `{}`: `{s}` is not a finite number", columns[c]),
                    )),
                }
            };
            let file = fields[file_col];
            if file.is_empty() {
                return Err(csv_err(line, "column `file` is empty".into()));
            }
            let status = LandmarkStatus::parse(fields[status_col]).ok_or_else(|| {
                csv_err(
                    line,
                    format!(
                        "column `status`: `{}` is not one of ok, lowconf, nodet",
                        fields[status_col]
                    ),
                )
            })?;
            let score = number(score_col)?;
            let group = |cols: &[usize], what: &str| -> Result<Option<Vec<f32>>> {
                let values = cols
                    .iter()
                    .map(|&c| number(c))
                    .collect::<Result<Vec<_>>>()?;
                match values.iter().position(Option::is_none) {
                    None => Ok(Some(values.into_iter().flatten().collect())),
                    Some(_) if values.iter().all(Option::is_none) => Ok(None),
                    Some(i) => Err(csv_err(
                        line,
                        format!(
                            "column `{}` is empty but other {what} columns are not",
                            columns[cols[i]]
                        ),
                    )),
                }
            };
            let bbox = group(&box_cols, "box")?;
            let keypoints = group(&lm_cols, "keypoint")?
                .map(|v| std::array::from_fn(|i| [v[2 * i], v[2 * i + 1]]));
            if keypoints.is_none() && status != LandmarkStatus::NoDet {
                return Err(csv_err(
                    line,
                    format!(
                        "status is `{}` but the keypoints are empty",
                        fields[status_col]
                    ),
                ));
            }
            let record = LandmarkRecord {
                file: file.to_string(),
                status,
                score,
                bbox: bbox.map(|v| [v[0], v[1], v[2], v[3]]),
                keypoints,
            };
            if records.insert(file.to_string(), record).is_some() {
                return Err(csv_err(line, format!("file `{file}` appears twice")));
            }
        }
        Ok(Self { records })
    }

    /// The row for an image, by its path relative to the images folder (`/` or `\` separators).
    pub fn get(&self, rel: &str) -> Option<&LandmarkRecord> {
        self.records.get(rel).or_else(|| {
            rel.contains('\\')
                .then(|| rel.replace('\\', "/"))
                .and_then(|r| self.records.get(&r))
        })
    }

    /// The row for a relative path.
    pub fn get_path(&self, rel: &Path) -> Option<&LandmarkRecord> {
        let key: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        self.get(&key.join("/"))
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// All rows, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &LandmarkRecord> {
        self.records.values()
    }

    /// Builds a table from records (useful for tests and for detector output).
    pub fn from_records(records: impl IntoIterator<Item = LandmarkRecord>) -> Self {
        Self {
            records: records.into_iter().map(|r| (r.file.clone(), r)).collect(),
        }
    }
}

fn collect_cols<const N: usize>(cols: [Result<usize>; N]) -> Result<[usize; N]> {
    let mut out = [0usize; N];
    for (o, c) in out.iter_mut().zip(cols) {
        *o = c?;
    }
    Ok(out)
}

/// Where a landmark CSV usually lives next to an images folder (`<dataset>/landmarks.csv`).
pub fn default_landmarks_path(images_dir: &Path) -> Option<PathBuf> {
    let p = images_dir.parent()?.join("landmarks.csv");
    p.is_file().then_some(p)
}
