//! The overview of a photo with several faces: every detected face boxed and numbered as
//! `--face N` counts them, the one used in green, so a user can see which face was explained and
//! choose another.

use facelens_saliency::render::{draw_text, text_width};
use image::{imageops, Rgb, RgbImage};

use crate::faces::Detected;

const USED: Rgb<u8> = Rgb([0, 200, 80]);
const OTHER: Rgb<u8> = Rgb([255, 170, 0]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
/// Long side of the drawn photo: large photos are shrunk, small ones enlarged, so numbers and
/// boxes stay readable.
const SIDE: f32 = 960.0;
const TEXT: u32 = 2;
const BANNER: u32 = 2 * 8 * TEXT + 24;

/// The photo with numbered boxes under a line saying which face was used and why.
pub fn render(d: &Detected) -> RgbImage {
    let (w, h) = d.photo.dimensions();
    let k = SIDE / w.max(h) as f32;
    let (sw, sh) = (((w as f32 * k).round() as u32).max(1), ((h as f32 * k).round() as u32).max(1));
    let photo = imageops::resize(&d.photo, sw, sh, imageops::FilterType::Triangle);
    let r = &d.report;
    let why = if r.rule == "--face" { "chosen with --face" } else { "largest, most central" };
    let line1 = format!("{} faces found; using face {} ({why})", r.found, r.used);
    let line2 = "--face N (explain: --face-a N / --face-b N) picks another";
    let width = sw.max(text_width(&line1, TEXT).max(text_width(line2, TEXT)) + 16);
    let mut img = RgbImage::from_pixel(width, sh + BANNER, WHITE);
    draw_text(&mut img, 8, 6, &line1, INK, TEXT);
    draw_text(&mut img, 8, 6 + 8 * TEXT as i64 + 4, line2, Rgb([90, 90, 90]), TEXT);
    imageops::replace(&mut img, &photo, 0, BANNER as i64);

    // The used face last, so its box is on top where boxes overlap.
    let mut order: Vec<_> = r.faces.iter().collect();
    order.sort_by_key(|f| f.number == r.used);
    for f in order {
        let colour = if f.number == r.used { USED } else { OTHER };
        let [x1, y1, x2, y2] = f.bbox.map(|v| v * k);
        let (y1, y2) = (y1 + BANNER as f32, y2 + BANNER as f32);
        let thick = if f.number == r.used { 4 } else { 3 };
        rectangle(&mut img, x1, y1, x2, y2, thick, colour);
        // The number on a filled tab above the box's top-left corner (inside the image).
        let label = f.number.to_string();
        let (tw, th) = (text_width(&label, TEXT) + 8, 8 * TEXT + 6);
        let tx = (x1.max(0.0) as u32).min(width.saturating_sub(tw));
        let ty = ((y1 - th as f32).max(BANNER as f32)) as u32;
        fill(&mut img, tx, ty, tw, th, colour);
        draw_text(&mut img, tx as i64 + 4, ty as i64 + 3, &label, INK, TEXT);
    }
    img
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: Rgb<u8>) {
    for py in y..(y + h).min(img.height()) {
        for px in x..(x + w).min(img.width()) {
            img.put_pixel(px, py, c);
        }
    }
}

/// A box outline `thick` pixels wide, clipped to the image.
fn rectangle(img: &mut RgbImage, x1: f32, y1: f32, x2: f32, y2: f32, thick: u32, c: Rgb<u8>) {
    let clamp = |v: f32, hi: u32| v.round().clamp(0.0, hi.saturating_sub(1) as f32) as u32;
    let (x1, x2) = (clamp(x1, img.width()), clamp(x2, img.width()));
    let (y1, y2) = (clamp(y1, img.height()), clamp(y2, img.height()));
    let (w, h) = (x2.saturating_sub(x1) + 1, y2.saturating_sub(y1) + 1);
    fill(img, x1, y1, w, thick, c);
    fill(img, x1, y2.saturating_sub(thick - 1), w, thick, c);
    fill(img, x1, y1, thick, h, c);
    fill(img, x2.saturating_sub(thick - 1), y1, thick, h, c);
}
