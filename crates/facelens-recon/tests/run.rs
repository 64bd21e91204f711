//! The training run as library code: its typed results file, the ablation table, the console
//! lines, and (with real data) a tiny run driven and stopped through an observer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use facelens_recon::run::{
    self, ablation_csv, ablation_markdown, AblationRow, Phase, ProbeSummary, RunMessage, Start,
    TrainObserver, TrainResults,
};
use facelens_recon::{ReconMetrics, StepOutcome, StepReport};

fn metrics() -> ReconMetrics {
    let rates = |a: f64, b: f64| {
        BTreeMap::from([("far_0_1pct".to_string(), a), ("far_1pct".to_string(), b)])
    };
    ReconMetrics {
        faces: 8,
        identity_cos_mean: 0.5,
        identity_cos_std: 0.1,
        other_cos_mean: 0.3,
        type1_success: rates(0.25, 0.5),
        type2_success: rates(0.125, 0.375),
        pair_success: rates(0.75, 1.0),
        thresholds: BTreeMap::from([("far_0_1pct".into(), 0.2761), ("far_1pct".into(), 0.1765)]),
        psnr_mean: 12.5,
        ssim_mean: 0.25,
        face_psnr_luma_mean: 14.0,
        face_ssim_luma_mean: 0.4,
        checkerboard_ratio_mean: 1.5,
        cross_model: Some(facelens_recon::eval::CrossModelMetrics {
            model: "sface".into(),
            identity_cos_mean: 0.6,
            identity_cos_std: 0.1,
            other_cos_mean: 0.4,
            type1_success: rates(0.5, 0.75),
            type2_success: rates(0.25, 0.5),
            pair_success: rates(0.75, 1.0),
            thresholds: BTreeMap::from([("far_0_1pct".into(), 0.4), ("far_1pct".into(), 0.3)]),
        }),
    }
}

fn results() -> TrainResults {
    TrainResults {
        experiment: "decoder-train".into(),
        steps: 20,
        resumed_from_step: None,
        train_images: 64,
        device: "cpu".into(),
        train_seconds_this_process: 10.0,
        images_per_second_this_process: 8.0,
        wall_seconds_this_process: 30.0,
        lr_scale: 1.0,
        eval: metrics(),
        eval_faces: Vec::new(),
        probe: Some(ProbeSummary {
            faces: 2,
            top_dimensions: BTreeMap::from([("nose".to_string(), vec![3, 1])]),
        }),
    }
}

#[test]
fn results_json_keeps_its_keys_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("results.json");
    let r = results();
    r.write(&path).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // The keys notebooks and older readers use.
    for key in [
        "experiment",
        "steps",
        "resumed_from_step",
        "train_images",
        "device",
        "train_seconds_this_process",
        "images_per_second_this_process",
        "wall_seconds_this_process",
        "lr_scale",
        "eval",
        "eval_faces",
        "probe",
    ] {
        assert!(v.get(key).is_some(), "results.json lacks `{key}`: {v}");
    }
    assert!(v["resumed_from_step"].is_null());
    assert_eq!(v["eval"]["type1_success"]["far_1pct"], 0.5);
    assert_eq!(v["probe"]["top_dimensions"]["nose"][0], 3);
    assert_eq!(TrainResults::read(&path).unwrap(), r);

    std::fs::write(&path, b"{\"steps\": 1}").unwrap();
    let err = TrainResults::read(&path).unwrap_err().to_string();
    assert!(err.contains("results.json"), "{err}");
}

#[test]
fn ablation_table_has_one_line_per_variant() {
    let rows: Vec<AblationRow> = ["pixel", "identity"]
        .iter()
        .map(|v| AblationRow::new(v, vec![format!("x={v}")], PathBuf::from(v), &results()))
        .collect();
    let md = ablation_markdown(&rows);
    assert_eq!(md.lines().count(), 4, "{md}");
    assert!(
        md.contains("| pixel | 0.5000 | 25.0 % @FAR 0.1%, 50.0 % @FAR 1% |"),
        "{md}"
    );
    let csv = ablation_csv(&rows);
    assert_eq!(
        csv.lines().next().unwrap(),
        "variant,identity_cos,psnr_db,ssim,faces,img_per_s,train_seconds,type1_far_0_1pct,type2_far_0_1pct,type1_far_1pct,type2_far_1pct,\
         face_psnr_luma,face_ssim_luma,checkerboard_ratio,judge,judge_identity_cos,judge_type1_far_0_1pct,judge_type1_far_1pct"
    );
    assert_eq!(csv.lines().count(), 3);
}

