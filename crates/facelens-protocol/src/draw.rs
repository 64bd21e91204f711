//! Figures drawn directly into `image` buffers: curve plots, and the stacking of saliency panels.
//!
//! A plotting crate would bring a font stack (or fail to draw text without one); the figures here
//! need lines, filled boxes and short ASCII labels, which a few dozen lines and the 8x8 bitmap text
//! of `facelens_saliency::render` cover.

use image::{Rgb, RgbImage};

pub const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
pub const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const AXIS: Rgb<u8> = Rgb([90, 90, 90]);

/// Distinguishable line colours (Tableau 10), cycled by series index.
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

pub fn series_colour(i: usize) -> Rgb<u8> {
    Rgb(PALETTE[i % PALETTE.len()])
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Draws `text` with its top-left corner at `(x, y)`, `scale` pixels per glyph pixel
/// ([`facelens_saliency::render::draw_text`]).
pub fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, c: Rgb<u8>, scale: i64) {
    facelens_saliency::render::draw_text(img, x, y, s, c, scale.max(0) as u32);
}

/// Width in pixels of `s` drawn at `scale`.
pub fn text_width(s: &str, scale: i64) -> i64 {
    i64::from(facelens_saliency::render::text_width(s, scale.max(0) as u32))
}

pub fn fill_rect(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, c: Rgb<u8>) {
    for yy in y..y + h {
        for xx in x..x + w {
            put(img, xx, yy, c);
        }
    }
}

/// A line `thickness` pixels wide (Bresenham, thickened with a square brush).
pub fn line(
    img: &mut RgbImage,
    (x0, y0): (i64, i64),
    (x1, y1): (i64, i64),
    c: Rgb<u8>,
    thickness: i64,
) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    let r = thickness / 2;
    loop {
        fill_rect(img, x - r, y - r, thickness.max(1), thickness.max(1), c);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// One line of a plot.
pub struct Series<'a> {
    pub label: String,
    pub xs: &'a [f64],
    pub ys: &'a [f64],
}

/// A line plot of accuracy (0..1) over the perturbed percentage (0..100) with a legend.
/// `title` lines are centred above the plot.
pub fn curve_plot(title: &[&str], x_label: &str, series: &[Series<'_>]) -> RgbImage {
    // The legend goes under the axes, where no curve can hide it.
    let legend_h = series.len() as i64 * 12;
    let (w, h) = (640i64, 440i64 + legend_h);
    let top = 30 + 12 * title.len() as i64;
    let (left, right, bottom) = (56i64, w - 16, h - 48 - legend_h);
    let mut img = RgbImage::from_pixel(w as u32, h as u32, WHITE);
    for (i, t) in title.iter().enumerate() {
        text(
            &mut img,
            ((w - text_width(t, 1)) / 2).max(2),
            8 + 12 * i as i64,
            t,
            BLACK,
            1,
        );
    }
    let px = |x: f64| left + ((x / 100.0) * (right - left) as f64).round() as i64;
    let py = |y: f64| bottom - ((y.clamp(0.0, 1.0)) * (bottom - top) as f64).round() as i64;
    for i in 0..=5 {
        let x = f64::from(i) * 20.0;
        line(&mut img, (px(x), top), (px(x), bottom), GRID, 1);
        let l = format!("{x:.0}");
        text(
            &mut img,
            px(x) - text_width(&l, 1) / 2,
            bottom + 6,
            &l,
            AXIS,
            1,
        );
    }
    for i in 0..=4 {
        let y = f64::from(i) * 0.25;
        line(&mut img, (left, py(y)), (right, py(y)), GRID, 1);
        let l = format!("{y:.2}");
        text(
            &mut img,
            left - 6 - text_width(&l, 1),
            py(y) - 4,
            &l,
            AXIS,
            1,
        );
    }
    line(&mut img, (left, top), (left, bottom), AXIS, 1);
    line(&mut img, (left, bottom), (right, bottom), AXIS, 1);
    text(
        &mut img,
        (left + right - text_width(x_label, 1)) / 2,
        bottom + 22,
        x_label,
        BLACK,
        1,
    );
    text(&mut img, 8, top - 14, "accuracy", BLACK, 1);
    for (i, s) in series.iter().enumerate() {
        let c = series_colour(i);
        for (p, q) in s.xs.iter().zip(s.ys).zip(s.xs.iter().zip(s.ys).skip(1)) {
            line(&mut img, (px(*p.0), py(*p.1)), (px(*q.0), py(*q.1)), c, 2);
        }
    }
    let (lx, ly) = (left, bottom + 38);
    for (i, s) in series.iter().enumerate() {
        let y = ly + i as i64 * 12;
        fill_rect(&mut img, lx + 4, y + 2, 14, 4, series_colour(i));
        text(&mut img, lx + 24, y, &s.label, BLACK, 1);
    }
    img
}

/// Images side by side at twice their size, each under its label (the figures of the sanity check
/// and the patch benchmark).
pub fn tile_row(tiles: &[(String, RgbImage)]) -> RgbImage {
    let (gap, label_h) = (6u32, 14u32);
    let w: u32 = tiles.iter().map(|(_, t)| 2 * t.width() + gap).sum::<u32>() + gap;
    let h = tiles.iter().map(|(_, t)| 2 * t.height()).max().unwrap_or(1) + label_h + 2 * gap;
    let mut out = RgbImage::from_pixel(w.max(1), h, WHITE);
    let mut x = gap;
    for (label, t) in tiles {
        let big = image::imageops::resize(t, 2 * t.width(), 2 * t.height(), image::imageops::FilterType::Nearest);
        // Labels wider than their tile are cut rather than run into the next one.
        let max_chars = (2 * t.width() / 8) as usize;
        text(&mut out, i64::from(x), i64::from(gap), &label.chars().take(max_chars).collect::<String>(), BLACK, 1);
        image::imageops::replace(&mut out, &big, i64::from(x), i64::from(gap + label_h));
        x += big.width() + gap;
    }
    out
}

/// Stacks images vertically (left-aligned on white), e.g. one saliency panel per method.
pub fn stack(images: &[RgbImage]) -> RgbImage {
    let gap = 8;
    let w = images.iter().map(RgbImage::width).max().unwrap_or(1);
    let h = images.iter().map(RgbImage::height).sum::<u32>()
        + gap * images.len().saturating_sub(1) as u32;
    let mut out = RgbImage::from_pixel(w, h.max(1), WHITE);
    let mut y = 0;
    for img in images {
        image::imageops::replace(&mut out, img, 0, i64::from(y));
        y += img.height() + gap;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_draws_series_in_their_colours() {
        let xs = [0.0, 50.0, 100.0];
        let ys = [1.0, 0.5, 0.0];
        let img = curve_plot(
            &["t"],
            "p",
            &[Series {
                label: "m".into(),
                xs: &xs,
                ys: &ys,
            }],
        );
        assert_eq!(img.dimensions(), (640, 452));
        assert!(img.pixels().any(|p| *p == series_colour(0)));
    }

    #[test]
    fn stacking() {
        let a = RgbImage::from_pixel(4, 3, BLACK);
        let b = RgbImage::from_pixel(6, 2, BLACK);
        let s = stack(&[a, b]);
        assert_eq!(s.dimensions(), (6, 3 + 8 + 2));
        assert_eq!(*s.get_pixel(5, 0), WHITE);
        assert_eq!(*s.get_pixel(5, 11), BLACK);
    }
}
