//! The end of a completed run: the final checkpoint and exported decoder, evaluation on held-out
//! LFW faces, region probing, and `results.json`.

use std::collections::BTreeMap;

use crate::checkpoint::save_decoder;
use crate::error::Result;
use crate::eval::{evaluate, pair_grid, Judge, ReconMetrics};
use crate::run::config::EvalConfig;
use facelens_board::SummaryWriter;
use facelens_models::FaceModel;

use super::observer::{Phase, RunMessage, TrainObserver};
use super::probe::{probe_faces, split_faces};
use super::results::{write_png, ProbeSummary, TrainResults};
use super::train::Session;
use super::{CHECKPOINT_FILE, DECODER_FILE, EXPERIMENT, RESULTS_FILE};

impl Session {
    pub(super) fn finish(mut self, obs: &mut dyn TrainObserver) -> Result<TrainResults> {
        let total = self.trainer.config().steps;
        self.trainer
            .save_checkpoint(&self.run_path.join(CHECKPOINT_FILE))?;
        save_decoder(
            &self.run_path.join(DECODER_FILE),
            self.trainer.decoder_config(),
            &self.trainer.decoder_tensors()?,
        )?;
        let train_s = self.t_loop.elapsed().as_secs_f64();

        let cfg = &self.cfg;
        let thresholds = cfg.eval.named_thresholds();
        let eval_faces = &self.faces[..cfg.eval.faces.min(self.faces.len())];
        let judge_model = open_judge(&cfg.eval, self.model.device.clone())?;
        let judge = judge_model.as_ref().map(|(model, thresholds)| Judge { model, thresholds: thresholds.clone() });
        let evaluation = evaluate(
            self.trainer.decoder(),
            &self.model,
            eval_faces,
            &thresholds,
            cfg.eval.batch,
            judge.as_ref(),
        )?;
        let m = &evaluation.metrics;
        let (tb, at) = (&mut self.tb, total as i64);
        log_metrics(tb, m, at)?;
        let inputs: Vec<_> = eval_faces.iter().map(|f| f.source.clone()).collect();
        let grid = pair_grid(&inputs, &evaluation.reconstructions, 5);
        write_png(&self.run_path.join("reconstructions.png"), &grid)?;
        tb.add_image("eval/lfw_input_vs_reconstruction", &grid, at)?;
        obs.on_eval(m);

        let probe = if cfg.probe.faces > 0 {
            let n = cfg.probe.faces.min(self.faces.len());
            let (names, crops) = split_faces(&self.faces[..n]);
            let stats = probe_faces(
                self.trainer.decoder(),
                &self.model,
                &names,
                &crops,
                cfg.probe.top_k,
                cfg.probe.batch,
                &self.run_path.join("probe"),
                &mut |done, total| obs.on_progress(Phase::Probe, done as u64, total as u64),
            )?;
            let top_dimensions: BTreeMap<String, Vec<usize>> = stats
                .regions
                .iter()
                .map(|r| (r.region.to_string(), r.top.iter().map(|d| d.dim).collect()))
                .collect();
            Some(ProbeSummary {
                faces: n,
                top_dimensions,
            })
        } else {
            None
        };
        self.tb.close()?;

        let results = TrainResults {
            experiment: EXPERIMENT.to_string(),
            steps: total,
            resumed_from_step: self.resumed_from,
            train_images: self.train_images,
            device: self.device_label.clone(),
            train_seconds_this_process: train_s,
            images_per_second_this_process: self.images_seen as f64 / train_s.max(1e-9),
            wall_seconds_this_process: self.t_start.elapsed().as_secs_f64(),
            lr_scale: self.trainer.lr_scale(),
            eval: evaluation.metrics,
            eval_faces: evaluation.scores,
            probe,
        };
        let path = self.run_path.join(RESULTS_FILE);
        results.write(&path)?;
        obs.on_message(&RunMessage::Results(path));
        obs.on_finish(&results);
        Ok(results)
    }
}

/// Loads the configured judge model (if any) with its thresholds.
pub(crate) fn open_judge(
    eval: &EvalConfig,
    device: candle_core::Device,
) -> Result<Option<(FaceModel, Vec<crate::eval::NamedThreshold>)>> {
    match eval.judge_thresholds()? {
        Some((name, thresholds)) => Ok(Some((FaceModel::load(&name, &device)?, thresholds))),
        None => Ok(None),
    }
}

/// The evaluation's scalars under `eval/` (cross-model ones under `eval/<judge>/`).
fn log_metrics(tb: &mut SummaryWriter, m: &ReconMetrics, at: i64) -> Result<()> {
    tb.add_scalar("eval/identity_cos", m.identity_cos_mean, at)?;
    tb.add_scalar("eval/psnr", m.psnr_mean, at)?;
    tb.add_scalar("eval/ssim", m.ssim_mean, at)?;
    tb.add_scalar("eval/face_psnr_luma", m.face_psnr_luma_mean, at)?;
    tb.add_scalar("eval/face_ssim_luma", m.face_ssim_luma_mean, at)?;
    tb.add_scalar("eval/checkerboard_ratio", m.checkerboard_ratio_mean, at)?;
    for (name, rate) in &m.type1_success {
        tb.add_scalar(&format!("eval/type1_success/{name}"), *rate, at)?;
    }
    for (name, rate) in &m.type2_success {
        tb.add_scalar(&format!("eval/type2_success/{name}"), *rate, at)?;
    }
    if let Some(c) = &m.cross_model {
        tb.add_scalar(&format!("eval/{}/identity_cos", c.model), c.identity_cos_mean, at)?;
        for (name, rate) in &c.type1_success {
            tb.add_scalar(&format!("eval/{}/type1_success/{name}", c.model), *rate, at)?;
        }
        for (name, rate) in &c.type2_success {
            tb.add_scalar(&format!("eval/{}/type2_success/{name}", c.model), *rate, at)?;
        }
    }
    Ok(())
}
