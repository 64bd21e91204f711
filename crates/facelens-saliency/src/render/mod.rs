//! The picture a person reads: a pair's faces next to their similarity and dissimilarity
//! overlays (`facelens explain` writes it as `panel.png`).
//!
//! All four maps share one colour scale, shown on the colour bar, so a weak map looks weak
//! next to a strong one instead of being stretched to full colour. Text uses the 8x8
//! public-domain bitmap font (font8x8) drawn at 2x, so the panel needs no font files.

use image::{imageops, Rgb, RgbImage};

use crate::perturb::upsample_bilinear;
use crate::{blur, Decision, SaliencyMaps};

mod comparison;
pub use comparison::{render_comparison, ComparisonLayout, MethodRow};

/// What the header says about the decision being explained.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelInfo {
    pub score: f32,
    pub threshold: f32,
    pub decision: Decision,
    pub method: String,
    pub model: String,
}

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([25, 25, 25]);
const MUTED: Rgb<u8> = Rgb([100, 100, 100]);
const ACCEPT: Rgb<u8> = Rgb([0, 130, 60]);
const REJECT: Rgb<u8> = Rgb([200, 30, 30]);

/// Text scale: 8x8 glyphs drawn 16x16.
const TEXT: u32 = 2;
const GLYPH: u32 = 8 * TEXT;
const LINE: u32 = GLYPH + 6;
const MARGIN: u32 = 16;
const GAP: u32 = 12;
/// Weight of the colour map over the greyed face.
const ALPHA: f32 = 0.5;
const BAR_W: u32 = 22;
/// Two header lines, then the column titles, then the grid (after a row-label column).
const HEADER_H: u32 = MARGIN + 2 * LINE + 10;
const GRID_X: u32 = MARGIN + GLYPH + 12;
const GRID_Y: u32 = HEADER_H + LINE;

/// The TURBO colour of a value already scaled to `[0, 1]` (clamped; not finite: as 0). Every
/// facelens heat map uses this one colour map.
pub fn turbo(t: f32) -> Rgb<u8> {
    let c = colorous::TURBO.eval_continuous(if t.is_finite() { t.clamp(0.0, 1.0) as f64 } else { 0.0 });
    Rgb([c.r, c.g, c.b])
}

/// A map alone, coloured with TURBO on `[0, max]` (`max <= 0`: the map's own maximum).
pub fn render_map(map: &[f32], h: usize, w: usize, max: f32) -> RgbImage {
    let max = if max > 0.0 && max.is_finite() { max } else { finite_max(map).max(f32::MIN_POSITIVE) };
    RgbImage::from_fn(w as u32, h as u32, |x, y| turbo(map[y as usize * w + x as usize] / max))
}

fn finite_max(map: &[f32]) -> f32 {
    map.iter().copied().filter(|v| v.is_finite()).fold(0.0, f32::max)
}

/// Pixel rectangle `(x, y, width, height)` of a panel cell: `row` 0 = face A, 1 = face B;
/// `col` 0 = face, 1 = similarity overlay, 2 = dissimilarity overlay. `h x w` is the map size.
pub fn panel_cell(row: usize, col: usize, h: usize, w: usize) -> (u32, u32, u32, u32) {
    let (cw, ch) = (2 * w as u32, 2 * h as u32);
    (GRID_X + col as u32 * (cw + GAP), GRID_Y + row as u32 * (ch + GAP), cw, ch)
}

/// Two rows (faces A and B) by three columns (face, similarity overlay S+, dissimilarity
/// overlay S-), faces at 2x, a header with score, threshold, decision, method and model,
/// and the shared colour bar. `blur` smooths the maps for display only (kernel 25, sigma 5).
pub fn render_panel(
    face_a: &RgbImage,
    face_b: &RgbImage,
    maps: &SaliencyMaps,
    info: &PanelInfo,
    blur: bool,
) -> RgbImage {
    let (h, w) = (maps.height, maps.width);
    let prepared = prepare(maps, blur);
    let scale = shared_scale(&prepared);

    // The colour bar stands where a fourth column would, far enough out that the wide
    // "dissimilarity S-" title does not run into "shared scale".
    let (bar_x, grid_y, cw, ch) = panel_cell(0, 3, h, w);
    let bar_x = bar_x + 3 * GAP;
    let bar_h = 2 * ch + GAP;
    let bar_col_w = label_width("shared scale").max(BAR_W + 8 + label_width(&number(scale)));
    let mut sub = format!("method {}   model {}", info.method, info.model);
    if blur {
        sub.push_str("   (maps blurred for display)");
    }
    let width = (bar_x + bar_col_w).max(MARGIN + label_width(&sub)) + MARGIN;
    let height = grid_y + bar_h + MARGIN;
    let mut img = RgbImage::from_pixel(width, height, WHITE);

    header(&mut img, info, &sub);

    for (col, title) in ["face", "similarity S+", "dissimilarity S-"].iter().enumerate() {
        let (x, ..) = panel_cell(0, col, h, w);
        label(&mut img, x + cw.saturating_sub(label_width(title)) / 2, HEADER_H, title, INK);
    }
    for (row, (face, name)) in [(face_a, "A"), (face_b, "B")].into_iter().enumerate() {
        let (x, y, ..) = panel_cell(row, 0, h, w);
        label(&mut img, MARGIN, y + (ch - GLYPH) / 2, name, INK);
        let big = imageops::resize(face, cw, ch, imageops::FilterType::Triangle);
        imageops::replace(&mut img, &big, x as i64, y as i64);
        for (k, map) in prepared[2 * row..2 * row + 2].iter().enumerate() {
            let (x, y, ..) = panel_cell(row, k + 1, h, w);
            imageops::replace(&mut img, &overlay(&big, map, h, w, scale), x as i64, y as i64);
        }
    }

    // Colour bar: top = shared maximum, bottom = 0.
    label(&mut img, bar_x, HEADER_H, "shared scale", INK);
    for y in 0..bar_h {
        let c = turbo(1.0 - y as f32 / (bar_h - 1) as f32);
        for x in 0..BAR_W {
            img.put_pixel(bar_x + x, grid_y + y, c);
        }
    }
    let tx = bar_x + BAR_W + 8;
    label(&mut img, tx, grid_y, &number(scale), INK);
    label(&mut img, tx, grid_y + (bar_h - GLYPH) / 2, &number(scale / 2.0), INK);
    label(&mut img, tx, grid_y + bar_h - GLYPH, "0", INK);
    img
}

