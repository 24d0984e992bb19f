//! A real training run killed with SIGKILL in the middle of an epoch resumes from its last
//! complete checkpoint and ends with the same weights as a run that was never interrupted.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn train_cmd(out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spgnet"));
    c.args(["train", "--dataset", "fashion-mnist", "--limit", "192", "--batch", "32", "--epochs", "3", "--crop-pad", "2", "--seed", "3", "--lr", "0.05"])
        .arg("--out")
        .arg(out)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[test]
fn killed_run_resumes_to_the_same_weights() {
    let d = tempfile::tempdir().unwrap();
    let (full, killed) = (d.path().join("full"), d.path().join("killed"));
    assert!(train_cmd(&full).status().unwrap().success());

    let mut child = train_cmd(&killed).spawn().unwrap();
    let t0 = Instant::now();
    let resume = killed.join("resume.safetensors");
    while !resume.exists() {
        assert!(t0.elapsed() < Duration::from_secs(300), "the first epoch never finished");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Into the next epoch, then SIGKILL.
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let done = std::fs::read_to_string(killed.join("metrics.csv")).unwrap().lines().count() - 1;
    assert!(done < 3, "the run finished before it was killed");
    // Whatever the moment, the checkpoints on disk are whole.
    spgnet::checkpoint::load(&killed.join("last.safetensors")).unwrap();

    let mut resume_cmd = Command::new(env!("CARGO_BIN_EXE_spgnet"));
    resume_cmd.args(["train", "--resume"]).arg(&killed).env("XDG_RUNTIME_DIR", std::env::temp_dir()).stderr(Stdio::null());
    assert!(resume_cmd.status().unwrap().success());
    let a = spgnet::checkpoint::load(&full.join("last.safetensors")).unwrap();
    let b = spgnet::checkpoint::load(&killed.join("last.safetensors")).unwrap();
    for (name, va) in &a.tensors {
        let diff = va.iter().zip(&b.tensors[name]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-6, "{name}: killed-and-resumed run differs by {diff}");
    }
    assert_eq!(std::fs::read_to_string(killed.join("metrics.csv")).unwrap().lines().count(), 4);
}

#[test]
fn unwritable_output_folder_is_reported_before_training() {
    let out = Command::new(env!("CARGO_BIN_EXE_spgnet"))
        .args(["train", "--dataset", "fashion-mnist", "--out", "/dev/null/run"])
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/null/run: cannot create the output folder"), "{err}");
    assert!(!err.contains("training SPGNet"), "must fail before training starts: {err}");
}
