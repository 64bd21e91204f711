//! Methods side by side: the first figure of an explainability comparison. One row per method,
//! columns A's similarity and dissimilarity maps then B's, the faces once above them.
//!
//! Each row has its own colour scale (shared by its four maps): methods measure evidence in
//! different units (gradient magnitudes, score differences, uniform noise), so one scale across
//! rows would show the method with the largest numbers and blank the rest; within a row, similarity
//! and dissimilarity stay comparable, as in the single-method panel.

use image::{imageops, RgbImage};

use super::{
    finite_max, header, label, label_width, number, overlay, prepare, shared_scale, turbo, PanelInfo, GAP, GLYPH, INK, LINE, MARGIN,
    MUTED, WHITE,
};
use crate::SaliencyMaps;

/// One method's maps and what they cost.
#[derive(Debug, Clone, Copy)]
pub struct MethodRow<'a> {
    pub method: &'a str,
    pub maps: &'a SaliencyMaps,
    pub seconds: f64,
}

const TITLES: [&str; 4] = ["similarity", "dissimilarity", "similarity", "dissimilarity"];

/// Where things go in a comparison panel of `rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComparisonLayout {
    /// Map size (`h x w`), drawn at 2x.
    pub h: usize,
    pub w: usize,
    /// Left edge of the map grid (after the row labels).
    pub grid_x: u32,
    pub faces_y: u32,
    pub titles_y: u32,
    pub grid_y: u32,
}

impl ComparisonLayout {
    pub fn new(rows: &[MethodRow<'_>]) -> Self {
        let (h, w) = rows.first().map_or((112, 112), |r| (r.maps.height, r.maps.width));
        // Room for the longest method name and for "max <number>" (at most 13 characters).
        let label_w = rows
            .iter()
            .map(|r| label_width(r.method))
            .chain([label_width("max -9.99e-99"), label_width("faces")])
            .max()
            .unwrap_or(0);
        let faces_y = MARGIN + 2 * LINE + 10;
        let titles_y = faces_y + 2 * h as u32 + GAP;
        Self { h, w, grid_x: MARGIN + label_w + GAP, faces_y, titles_y, grid_y: titles_y + 2 * LINE }
    }

    /// Pixel rectangle `(x, y, width, height)` of the map of `row` (a method) and `col`
    /// (0 = A similarity, 1 = A dissimilarity, 2 = B similarity, 3 = B dissimilarity).
    pub fn cell(&self, row: usize, col: usize) -> (u32, u32, u32, u32) {
        let (cw, ch) = (2 * self.w as u32, 2 * self.h as u32);
        let x = self.grid_x + col as u32 * (cw + GAP) + if col >= 2 { GAP } else { 0 };
        (x, self.grid_y + row as u32 * (ch + GAP), cw, ch)
    }
}

/// The comparison panel of `rows` for the pair `face_a`, `face_b` (aligned crops; maps at their
/// size, drawn at 2x). `info.method` is ignored; the header names the model and says that the
/// scale is per row. `blur` smooths the maps for display only.
pub fn render_comparison(
    face_a: &RgbImage,
    face_b: &RgbImage,
    rows: &[MethodRow<'_>],
    info: &PanelInfo,
    blur: bool,
) -> RgbImage {
    let layout = ComparisonLayout::new(rows);
    let (h, w) = (layout.h, layout.w);
    let (cw, ch) = (2 * w as u32, 2 * h as u32);
    let prepared: Vec<(Vec<Vec<f32>>, f32)> = rows
        .iter()
        .map(|r| {
            let maps = prepare(r.maps, blur);
            let scale = shared_scale(&maps);
            (maps, scale)
        })
        .collect();
    let row_labels: Vec<[String; 3]> = rows
        .iter()
        .zip(&prepared)
        .map(|(r, (maps, _))| {
            // The true maximum: a blank row says 0 (its drawing scale is 1 only to stay blank).
            let max = maps.iter().map(|m| finite_max(m)).fold(0.0, f32::max);
            [r.method.to_string(), format!("{:.2} s", r.seconds), format!("max {}", number(max))]
        })
        .collect();
    let col_x = |c: u32| layout.cell(0, c as usize).0;

    let mut sub = format!("model {}   colour scale per row (0 .. row max)", info.model);
    if blur {
        sub.push_str("   (maps blurred for display)");
    }
    let (faces_y, titles_y, grid_y) = (layout.faces_y, layout.titles_y, layout.grid_y);
    let width = (col_x(3) + cw).max(MARGIN + label_width(&sub)) + MARGIN;
    let height = grid_y + rows.len() as u32 * (ch + GAP) + LINE + MARGIN;
    let mut img = RgbImage::from_pixel(width, height, WHITE);
    header(&mut img, info, &sub);

    // The faces, each centred over its two columns, then the column titles.
    label(&mut img, MARGIN, faces_y + (ch - GLYPH) / 2, "faces", INK);
    let mut big = Vec::new();
    for (k, (face, name)) in [(face_a, "A"), (face_b, "B")].into_iter().enumerate() {
        let scaled = imageops::resize(face, cw, ch, imageops::FilterType::Triangle);
        let left = col_x(2 * k as u32);
        let x = left + (2 * cw + GAP - cw) / 2;
        imageops::replace(&mut img, &scaled, x as i64, faces_y as i64);
        label(&mut img, x.saturating_sub(label_width(name) + 8), faces_y, name, INK);
        big.push(scaled);
    }
    for (c, title) in TITLES.iter().enumerate() {
        let x = col_x(c as u32);
        let name = if c < 2 { "A" } else { "B" };
        label(&mut img, x + cw.saturating_sub(label_width(name)) / 2, titles_y, name, INK);
        label(&mut img, x + cw.saturating_sub(label_width(title)) / 2, titles_y + LINE, title, INK);
    }

    for (i, ((maps, scale), labels)) in prepared.iter().zip(&row_labels).enumerate() {
        let y = layout.cell(i, 0).1;
        for (k, text) in labels.iter().enumerate() {
            label(&mut img, MARGIN, y + k as u32 * LINE, text, if k == 0 { INK } else { MUTED });
        }
        for (c, map) in maps.iter().enumerate() {
            let over = overlay(&big[c / 2], map, h, w, *scale);
            imageops::replace(&mut img, &over, col_x(c as u32) as i64, y as i64);
        }
    }

    // What the colours mean, under the grid: 0 on the left, each row's maximum on the right.
    let bar_y = grid_y + rows.len() as u32 * (ch + GAP);
    let (bar_x, bar_w) = (col_x(0), 2 * cw);
    for x in 0..bar_w {
        let c = turbo(x as f32 / (bar_w - 1) as f32);
        for y in 0..GLYPH {
            img.put_pixel(bar_x + x, bar_y + y, c);
        }
    }
    label(&mut img, bar_x + bar_w + GAP, bar_y, "0 .. row max", MUTED);
    img
}
