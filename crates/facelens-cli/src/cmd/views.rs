//! `facelens eval views DIR`: one table per backbone over Deletion/Insertion, ROAD, ground-truth
//! patches and model randomisation, from the per-pair files of `eval xfv`, `eval patch` and
//! `eval sanity` (`facelens_protocol::views`), as Markdown, CSV and TensorBoard.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use facelens_protocol::views::{self, COLUMNS};

#[derive(Args)]
pub struct ViewsEvalArgs {
    /// Folder of one backbone's per-pair files: `xfv-grey/<method>.jsonl`, `xfv-road/<method>.jsonl`
    /// (`eval xfv --per-pair`), `sanity/<method>.jsonl`, `patch/*.jsonl` (the `per-pair.jsonl` of
    /// `eval sanity` and `eval patch`).
    pub dir: PathBuf,
    /// The method every other is compared with, pair by pair.
    #[arg(long, default_value = "fggb")]
    pub reference: String,
    /// Bootstrap resamples of the paired intervals.
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder of the patch files under DIR (e.g. `patch-reject` for `eval patch --reject-only` runs).
    #[arg(long, default_value = "patch")]
    pub patch: String,
    /// Appended to the names of what is written (`table<suffix>.md`, ..., `tensorboard<suffix>/`).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub suffix: String,
}

pub fn run(a: ViewsEvalArgs) -> Result<()> {
    if !(1..=1_000_000).contains(&a.resamples) {
        bail!("--resamples must be 1..=1000000, got {}", a.resamples);
    }
    for (flag, value) in [("--patch", &a.patch), ("--suffix", &a.suffix)] {
        if value.contains(['/', '\\']) || value == ".." {
            bail!("{flag} must be a plain name inside DIR, got {value:?}");
        }
    }
    let values = views::load(&a.dir, &a.patch)?;
    let methods = views::methods(&values, &a.reference);
    if methods.is_empty() {
        bail!("{}: no per-pair files (xfv-grey/, xfv-road/, sanity/, {}/)", a.dir.display(), a.patch);
    }
    let rows = views::intervals(&values, &a.reference, a.resamples, a.seed);
    let table = views::table_markdown(&values, &a.reference);
    let intervals = views::intervals_markdown(&rows, &a.reference, a.resamples);
    let file = |stem: &str, ext: &str| a.dir.join(format!("{stem}{}.{ext}", a.suffix));
    crate::output::write_atomic(&file("table", "md"), table.as_bytes())?;
    crate::output::write_atomic(&file("table", "csv"), views::table_csv(&values, &a.reference).as_bytes())?;
    crate::output::write_atomic(&file("intervals", "md"), intervals.as_bytes())?;

    // A fresh event file replaces the previous one, so TensorBoard never shows two versions of a cell.
    let logdir = a.dir.join(format!("tensorboard{}", a.suffix));
    let staging = a.dir.join(format!(".tensorboard{}.{}", a.suffix, std::process::id()));
    let mut tb = facelens_board::SummaryWriter::create(&staging)?;
    tb.add_text("views/table", &table, 0)?;
    tb.add_text("views/intervals", &intervals, 0)?;
    for (c, column) in COLUMNS.iter().enumerate() {
        for m in &methods {
            if let Some((mean, _)) = views::cell(&values, c, m) {
                tb.add_scalar(&format!("views/{}/{m}", column.tag), mean, 0)?;
            }
        }
        for (m, cells) in &rows {
            if let Some(i) = cells[c] {
                tb.add_scalar(&format!("{}_minus/{}/{m}", a.reference, column.tag), i.mean, 0)?;
            }
        }
    }
    tb.close()?;
    if logdir.exists() {
        std::fs::remove_dir_all(&logdir).with_context(|| format!("replacing {}", logdir.display()))?;
    }
    std::fs::rename(&staging, &logdir).with_context(|| format!("moving {} to {}", staging.display(), logdir.display()))?;
    println!("{table}\n{intervals}");
    eprintln!("wrote {}, {}, {} and {}/", file("table", "md").display(), file("table", "csv").display(), file("intervals", "md").display(), logdir.display());
    Ok(())
}