/// The decision first (score, τ, ACCEPT/REJECT), then `sub` (what produced the maps).
fn header(img: &mut RgbImage, info: &PanelInfo, sub: &str) {
    let head = format!("score {:.3}  tau {:.3}  ", info.score, info.threshold);
    label(img, MARGIN, MARGIN, &head, INK);
    let (word, tint) = match info.decision {
        Decision::Accept => ("ACCEPT", ACCEPT),
        Decision::Reject => ("REJECT", REJECT),
    };
    label(img, MARGIN + label_width(&head), MARGIN, word, tint);
    label(img, MARGIN, MARGIN + LINE, sub, MUTED);
}

/// The four maps of `maps` (A+, A−, B+, B−) as drawn: negative and non-finite values as 0, and
/// smoothed when `blur` (display only).
fn prepare(maps: &SaliencyMaps, blur: bool) -> Vec<Vec<f32>> {
    let (h, w) = (maps.height, maps.width);
    [&maps.sa_pos, &maps.sa_neg, &maps.sb_pos, &maps.sb_neg]
        .into_iter()
        .map(|m| {
            let m: Vec<f32> = m.iter().map(|v| if v.is_finite() { v.max(0.0) } else { 0.0 }).collect();
            if blur {
                blur::display_blur(&m, h, w)
            } else {
                m
            }
        })
        .collect()
}

/// The largest value of several prepared maps (1 when all are 0, so a blank map stays blank).
fn shared_scale(maps: &[Vec<f32>]) -> f32 {
    let max = maps.iter().map(|m| finite_max(m)).fold(0.0, f32::max);
    if max > 0.0 {
        max
    } else {
        1.0
    }
}

/// `map` (`h x w`) upsampled onto `face` (already at display size) in TURBO on `[0, scale]`,
/// over the face in grey.
fn overlay(face: &RgbImage, map: &[f32], h: usize, w: usize, scale: f32) -> RgbImage {
    let (cw, ch) = face.dimensions();
    let up = upsample_bilinear(map, h, w, ch as usize, cw as usize);
    RgbImage::from_fn(cw, ch, |px, py| {
        let f = face.get_pixel(px, py).0;
        let grey = 0.299 * f[0] as f32 + 0.587 * f[1] as f32 + 0.114 * f[2] as f32;
        let c = turbo(up[(py * cw + px) as usize] / scale).0;
        Rgb(c.map(|v| ((1.0 - ALPHA) * grey + ALPHA * v as f32).round() as u8))
    })
}

/// Short, readable numbers for the colour bar.
fn number(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else if (0.01..1000.0).contains(&v.abs()) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

fn label_width(s: &str) -> u32 {
    text_width(s, TEXT)
}

fn label(img: &mut RgbImage, x: u32, y: u32, text: &str, ink: Rgb<u8>) {
    draw_text(img, x.into(), y.into(), text, ink, TEXT);
}

/// Width in pixels of `text` drawn by [`draw_text`] at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 8 * scale
}

/// Draws ASCII `text` in the 8x8 bitmap font with its top-left corner at `(x, y)`, every font
/// pixel a `scale` x `scale` square of `ink`; other characters show as `?`. Whatever falls
/// outside the image (negative coordinates included) is clipped.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, ink: Rgb<u8>, scale: u32) {
    let (w, h, scale) = (i64::from(img.width()), i64::from(img.height()), i64::from(scale));
    for (i, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() { ch as usize } else { '?' as usize };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        let gx = x + i as i64 * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8i64 {
                if bits >> col & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (gx + col * scale + dx, y + row as i64 * scale + dy);
                        if (0..w).contains(&px) && (0..h).contains(&py) {
                            img.put_pixel(px as u32, py as u32, ink);
                        }
                    }
                }
            }
        }
    }
}