#[test]
fn messages_read_as_the_console_lines() {
    let m = RunMessage::NonFinite {
        step: 7,
        outcome: StepOutcome::Skipped {
            reason: "loss is NaN".into(),
        },
    };
    assert_eq!(m.to_string(), "step 7: loss is NaN; update skipped");
    let m = RunMessage::Interrupted {
        step: 3,
        run_dir: PathBuf::from("runs/x"),
    };
    assert_eq!(
        m.to_string(),
        "interrupted after step 3; checkpoint written. Continue with --resume runs/x"
    );
    assert!(
        run::metrics_line(&metrics()).starts_with("identity cos 0.5000 ± 0.1000 | PSNR 12.50 dB")
    );
}

#[test]
fn resuming_a_folder_without_a_checkpoint_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Start::Resume(tmp.path().to_path_buf())
        .prepare()
        .unwrap_err()
        .to_string();
    assert!(err.contains("checkpoint.safetensors"), "{err}");
}

/// Records what a run reports and stops it after `stop_after` steps.
#[derive(Default)]
struct Recorder {
    steps: Vec<u64>,
    phases: Vec<Phase>,
    messages: Vec<String>,
    stop_after: Option<u64>,
    evaluated: bool,
}

impl TrainObserver for Recorder {
    fn on_message(&mut self, m: &RunMessage) {
        self.messages.push(m.to_string());
    }
    fn on_progress(&mut self, phase: Phase, _: u64, _: u64) {
        if self.phases.last() != Some(&phase) {
            self.phases.push(phase);
        }
    }
    fn on_step(&mut self, r: &StepReport, _: f64) {
        self.steps.push(r.step);
    }
    fn on_eval(&mut self, _: &ReconMetrics) {
        self.evaluated = true;
    }
    fn should_stop(&self) -> bool {
        self.stop_after
            .is_some_and(|n| self.steps.len() as u64 >= n)
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn an_observer_sees_every_phase_and_can_stop_a_run_with_a_checkpoint() {
    let root = repo_root();
    for need in [
        "checkpoints/w600k_mbf.safetensors",
        "../shared/data/utkface/landmarks.csv",
        "../shared/data/lfw/pairs.txt",
    ] {
        assert!(
            root.join(need).is_file(),
            "{need} is missing: run scripts/setup.sh"
        );
    }
    // Config paths are relative to the repository root.
    std::env::set_current_dir(&root).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let overrides: Vec<String> = [
        format!("runs_root={}", tmp.path().display()),
        "data.limit=8".into(),
        "train.steps=4".into(),
        "train.batch_size=2".into(),
        "train.warmup_steps=1".into(),
        "decoder.width=16".into(),
        "decoder.min_channels=4".into(),
        "eval.faces=1".into(),
        "log.panel_faces=1".into(),
        "probe.faces=1".into(),
        "probe.top_k=2".into(),
    ]
    .to_vec();
    let start = || Start::Fresh {
        config: PathBuf::from("experiments/decoder-train/ci.toml"),
        overrides: overrides.clone(),
    };

    let mut stopped = Recorder {
        stop_after: Some(2),
        ..Default::default()
    };
    let out = run::train(
        start().prepare().unwrap(),
        &Device::Cpu,
        "cpu",
        &mut stopped,
    )
    .unwrap();
    assert!(!out.completed);
    assert_eq!(stopped.steps, vec![0, 1]);
    assert!(!stopped.evaluated && !out.run_dir.join(run::RESULTS_FILE).exists());
    assert!(stopped
        .messages
        .last()
        .unwrap()
        .starts_with("interrupted after step 2"));
    let ck =
        facelens_recon::Checkpoint::load(&out.run_dir.join(run::CHECKPOINT_FILE), &Device::Cpu)
            .unwrap();
    assert_eq!(ck.meta.step, 2);

    let mut resumed = Recorder::default();
    let prepared = Start::Resume(out.run_dir.clone()).prepare().unwrap();
    let done = run::train(prepared, &Device::Cpu, "cpu", &mut resumed).unwrap();
    assert!(done.completed);
    assert_eq!(resumed.steps, vec![2, 3]);
    // Embeddings are reused on resume, so no embedding phase.
    assert_eq!(resumed.phases, vec![Phase::Train, Phase::Probe]);
    assert!(resumed.evaluated);
    let results = TrainResults::read(&done.run_dir.join(run::RESULTS_FILE)).unwrap();
    assert_eq!((results.steps, results.resumed_from_step), (4, Some(2)));
    assert_eq!(results.probe.unwrap().faces, 1);
}
