//! The explanation panel: layout, shared colour scale, and an example PNG to look at.

use std::path::PathBuf;

use facelens_saliency::render::{panel_cell, render_map, render_panel, PanelInfo};
use facelens_saliency::{Decision, SaliencyMaps};
use image::RgbImage;

/// Two aligned faces from `../shared` (the reference set), or synthetic ones without it.
fn faces() -> (RgbImage, RgbImage) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/w600k_mbf.reference.safetensors");
    let real = std::fs::read(&path).ok().and_then(|bytes| {
        let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
        let t = st.tensor("images_rgb_u8").ok()?;
        let per = 112 * 112 * 3;
        let face = |i: usize| RgbImage::from_raw(112, 112, t.data()[i * per..(i + 1) * per].to_vec());
        Some((face(0)?, face(1)?))
    });
    real.unwrap_or_else(|| {
        eprintln!("../shared absent: using synthetic faces");
        let synth = |tone: u8| {
            RgbImage::from_fn(112, 112, |x, y| {
                let d = ((x as f32 - 56.0).powi(2) / 1600.0 + (y as f32 - 60.0).powi(2) / 2500.0).sqrt();
                if d < 1.0 {
                    image::Rgb([tone, tone - 40, tone - 70])
                } else {
                    image::Rgb([20, 20, 20])
                }
            })
        };
        (synth(210), synth(180))
    })
}

fn blob(cx: f32, cy: f32, sigma: f32, peak: f32) -> Vec<f32> {
    (0..112 * 112)
        .map(|i| {
            let (x, y) = ((i % 112) as f32, (i / 112) as f32);
            peak * (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * sigma * sigma)).exp()
        })
        .collect()
}

/// Similarity on the eyes, weaker dissimilarity on the mouth.
fn asymmetric_maps(neg_peak: f32) -> SaliencyMaps {
    let eyes: Vec<f32> =
        blob(38.0, 52.0, 9.0, 1.0).iter().zip(blob(74.0, 52.0, 9.0, 1.0)).map(|(a, b)| a + b).collect();
    let mouth = blob(56.0, 92.0, 10.0, neg_peak);
    SaliencyMaps { height: 112, width: 112, sa_pos: eyes.clone(), sa_neg: mouth.clone(), sb_pos: eyes, sb_neg: mouth }
}

fn info() -> PanelInfo {
    PanelInfo {
        score: 0.712,
        threshold: 0.22,
        decision: Decision::Accept,
        method: "fggb".into(),
        model: "w600k_mbf".into(),
    }
}

fn region(img: &RgbImage, (x, y, w, h): (u32, u32, u32, u32)) -> Vec<u8> {
    (y..y + h).flat_map(|py| (x..x + w).flat_map(move |px| img.get_pixel(px, py).0)).collect()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.len() as f64
}

#[test]
fn panel_has_the_layout_and_is_not_blank() {
    let (a, b) = faces();
    let panel = render_panel(&a, &b, &asymmetric_maps(0.4), &info(), false);
    // Three 224-px columns, the colour bar and its labels, margins; two rows under a header.
    let (x, y, w, h) = panel_cell(1, 2, 112, 112);
    assert_eq!((w, h), (224, 224), "faces are shown at 2x");
    assert!(panel.width() >= x + w + 150, "room for the colour bar");
    assert_eq!(panel.height(), y + h + 16);
    assert_eq!((panel.width(), panel.height()), (996, 568));
    let distinct: std::collections::HashSet<[u8; 3]> = panel.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 500, "only {} colours", distinct.len());
    // The face cell shows the face, 2x: its centre pixel matches the source's.
    let face_cell = panel_cell(0, 0, 112, 112);
    let centre = panel.get_pixel(face_cell.0 + 112, face_cell.1 + 112).0;
    let source = a.get_pixel(56, 56).0;
    assert!(centre.iter().zip(source).all(|(p, s)| (*p as i32 - s as i32).abs() < 40), "{centre:?} vs {source:?}");
}

