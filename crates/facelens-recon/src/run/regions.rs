//! The `feature-regions` summary of a probe: per embedding dimension the region it concentrates
//! on most, and a markdown table per region.

use serde::Serialize;

use crate::probe::{ProbeStats, REGIONS};

/// Per dimension: the region it concentrates on most, and how strongly.
#[derive(Debug, Clone, Serialize)]
pub struct Dominant {
    pub dim: usize,
    pub region: &'static str,
    /// Share of the dimension's effect in that region / the region's share of the crop.
    pub concentration: f64,
    pub share: f64,
}

/// One [`Dominant`] per dimension; ties go to the earlier region.
pub fn dominant_regions(stats: &ProbeStats) -> Vec<Dominant> {
    let r = REGIONS.len();
    (0..stats.dim)
        .map(|k| {
            let (j, conc) = (0..r)
                .map(|j| {
                    let area = stats.regions[j].area_fraction.max(1e-12);
                    (j, stats.mass_mean[k * r + j] / area)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                .unwrap_or((r - 1, 0.0));
            Dominant {
                dim: k,
                region: stats.regions[j].region,
                concentration: conc,
                share: stats.mass_mean[k * r + j],
            }
        })
        .collect()
}

/// The markdown summary: per region, its area, how many dimensions concentrate on it most, and
/// its most concentrated dimensions.
pub fn regions_summary(stats: &ProbeStats, dominant: &[Dominant], top_k: usize) -> String {
    let mut s = format!(
        "{} LFW faces, {} dimensions. Concentration = share of a dimension's effect in the region / the region's share of the crop (1 = no preference).\n\n| region | area % | dims dominant here | top dimensions (concentration) |\n|---|---|---|---|\n",
        stats.faces, stats.dim
    );
    for reg in &stats.regions {
        let count = dominant.iter().filter(|d| d.region == reg.region).count();
        let top: Vec<String> = reg
            .top
            .iter()
            .take(top_k)
            .map(|d| format!("{} ({:.2})", d.dim, d.concentration))
            .collect();
        s.push_str(&format!(
            "| {} | {:.1} | {} | {} |\n",
            reg.region,
            100.0 * reg.area_fraction,
            count,
            top.join(", ")
        ));
    }
    let mut strongest: Vec<&Dominant> = dominant.iter().collect();
    strongest.sort_by(|a, b| {
        b.concentration
            .total_cmp(&a.concentration)
            .then(a.dim.cmp(&b.dim))
    });
    let top: Vec<String> = strongest
        .iter()
        .take(12)
        .map(|d| format!("{} -> {} ({:.2})", d.dim, d.region, d.concentration))
        .collect();
    s.push_str("\nMost concentrated dimensions overall: ");
    s.push_str(&top.join(", "));
    s.push('\n');
    s
}
