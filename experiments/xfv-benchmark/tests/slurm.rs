//! The sharded benchmark as a real Slurm job array: `scripts/test-slurm.sh` starts a one-node
//! Slurm cluster on localhost, runs the CI config (made small) as a 2-task `sbatch --array`, merges
//! the shards and checks the merged tables equal an unsharded run byte for byte.
//!
//! Ignored by default: it needs `../shared`, root, and Debian's slurm-wlm and munge (the script
//! installs them with apt-get when missing). Run it with
//! `cargo test --release -p xfv-benchmark --test slurm -- --include-ignored --nocapture`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
#[ignore = "needs ../shared, root and Debian's slurm-wlm (CI runs ignored tests)"]
fn job_array_shards_merge_to_the_unsharded_tables() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = Command::new("bash")
        .arg("scripts/test-slurm.sh")
        .arg(env!("CARGO_BIN_EXE_xfv-benchmark"))
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("bash runs scripts/test-slurm.sh");
    // Line by line, so that a run of several minutes shows its progress under --nocapture.
    let mut stdout = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line.expect("script output is UTF-8");
        println!("{line}");
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = child.wait().expect("script finishes");
    assert!(status.success(), "scripts/test-slurm.sh failed ({status}); its output is above");
    assert!(
        stdout.lines().any(|l| l == "slurm: PASS"),
        "scripts/test-slurm.sh exited 0 without `slurm: PASS`"
    );
}
