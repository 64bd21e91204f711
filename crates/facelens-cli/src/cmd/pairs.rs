//! The inputs every `eval` command shares: a pair list, its images, how to align them, the model.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use clap::Args;
use facelens_data::Pair;
use facelens_models::FaceModel;

use crate::faces::{FaceArgs, FaceLoader};

#[derive(Args)]
pub struct PairListArgs {
    /// Pair list in LFW View-2 `pairs.txt` format.
    #[arg(long)]
    pub pairs: PathBuf,
    /// Folder holding `<Name>/<Name>_NNNN.jpg`.
    #[arg(long)]
    pub images: PathBuf,
    #[arg(long, default_value = facelens_models::zoo::DEFAULT_MODEL)]
    pub model: String,
    #[command(flatten)]
    pub faces: FaceArgs,
}

impl PairListArgs {
    /// The pairs (after checking that every named person has an image folder), the model, and a
    /// face loader whose landmark file names resolve against `--images` unless `--images-root` says otherwise.
    pub fn open(&self, device: &Device) -> Result<(Vec<Pair>, FaceModel, FaceLoader)> {
        let pairs = facelens_data::load_pairs(&self.pairs)?;
        facelens_data::check_pair_images(&pairs, &self.pairs, &self.images)?;
        let model = super::load_model(&self.model, device)?;
        let mut face_args = self.faces.clone();
        face_args.images_root.get_or_insert(self.images.clone());
        Ok((pairs, model, FaceLoader::new(&face_args)?))
    }
}