#[test]
fn similarity_and_dissimilarity_columns_show_their_own_maps() {
    let (a, b) = faces();
    let asym = render_panel(&a, &b, &asymmetric_maps(0.4), &info(), false);
    for row in 0..2 {
        let diff =
            mean_abs_diff(&region(&asym, panel_cell(row, 1, 112, 112)), &region(&asym, panel_cell(row, 2, 112, 112)));
        assert!(diff > 5.0, "row {row}: S+ and S- columns differ by only {diff}");
    }
    let mut same = asymmetric_maps(0.4);
    same.sa_neg = same.sa_pos.clone();
    let sym = render_panel(&a, &b, &same, &info(), false);
    assert!(
        region(&sym, panel_cell(0, 1, 112, 112)) == region(&sym, panel_cell(0, 2, 112, 112)),
        "equal maps, different columns"
    );
}

#[test]
fn one_colour_scale_is_shared_by_the_four_maps() {
    // With a shared scale, a weaker S- must look different (weaker), not be re-stretched.
    let (a, b) = faces();
    let weak = render_panel(&a, &b, &asymmetric_maps(0.1), &info(), false);
    let strong = render_panel(&a, &b, &asymmetric_maps(0.6), &info(), false);
    let cell = panel_cell(0, 2, 112, 112);
    assert!(mean_abs_diff(&region(&weak, cell), &region(&strong, cell)) > 1.0);
    // Scaling all four maps together changes nothing but the colour-bar numbers (up to rounding).
    let mut scaled = asymmetric_maps(0.4);
    for m in [&mut scaled.sa_pos, &mut scaled.sa_neg, &mut scaled.sb_pos, &mut scaled.sb_neg] {
        m.iter_mut().for_each(|v| *v *= 1e-3);
    }
    let base = render_panel(&a, &b, &asymmetric_maps(0.4), &info(), false);
    let small = render_panel(&a, &b, &scaled, &info(), false);
    for col in 1..3 {
        let (x, y) = (region(&base, panel_cell(1, col, 112, 112)), region(&small, panel_cell(1, col, 112, 112)));
        let worst = x.iter().zip(&y).map(|(p, q)| p.abs_diff(*q)).max().unwrap();
        assert!(worst <= 1, "column {col} changed by {worst} under a common rescale");
    }
}

#[test]
fn degenerate_maps_still_render() {
    let (a, b) = faces();
    let mut maps = asymmetric_maps(0.0);
    maps.sa_pos = vec![0.0; 112 * 112];
    maps.sb_pos[0] = f32::NAN;
    let zero = SaliencyMaps {
        sa_pos: vec![0.0; 112 * 112],
        sa_neg: vec![0.0; 112 * 112],
        sb_pos: vec![0.0; 112 * 112],
        sb_neg: vec![0.0; 112 * 112],
        ..maps.clone()
    };
    for m in [maps, zero] {
        let p = render_panel(&a, &b, &m, &PanelInfo { decision: Decision::Reject, ..info() }, true);
        assert_eq!((p.width(), p.height()), (996, 568));
    }
}

#[test]
fn heat_map_alone_spans_the_colour_map() {
    let map = blob(56.0, 56.0, 20.0, 2.0);
    let img = render_map(&map, 112, 112, 2.0);
    assert_eq!(img.dimensions(), (112, 112));
    let top = colorous::TURBO.eval_continuous(1.0);
    assert_eq!(img.get_pixel(56, 56).0, [top.r, top.g, top.b]);
    assert_ne!(img.get_pixel(0, 0).0, img.get_pixel(56, 56).0);
    // max <= 0 falls back to the map's own maximum.
    assert_eq!(render_map(&map, 112, 112, 0.0), img);
}

/// Writes example panels for a person to look at.
#[test]
fn writes_example_panels() {
    let (a, b) = faces();
    let dir = std::env::temp_dir().join("facelens-render-example");
    std::fs::create_dir_all(&dir).unwrap();
    for (blur, name) in [(false, "panel.png"), (true, "panel-blurred.png")] {
        let panel = render_panel(&a, &b, &asymmetric_maps(0.3), &info(), blur);
        let path = dir.join(name);
        panel.save(&path).unwrap();
        assert!(image::open(&path).unwrap().width() == panel.width());
        eprintln!("example panel: {}", path.display());
    }
}

