//! Turning user-supplied image paths into aligned 112x112 crops.
//!
//! Order of preference: a landmark CSV row for the file; an image that is already a
//! 112x112 crop; the SCRFD detector on a raw photo (when its checkpoint was fetched);
//! a plain resize only when the user asked for it.
//!
//! A photo may hold several faces. They are numbered from 1, left to right by box centre, and
//! unless `--face N` says otherwise the one used is insightface's choice for a single face: the
//! largest box, penalised by its distance from the image centre (area − 2·offset², see
//! [`facelens_models::detect::pick_face`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use facelens_data::{DataError, FaceSource, LandmarkTable, LoadOptions, RgbImage};
use facelens_models::detect::Detection;
use serde::Serialize;

#[derive(Args, Debug, Clone, Default)]
pub struct FaceArgs {
    /// Landmark CSV (file,status,score,box_*,lm0_x..lm4_y) used to align the inputs.
    #[arg(long)]
    pub landmarks: Option<PathBuf>,
    /// Folder that the CSV's file names are relative to (default: the CSV's `images/` sibling or its folder).
    #[arg(long)]
    pub images_root: Option<PathBuf>,
    /// Accept images that are not 112x112 and have no landmarks by resizing them (no alignment).
    #[arg(long)]
    pub resize: bool,
    /// Never run the face detector on raw photos.
    #[arg(long)]
    pub no_detect: bool,
    /// In photos with several faces, use face N (1-based, numbered left to right as in the
    /// `faces-*.png` overview) instead of the largest, most central one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub face: Option<u32>,
}

/// The detector's view of one input photo: every face it found and which one was used.
#[derive(Debug, Clone, Serialize)]
pub struct FaceReport {
    /// Faces found (score >= 0.5).
    pub found: usize,
    /// The face used, 1-based in left-to-right order.
    pub used: usize,
    /// Why that face: `"largest-central"` (the default rule) or `"--face"`.
    pub rule: &'static str,
    /// Boxes `[x1, y1, x2, y2]` and scores in the photo's pixels, in numbering order.
    pub faces: Vec<FoundFace>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FoundFace {
    pub number: usize,
    pub bbox: [f32; 4],
    pub score: f32,
}

/// An aligned crop, how it was made and, for a detected photo, what the detector saw.
pub struct Face {
    pub image: RgbImage,
    pub source: FaceSource,
    pub detection: Option<Detected>,
}

/// A photo the detector read: the decoded photo (for the overview) and its report.
pub struct Detected {
    pub photo: RgbImage,
    pub report: FaceReport,
}

impl Face {
    /// One line for the terminal when the choice of face is worth knowing (several faces).
    pub fn note(&self, path: &Path, flag: &str) -> Option<String> {
        let r = &self.detection.as_ref()?.report;
        (r.found > 1).then(|| {
            let why = if r.rule == "--face" { format!("as {flag} asked") } else { "the largest, most central".into() };
            format!(
                "{}: {} faces found, using face {} ({why}; {flag} N picks another)",
                path.display(),
                r.found,
                r.used
            )
        })
    }
}

pub struct FaceLoader {
    landmarks: Option<LandmarkTable>,
    images_root: PathBuf,
    resize: bool,
    /// `--face`: the face to use in photos with several.
    face: Option<u32>,
    /// Substitute a black crop for `nodet` landmark rows (the LFW reference protocol).
    pub black_for_nodet: bool,
    detector: Option<crate::cmd::detector::FaceDetector>,
}

impl FaceLoader {
    pub fn new(args: &FaceArgs) -> Result<Self> {
        let landmarks = match &args.landmarks {
            Some(p) => Some(LandmarkTable::load(p).with_context(|| format!("cannot read landmarks {}", p.display()))?),
            None => None,
        };
        let images_root = match (&args.images_root, &args.landmarks) {
            (Some(r), _) => r.clone(),
            (None, Some(csv)) => {
                let dir = csv.parent().unwrap_or(Path::new(".")).to_path_buf();
                if dir.join("images").is_dir() {
                    dir.join("images")
                } else {
                    dir
                }
            }
            (None, None) => PathBuf::from("."),
        };
        let detector = if args.no_detect { None } else { crate::cmd::detector::FaceDetector::load_default()? };
        Ok(Self { landmarks, images_root, resize: args.resize, face: args.face, black_for_nodet: false, detector })
    }

