//! Turning user-supplied image paths into aligned 112x112 crops.
//!
//! Order of preference: a landmark CSV row for the file; an image that is already a
//! 112x112 crop; the SCRFD detector on a raw photo (when its checkpoint was fetched);
//! a plain resize only when the user asked for it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use facelens_data::{DataError, LandmarkTable, LoadOptions, RgbImage};

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
}

pub struct FaceLoader {
    landmarks: Option<LandmarkTable>,
    images_root: PathBuf,
    resize: bool,
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
        Ok(Self { landmarks, images_root, resize: args.resize, black_for_nodet: false, detector })
    }

    /// An aligned crop of `path`, or an error that names the file and what to do.
    pub fn load(&self, path: &Path) -> Result<RgbImage> {
        self.load_face(path).map(|f| f.image)
    }

    /// Like [`FaceLoader::load`], also saying how the crop was made.
    pub fn load_face(&self, path: &Path) -> Result<facelens_data::LoadedFace> {
        let opts = LoadOptions {
            allow_resize: false,
            black_for_nodet: self.black_for_nodet,
            ..LoadOptions::new(&self.images_root, self.landmarks.as_ref())
        };
        let made = |image, source| facelens_data::LoadedFace { image, source };
        match facelens_data::load_face(path, &opts) {
            Ok(face) => Ok(face),
            Err(DataError::NotAligned { path: resolved, width, height, .. }) => {
                if let Some(det) = &self.detector {
                    let img = facelens_data::decode_image(&resolved)?;
                    return Ok(made(det.align(&img, &resolved)?, facelens_data::FaceSource::Landmarks));
                }
                if self.resize {
                    let img = facelens_data::decode_image(&resolved)?;
                    return Ok(made(facelens_data::resize_to(&img, 112), facelens_data::FaceSource::Resized));
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
