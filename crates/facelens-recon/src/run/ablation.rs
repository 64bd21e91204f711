//! The `decoder-ablation` experiment: its config (variants as overrides of one training config)
//! and its table, one row per variant run from its [`TrainResults`], as markdown, CSV and
//! TensorBoard scalars.

use std::path::PathBuf;

use facelens_board::SummaryWriter;
use serde::{Deserialize, Serialize};

use crate::error::{ReconError, Result};

use super::results::TrainResults;

/// `experiments/decoder-ablation/*.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationConfig {
    /// decoder-train config that every variant trains from (not `base`: that key is config
    /// inheritance, `facelens_board::config`).
    pub train_config: PathBuf,
    /// Overrides applied to the base before each variant's own.
    #[serde(default)]
    pub set: Vec<String>,
    pub runs_root: PathBuf,
    pub variants: Vec<AblationVariant>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationVariant {
    pub name: String,
    #[serde(default)]
    pub set: Vec<String>,
}

impl AblationConfig {
    /// The variants to train (all, or those named in `only`) with their full override lists;
    /// refuses an empty config, unknown names and a missing base config before anything runs.
    pub fn selected(&self, only: &[String]) -> Result<Vec<(&AblationVariant, Vec<String>)>> {
        if self.variants.is_empty() {
            return Err(ReconError::Config("no [[variants]]".into()));
        }
        if let Some(name) = only
            .iter()
            .find(|n| !self.variants.iter().any(|v| &v.name == *n))
        {
            return Err(ReconError::Config(format!(
                "--only {name}: no such variant"
            )));
        }
        if !self.train_config.is_file() {
            let base = self.train_config.display();
            return Err(ReconError::Config(format!("train_config {base} not found")));
        }
        Ok(self
            .variants
            .iter()
            .filter(|v| only.is_empty() || only.contains(&v.name))
            .map(|v| (v, self.set.iter().chain(&v.set).cloned().collect()))
            .collect())
    }
}

/// One row of the table: a variant's held-out LFW metrics and its cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationRow {
    pub variant: String,
    pub overrides: Vec<String>,
    pub run_dir: PathBuf,
    pub identity_cos: f64,
    /// Threshold name -> type-I success rate.
    pub type1: Vec<(String, f64)>,
    pub type2: Vec<(String, f64)>,
    pub psnr_db: f64,
    pub ssim: f64,
    pub faces: u64,
    pub img_per_s: f64,
    pub train_seconds: f64,
    #[serde(default)]
    pub face_psnr_luma: f64,
    #[serde(default)]
    pub face_ssim_luma: f64,
    #[serde(default)]
    pub checkerboard_ratio: f64,
    /// The judge model's name, identity cosine and type-I rates (absent without a judge).
    #[serde(default)]
    pub judge: Option<(String, f64, Vec<(String, f64)>)>,
}

