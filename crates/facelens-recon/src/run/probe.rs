//! Region probing of a trained decoder on aligned faces, written as files: statistics (JSON,
//! CSV) and the panel (PNG). Shared by the end of a training run, `decoder-train probe`,
//! `facelens probe-regions` and the `feature-regions` experiment.

use std::path::Path;

use facelens_models::preprocess::l2_normalise;
use facelens_models::FaceModel;
use image::RgbImage;
use serde::Serialize;

use crate::checkpoint::write_atomic;
use crate::data::EvalFace;
use crate::decoder::Decoder;
use crate::error::{ReconError, Result};
use crate::probe::{region_maps, render_region_panel, ProbeAccumulator, ProbeStats};

use super::results::{write_json, write_png};

/// Files written by [`probe_faces`].
pub const STATS_JSON: &str = "region_stats.json";
pub const MASS_CSV: &str = "region_mass.csv";
pub const TOP_CSV: &str = "top_dimensions.csv";
pub const PANEL_PNG: &str = "region_panel.png";

/// `region_stats.json`.
#[derive(Serialize)]
struct StatsFile<'a> {
    faces: &'a [String],
    regions_doc: &'static str,
    stats: &'a ProbeStats,
}

/// Probes every aligned crop (named by `names`) and writes statistics and the panel into `out`.
/// `progress(done, total)` is called after each face.
#[allow(clippy::too_many_arguments)]
pub fn probe_faces(
    decoder: &Decoder,
    model: &FaceModel,
    names: &[String],
    crops: &[RgbImage],
    top_k: usize,
    batch: usize,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ProbeStats> {
    std::fs::create_dir_all(out).map_err(|e| ReconError::io(out, "cannot create folder", e))?;
    let dim = decoder.config().embedding_dim;
    let mut acc = ProbeAccumulator::new(dim);
    for (i, crop) in crops.iter().enumerate() {
        let e = model.embed_crops(&[crop.as_raw().as_slice()], 1)?;
        let z = l2_normalise(&e[0]);
        acc.add(&region_maps(decoder, &z, batch, &model.device)?)?;
        progress(i + 1, crops.len());
    }
    let stats = acc.finish(top_k);
    let file = StatsFile {
        faces: names,
        regions_doc:
            "see facelens_recon::probe (ellipses around the ArcFace 112x112 template landmarks)",
        stats: &stats,
    };
    write_json(&out.join(STATS_JSON), &file)?;
    write_atomic(&out.join(MASS_CSV), stats.to_csv().as_bytes())?;
    write_atomic(&out.join(TOP_CSV), top_dimensions_csv(&stats).as_bytes())?;
    write_png(
        &out.join(PANEL_PNG),
        &render_region_panel(&acc, &stats, top_k),
    )?;
    Ok(stats)
}

/// One row per region and rank: `region,rank,dim,mean_mass,std_mass,concentration`.
fn top_dimensions_csv(stats: &ProbeStats) -> String {
    let mut top = String::from("region,rank,dim,mean_mass,std_mass,concentration\n");
    for r in &stats.regions {
        for (i, d) in r.top.iter().enumerate() {
            top.push_str(&format!(
                "{},{},{},{:.6},{:.6},{:.4}\n",
                r.region,
                i + 1,
                d.dim,
                d.mean_mass,
                d.std_mass,
                d.concentration
            ));
        }
    }
    top
}

/// Names and source crops of LFW evaluation faces.
pub fn split_faces(faces: &[EvalFace]) -> (Vec<String>, Vec<RgbImage>) {
    faces
        .iter()
        .map(|f| (f.name.clone(), f.source.clone()))
        .unzip()
}