    /// An aligned crop of `path` (the `--face` choice in a photo of several), or an error that
    /// names the file and what to do.
    pub fn load(&self, path: &Path) -> Result<RgbImage> {
        self.load_choice(path, self.face, "--face").map(|f| f.image)
    }

    /// Like [`FaceLoader::load`], also saying how the crop was made.
    pub fn load_face(&self, path: &Path) -> Result<facelens_data::LoadedFace> {
        let f = self.load_choice(path, self.face, "--face")?;
        Ok(facelens_data::LoadedFace { image: f.image, source: f.source })
    }

    /// The crop of face `choice` (1-based, left to right; `None`: `--face`, else the default
    /// rule) of `path`. `flag` names the option that chose, for messages.
    pub fn load_choice(&self, path: &Path, choice: Option<u32>, flag: &str) -> Result<Face> {
        let choice = choice.or(self.face);
        let opts = LoadOptions {
            allow_resize: false,
            black_for_nodet: self.black_for_nodet,
            ..LoadOptions::new(&self.images_root, self.landmarks.as_ref())
        };
        let single = |face: facelens_data::LoadedFace| -> Result<Face> {
            if let Some(n) = choice.filter(|&n| n > 1) {
                anyhow::bail!(
                    "{flag} {n}: {} holds one face ({}), not a photo of several",
                    path.display(),
                    match face.source {
                        FaceSource::AlreadyAligned => "an aligned crop",
                        _ => "aligned from its landmarks",
                    }
                );
            }
            Ok(Face { image: face.image, source: face.source, detection: None })
        };
        match facelens_data::load_face(path, &opts) {
            Ok(face) => single(face),
            Err(DataError::NotAligned { path: resolved, width, height, .. }) => {
                if let Some(det) = &self.detector {
                    let photo = facelens_data::decode_image(&resolved)?;
                    let found = det.detect_all(&photo, &resolved)?;
                    let report = choose(&found, &photo, choice, flag, &resolved)?;
                    let face = &found[report.used - 1];
                    let image = facelens_data::align_face(&photo, &face.keypoints, 112)?;
                    return Ok(Face { image, source: FaceSource::Landmarks, detection: Some(Detected { photo, report }) });
                }
                if self.resize {
                    let img = facelens_data::decode_image(&resolved)?;
                    return single(facelens_data::LoadedFace {
                        image: facelens_data::resize_to(&img, 112),
                        source: FaceSource::Resized,
                    });
                }
                anyhow::bail!(
                    "{}: image is {width}x{height}, not an aligned 112x112 crop, and no landmarks or detector are available; \
                     pass --landmarks CSV, run scripts/setup.sh to fetch the detector, or --resize to resize without alignment",
                    resolved.display()
                )
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Numbers `found` (already in left-to-right order) and picks one: `choice`, else the default
/// rule.
fn choose(found: &[Detection], photo: &RgbImage, choice: Option<u32>, flag: &str, path: &Path) -> Result<FaceReport> {
    let faces: Vec<FoundFace> =
        found.iter().enumerate().map(|(i, d)| FoundFace { number: i + 1, bbox: d.bbox, score: d.score }).collect();
    let (used, rule) = match choice {
        Some(n) if n as usize <= found.len() => (n as usize, "--face"),
        Some(n) => {
            let listed: Vec<String> = faces
                .iter()
                .map(|f| format!("{} at ({:.0}, {:.0})-({:.0}, {:.0})", f.number, f.bbox[0], f.bbox[1], f.bbox[2], f.bbox[3]))
                .collect();
            anyhow::bail!(
                "{flag} {n}: {} has {} face{} (numbered left to right: {})",
                path.display(),
                found.len(),
                if found.len() == 1 { "" } else { "s" },
                listed.join("; ")
            );
        }
        None => {
            let best = facelens_models::detect::pick_face(found, photo.width(), photo.height())
                .and_then(|best| found.iter().position(|d| std::ptr::eq(d, best)))
                .with_context(|| format!("{}: no face found", path.display()))?;
            (best + 1, "largest-central")
        }
    };
    Ok(FaceReport { found: found.len(), used, rule, faces })
}