impl AblationRow {
    pub fn new(variant: &str, overrides: Vec<String>, run_dir: PathBuf, r: &TrainResults) -> Self {
        let rates = |m: &std::collections::BTreeMap<String, f64>| -> Vec<(String, f64)> {
            m.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        Self {
            variant: variant.to_string(),
            overrides,
            run_dir,
            identity_cos: r.eval.identity_cos_mean,
            type1: rates(&r.eval.type1_success),
            type2: rates(&r.eval.type2_success),
            psnr_db: r.eval.psnr_mean,
            ssim: r.eval.ssim_mean,
            faces: r.eval.faces as u64,
            img_per_s: r.images_per_second_this_process,
            train_seconds: r.train_seconds_this_process,
            face_psnr_luma: r.eval.face_psnr_luma_mean,
            face_ssim_luma: r.eval.face_ssim_luma_mean,
            checkerboard_ratio: r.eval.checkerboard_ratio_mean,
            judge: r.eval.cross_model.as_ref().map(|c| (c.model.clone(), c.identity_cos_mean, rates(&c.type1_success))),
        }
    }
}

fn pct(rates: &[(String, f64)]) -> String {
    rates
        .iter()
        .map(|(k, r)| {
            let name = k
                .replace("far_", "FAR ")
                .replace("pct", "%")
                .replace("0_1", "0.1");
            format!("{:.1} % @{name}", 100.0 * r)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table as markdown (header, separator, one line per row).
pub fn ablation_markdown(rows: &[AblationRow]) -> String {
    let mut s = String::from(
        "| variant | identity cos | type I success | type II success | PSNR (dB) | SSIM | face luma PSNR (dB) | face luma SSIM | checkerboard | judge cos | judge type I | LFW faces | img/s | train s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (judge_cos, judge_t1) = match &r.judge {
            Some((m, c, t1)) => (format!("{m} {c:.4}"), pct(t1)),
            None => ("–".into(), "–".into()),
        };
        s.push_str(&format!(
            "| {} | {:.4} | {} | {} | {:.2} | {:.4} | {:.2} | {:.4} | {:.2} | {} | {} | {} | {:.1} | {:.0} |\n",
            r.variant,
            r.identity_cos,
            pct(&r.type1),
            pct(&r.type2),
            r.psnr_db,
            r.ssim,
            r.face_psnr_luma,
            r.face_ssim_luma,
            r.checkerboard_ratio,
            judge_cos,
            judge_t1,
            r.faces,
            r.img_per_s,
            r.train_seconds
        ));
    }
    s
}

/// The table as CSV, with `type1_<name>,type2_<name>` columns for the first row's thresholds.
pub fn ablation_csv(rows: &[AblationRow]) -> String {
    let names: Vec<String> = rows
        .first()
        .map(|r| r.type1.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let mut s = String::from("variant,identity_cos,psnr_db,ssim,faces,img_per_s,train_seconds");
    for n in &names {
        s.push_str(&format!(",type1_{n},type2_{n}"));
    }
    s.push_str(",face_psnr_luma,face_ssim_luma,checkerboard_ratio,judge,judge_identity_cos");
    for n in &names {
        s.push_str(&format!(",judge_type1_{n}"));
    }
    s.push('\n');
    for r in rows {
        s.push_str(&format!(
            "\"{}\",{:.6},{:.4},{:.6},{},{:.3},{:.1}",
            r.variant.replace('"', "'"),
            r.identity_cos,
            r.psnr_db,
            r.ssim,
            r.faces,
            r.img_per_s,
            r.train_seconds
        ));
        for n in &names {
            let get = |v: &[(String, f64)]| {
                v.iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, x)| *x)
                    .unwrap_or(f64::NAN)
            };
            s.push_str(&format!(",{:.6},{:.6}", get(&r.type1), get(&r.type2)));
        }
        let (judge, judge_cos, judge_t1) = match &r.judge {
            Some((m, c, t1)) => (m.as_str(), *c, t1.as_slice()),
            None => ("", f64::NAN, &[][..]),
        };
        s.push_str(&format!(
            ",{:.4},{:.6},{:.4},{judge},{judge_cos:.6}",
            r.face_psnr_luma, r.face_ssim_luma, r.checkerboard_ratio
        ));
        for n in &names {
            let v = judge_t1.iter().find(|(k, _)| k == n).map(|(_, x)| *x).unwrap_or(f64::NAN);
            s.push_str(&format!(",{v:.6}"));
        }
        s.push('\n');
    }
    s
}

/// The markdown table as text and each row's metrics as scalars at step = row index.
pub fn log_ablation(tb: &mut SummaryWriter, rows: &[AblationRow], table: &str) -> Result<()> {
    tb.add_text("ablation/table", table, 0)?;
    for (i, r) in rows.iter().enumerate() {
        let step = i as i64;
        let label = format!("{step}: {} ({})", r.variant, r.run_dir.display());
        tb.add_text("ablation/variant", &label, step)?;
        tb.add_scalar("ablation/identity_cos", r.identity_cos, step)?;
        tb.add_scalar("ablation/psnr_db", r.psnr_db, step)?;
        tb.add_scalar("ablation/ssim", r.ssim, step)?;
        tb.add_scalar("ablation/face_psnr_luma", r.face_psnr_luma, step)?;
        tb.add_scalar("ablation/face_ssim_luma", r.face_ssim_luma, step)?;
        tb.add_scalar("ablation/checkerboard_ratio", r.checkerboard_ratio, step)?;
        if let Some((m, c, _)) = &r.judge {
            tb.add_scalar(&format!("ablation/{m}/identity_cos"), *c, step)?;
        }
        for (k, v) in &r.type1 {
            tb.add_scalar(&format!("ablation/type1_success/{k}"), *v, step)?;
        }
        for (k, v) in &r.type2 {
            tb.add_scalar(&format!("ablation/type2_success/{k}"), *v, step)?;
        }
    }
    Ok(())
}
