//! `facelens align IMG... --out DIR`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::faces::{FaceArgs, FaceLoader};

#[derive(Args)]
pub struct AlignArgs {
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Output folder; each crop is written as `<stem>.png`.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub faces: FaceArgs,
}

pub fn run(a: AlignArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let loader = FaceLoader::new(&a.faces)?;
    let bar = facelens_board::progress::bar(a.images.len() as u64).with_message("aligning");
    for path in &a.images {
        let crop = loader.load(path)?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "face".into());
        crate::output::write_png(&a.out.join(format!("{stem}.png")), &crop)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!("aligned {} faces into {}", a.images.len(), a.out.display());
    Ok(())
}