#[test]
fn text_scales_shifts_and_clips() {
    use facelens_saliency::render::{draw_text, text_width};
    let (white, ink) = (image::Rgb([255u8, 255, 255]), image::Rgb([0u8, 0, 0]));
    let inked = |img: &image::RgbImage| img.pixels().filter(|p| **p == ink).count();
    let draw = |x: i64, y: i64, scale: u32| {
        let mut img = image::RgbImage::from_pixel(40, 40, white);
        draw_text(&mut img, x, y, "Hé", ink, scale);
        img
    };
    let one = draw(0, 0, 1);
    assert!(inked(&one) > 0);
    // Each font pixel becomes a scale x scale square; `é` is drawn as `?`.
    assert_eq!(inked(&draw(0, 0, 2)), 4 * inked(&one));
    assert_eq!(inked(&one), {
        let mut q = image::RgbImage::from_pixel(40, 40, white);
        draw_text(&mut q, 0, 0, "H?", ink, 1);
        inked(&q)
    });
    // Negative coordinates clip instead of panicking or wrapping.
    let (base, shifted) = (draw(3, 3, 2), draw(-2, -1, 2));
    for y in 0..30 {
        for x in 0..30 {
            assert_eq!(shifted.get_pixel(x, y), base.get_pixel(x + 5, y + 4), "({x}, {y})");
        }
    }
    assert_eq!(inked(&draw(-100, 50, 3)), 0);
    assert_eq!(text_width("Hé", 3), 48);
}

mod comparison {
    use super::*;
    use facelens_saliency::render::{render_comparison, ComparisonLayout, MethodRow};

    fn scaled(maps: &SaliencyMaps, k: f32) -> SaliencyMaps {
        let s = |m: &Vec<f32>| m.iter().map(|v| v * k).collect();
        SaliencyMaps { sa_pos: s(&maps.sa_pos), sa_neg: s(&maps.sa_neg), sb_pos: s(&maps.sb_pos), sb_neg: s(&maps.sb_neg), ..maps.clone() }
    }

    #[test]
    fn every_method_gets_a_row_on_its_own_colour_scale() {
        let (a, b) = faces();
        let base = asymmetric_maps(0.4);
        // Three methods: one in large units, the same maps in units 1000x smaller, one blank.
        let (small, blank) = (scaled(&base, 1e-3), scaled(&base, 0.0));
        let rows = [
            MethodRow { method: "fggb", maps: &base, seconds: 12.5 },
            MethodRow { method: "score-gradient", maps: &small, seconds: 0.4 },
            MethodRow { method: "random", maps: &blank, seconds: 0.01 },
        ];
        let panel = render_comparison(&a, &b, &rows, &info(), false);
        let layout = ComparisonLayout::new(&rows);
        let last = layout.cell(2, 3);
        assert_eq!((last.2, last.3), (224, 224), "maps at 2x");
        assert!(panel.width() >= last.0 + last.2 && panel.height() >= last.1 + last.3, "every cell inside the panel");
        for col in 0..4 {
            // Per-row scale: the same maps in other units look the same ...
            let (x, y) = (region(&panel, layout.cell(0, col)), region(&panel, layout.cell(1, col)));
            let worst = x.iter().zip(&y).map(|(p, q)| p.abs_diff(*q)).max().unwrap();
            assert!(worst <= 1, "column {col}: rows differ by {worst} although only their units differ");
            // ... and a blank map shows the face in grey, not colour.
            let blank = region(&panel, layout.cell(2, col));
            assert!(mean_abs_diff(&x, &blank) > 5.0, "column {col}: the blank row looks like a map");
        }
        // Columns keep their own maps: A's similarity (eyes) differs from A's dissimilarity (mouth).
        assert!(mean_abs_diff(&region(&panel, layout.cell(0, 0)), &region(&panel, layout.cell(0, 1))) > 5.0);
        let path = std::env::temp_dir().join("facelens-render-example").join("comparison.png");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        panel.save(&path).unwrap();
        eprintln!("example comparison panel: {}", path.display());
    }
}
