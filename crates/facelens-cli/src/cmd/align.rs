//! `facelens align IMG... --out DIR`

use std::collections::BTreeMap;
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
    // Every input is named, checked and aligned before the folder or any crop is written, so a
    // bad input leaves nothing behind. Crops are 112x112, so holding them all is cheap.
    let names = names_in_order(&a.images);
    let mut seen: BTreeMap<&str, &PathBuf> = BTreeMap::new();
    for (name, path) in &names {
        if let Some(first) = seen.insert(name, path) {
            anyhow::bail!(
                "{} and {} would both be written as {}; align them into different folders",
                first.display(),
                path.display(),
                a.out.join(name).display()
            );
        }
    }
    let loader = FaceLoader::new(&a.faces)?;
    let bar = facelens_board::progress::bar(a.images.len() as u64).with_message("aligning");
    let mut crops = Vec::with_capacity(a.images.len());
    for path in &a.images {
        crops.push(loader.load(path)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    for ((name, _), crop) in names.iter().zip(&crops) {
        crate::output::write_png(&a.out.join(name), crop)?;
    }
    eprintln!("aligned {} faces into {}", crops.len(), a.out.display());
    Ok(())
}

/// `<stem>.png` for each input, in input order.
fn names_in_order(images: &[PathBuf]) -> Vec<(String, &PathBuf)> {
    images
        .iter()
        .map(|p| (format!("{}.png", p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "face".into())), p))
        .collect()
}
