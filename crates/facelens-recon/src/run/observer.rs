//! What a training run tells its caller while it works. The library never prints: binaries
//! implement [`TrainObserver`] to draw progress bars and print [`RunMessage`]s, and feed Ctrl-C
//! into [`TrainObserver::should_stop`].

use std::fmt;
use std::path::PathBuf;

use crate::eval::ReconMetrics;
use crate::trainer::{StepOutcome, StepReport};

use super::results::TrainResults;

/// The long phases of a run, each reported with [`TrainObserver::on_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Embedding the training crops once (skipped when a resumed run has them).
    Embed,
    /// The training loop; `done` is the number of finished steps.
    Train,
    /// Region probing of held-out faces after training.
    Probe,
}

/// Milestones worth a line on the console. `Display` gives the line.
#[derive(Debug, Clone)]
pub enum RunMessage {
    RunDir(PathBuf),
    /// Something the run worked around (fewer LFW faces than asked, stale embeddings).
    Note(String),
    Embedded {
        crops: usize,
        seconds: f64,
    },
    Training {
        first: u64,
        total: u64,
        device: String,
        crops: usize,
        batch: usize,
        width: usize,
    },
    /// A step whose loss or gradients were not finite (see [`StepOutcome`]).
    NonFinite {
        step: u64,
        outcome: StepOutcome,
    },
    /// [`TrainObserver::should_stop`] ended the loop; the checkpoint covers `step` steps.
    Interrupted {
        step: u64,
        run_dir: PathBuf,
    },
    Results(PathBuf),
}

impl fmt::Display for RunMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunMessage::RunDir(p) => write!(f, "run directory: {}", p.display()),
            RunMessage::Note(s) => write!(f, "note: {s}"),
            RunMessage::Embedded { crops, seconds } => {
                write!(f, "embedded {crops} training crops in {seconds:.1} s")
            }
            RunMessage::Training {
                first,
                total,
                device,
                crops,
                batch,
                width,
            } => write!(
                f,
                "training steps {first}..{total} on {device} ({crops} crops, batch {batch}, decoder width {width})"
            ),
            RunMessage::NonFinite { step, outcome } => match outcome {
                StepOutcome::Updated => write!(f, "step {step}: updated"),
                StepOutcome::Skipped { reason } => {
                    write!(f, "step {step}: {reason}; update skipped")
                }
                StepOutcome::Recovered { reason, lr_scale } => write!(
                    f,
                    "step {step}: {reason}; restored the last good checkpoint, lr scale now {lr_scale}"
                ),
            },
            RunMessage::Interrupted { step, run_dir } => write!(
                f,
                "interrupted after step {step}; checkpoint written. Continue with --resume {}",
                run_dir.display()
            ),
            RunMessage::Results(p) => write!(f, "results: {}", p.display()),
        }
    }
}

/// Callbacks of a training run; every method has a no-op default.
pub trait TrainObserver {
    fn on_message(&mut self, _message: &RunMessage) {}
    /// `done` of `total` units of `phase` are finished.
    fn on_progress(&mut self, _phase: Phase, _done: u64, _total: u64) {}
    /// After every step, with the step's throughput.
    fn on_step(&mut self, _report: &StepReport, _images_per_second: f64) {}
    /// After a periodic checkpoint covering `step` steps.
    fn on_checkpoint(&mut self, _step: u64, _path: &std::path::Path) {}
    /// The final evaluation, before probing.
    fn on_eval(&mut self, _metrics: &ReconMetrics) {}
    /// The run finished and `results.json` is written.
    fn on_finish(&mut self, _results: &TrainResults) {}
    /// Polled after every step: true ends the loop with a checkpoint (e.g. after Ctrl-C).
    fn should_stop(&self) -> bool {
        false
    }
}

/// An observer that ignores everything (tests, library callers).
impl TrainObserver for () {}

/// The one-line summary of an evaluation that binaries print.
pub fn metrics_line(m: &ReconMetrics) -> String {
    let mut line = format!(
        "identity cos {:.4} ± {:.4} | PSNR {:.2} dB | SSIM {:.4} | face luma PSNR {:.2} dB, SSIM {:.4} | checkerboard {:.2} | type I {:?} | type II {:?} ({} LFW faces)",
        m.identity_cos_mean,
        m.identity_cos_std,
        m.psnr_mean,
        m.ssim_mean,
        m.face_psnr_luma_mean,
        m.face_ssim_luma_mean,
        m.checkerboard_ratio_mean,
        m.type1_success,
        m.type2_success,
        m.faces
    );
    if let Some(c) = &m.cross_model {
        line.push_str(&format!(
            "\n{}: identity cos {:.4} ± {:.4} (against another image of the person {:.4}) | type I {:?} | type II {:?}",
            c.model, c.identity_cos_mean, c.identity_cos_std, c.other_cos_mean, c.type1_success, c.type2_success
        ));
    }
    line
}
