//! A real training run killed with SIGKILL in the middle of an epoch, or whose device is
//! lost, resumes from its last complete checkpoint and ends with the same weights as a run
//! that was never interrupted.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn train_cmd(out: &Path) -> Command {
    train_cmd_of(out, 192, 3)
}

/// `spgnet train` on the first `limit` Fashion-MNIST images for `epochs` epochs of limit / 32 steps.
fn train_cmd_of(out: &Path, limit: usize, epochs: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spgnet"));
    let (limit, epochs) = (limit.to_string(), epochs.to_string());
    c.args([
        "train",
        "--dataset",
        "fashion-mnist",
        "--limit",
        &limit,
        "--batch",
        "32",
        "--epochs",
        &epochs,
        "--crop-pad",
        "2",
        "--seed",
        "3",
        "--lr",
        "0.05",
    ])
    .arg("--out")
    .arg(out)
    .env("XDG_RUNTIME_DIR", std::env::temp_dir())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

#[test]
fn killed_or_device_lost_run_resumes_to_the_same_weights() {
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

    resume_and_compare(&full, &killed);

    // A device lost in epoch 2 (6 steps per epoch; injected, lavapipe cannot lose one): a
    // one-line error saying what to do, exit 1, epoch 1's checkpoints whole, and --resume
    // again reaches the uninterrupted run's weights.
    let lost = d.path().join("lost");
    let out = train_cmd(&lost).env("SPGNET_TEST_LOSE_DEVICE_AT_STEP", "8").stderr(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last_line = err.lines().last().unwrap();
    assert!(last_line.starts_with("error: the GPU device was lost"), "{err}");
    let names = format!(
        "the last good checkpoint is {} (epoch 1); continue with `spgnet train --resume {}`",
        lost.join("last.safetensors").display(),
        lost.display()
    );
    assert!(last_line.ends_with(&names), "{err}");
    assert_eq!(std::fs::read_to_string(lost.join("metrics.csv")).unwrap().lines().count(), 2);
    spgnet::checkpoint::load(&lost.join("last.safetensors")).unwrap();
    resume_and_compare(&full, &lost);
}

/// Send `signal` to a child process.
fn signal(child: &std::process::Child, signal: &str) {
    assert!(Command::new("kill").args(["-s", signal, &child.id().to_string()]).status().unwrap().success());
}

/// Wait until the run's first epoch is done, then `wait` more: the middle of epoch 2.
fn into_epoch_two(child: &mut std::process::Child, out: &Path, wait: Duration) {
    let t0 = Instant::now();
    while !out.join("resume.safetensors").exists() {
        assert!(t0.elapsed() < Duration::from_secs(300), "the first epoch never finished");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(wait);
}

#[test]
fn ctrl_c_and_sigterm_save_a_resume_point_at_the_current_step() {
    let d = tempfile::tempdir().unwrap();
    // 20 steps per epoch, two epochs
    let full = d.path().join("full");
    assert!(train_cmd_of(&full, 640, 2).status().unwrap().success());
    for sig in ["INT", "TERM"] {
        let dir = d.path().join(sig);
        let mut child = train_cmd_of(&dir, 640, 2).stderr(Stdio::piped()).spawn().unwrap();
        into_epoch_two(&mut child, &dir, Duration::from_millis(400));
        let t = Instant::now();
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(t.elapsed() < Duration::from_secs(10), "SIG{sig}: the run took {:?} to stop", t.elapsed());
        assert_eq!(out.status.code(), Some(130), "SIG{sig}: {err}");
        let last = err.lines().last().unwrap();
        assert!(
            last.starts_with("interrupted in epoch 2 after step ") && last.contains(&format!("spgnet train --resume {}", dir.display())),
            "SIG{sig}: {err}"
        );
        // the resume point is at that step, inside epoch 2
        let file = spgnet::checkpoint::TensorFile::open(&dir.join("resume.safetensors")).unwrap();
        let meta = file.metadata();
        let batches: usize = meta["progress.batches_done"].parse().unwrap();
        assert!(meta["progress.epochs_done"] == "1" && batches > 0 && batches < 20, "SIG{sig}: resume point {meta:?}");
        resume_and_compare_epochs(&full, &dir, 2);
    }
    // A second Ctrl-C exits at once; what was written stays whole, and the run still resumes.
    let dir = d.path().join("twice");
    let mut child = train_cmd_of(&dir, 640, 2).spawn().unwrap();
    into_epoch_two(&mut child, &dir, Duration::from_millis(400));
    signal(&child, "INT");
    signal(&child, "INT");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    spgnet::checkpoint::load(&dir.join("last.safetensors")).unwrap();
    spgnet::checkpoint::TensorFile::open(&dir.join("resume.safetensors")).unwrap();
    resume_and_compare_epochs(&full, &dir, 2);
}

/// `train --resume dir` finishes the run, with the same final weights as `full`.
fn resume_and_compare(full: &Path, dir: &Path) {
    resume_and_compare_epochs(full, dir, 3)
}

/// `spgnet train --resume dir`.
fn resume_cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spgnet"));
    c.args(["train", "--resume"]).arg(dir).env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn resume_and_compare_epochs(full: &Path, dir: &Path, epochs: usize) {
    assert!(resume_cmd(dir).stderr(Stdio::null()).status().unwrap().success());
    let a = spgnet::checkpoint::load(&full.join("last.safetensors")).unwrap();
    let b = spgnet::checkpoint::load(&dir.join("last.safetensors")).unwrap();
    for (name, va) in &a.tensors {
        let diff = va.iter().zip(&b.tensors[name]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-6, "{name}: interrupted-and-resumed run {} differs by {diff}", dir.display());
    }
    assert_eq!(std::fs::read_to_string(dir.join("metrics.csv")).unwrap().lines().count(), epochs + 1);
    // steps.csv has a row every 10 steps of the whole run, as the uninterrupted run's
    let steps = |d: &Path| spgnet::train::read_steps(&d.join("steps.csv")).iter().map(|r| r.step).collect::<Vec<_>>();
    assert_eq!(steps(dir), steps(full));
    assert!(!steps(full).is_empty());
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
    assert!(!err.contains("model: SPGNet"), "must fail before training starts: {err}");
}

/// A small real filesystem (tmpfs) mounted for one test, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    /// None where mounting is not permitted (not root, no CAP_SYS_ADMIN).
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn full_disk_is_reported_before_training() {
    // 8 MiB free: less than the run's checkpoints (about 79 MiB for s2p6); 512 KiB: not
    // even the write probe fits.
    for (size, expect) in [("8m", "the disk has 8.0 MiB free but this run's checkpoints need"), ("512k", "No space left on device")] {
        let Some(disk) = SmallDisk::mount(size) else {
            eprintln!("SKIPPED full_disk_is_reported_before_training: cannot mount a tmpfs here (needs root)");
            return;
        };
        let run = disk.0.path().join("run");
        let out = Command::new(env!("CARGO_BIN_EXE_spgnet"))
            .args(["train", "--dataset", "fashion-mnist", "--limit", "64", "--batch", "32", "--epochs", "1", "--out"])
            .arg(&run)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.lines().last().unwrap().starts_with("error: ") && err.contains(expect), "{size}: {err}");
        assert!(!err.contains("model: SPGNet"), "must fail before training starts: {err}");
        assert_eq!(std::fs::read_dir(&run).unwrap().count(), 0, "nothing left behind");
    }
}

#[test]
fn a_second_run_on_the_same_folder_is_refused_until_the_first_ends() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let mut first = train_cmd_of(&dir, 640, 2).spawn().unwrap();
    into_epoch_two(&mut first, &dir, Duration::from_millis(100));
    let out = train_cmd_of(&dir, 640, 2).stderr(Stdio::piped()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.contains("another spgnet train") && last.contains(&format!("pid {}", first.id())), "{err}");
    // a killed run leaves no stale lock: the folder resumes at once
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(resume_cmd(&dir).stderr(Stdio::null()).status().unwrap().success());
}

#[test]
fn a_disk_that_fills_up_mid_run_stops_it_with_the_files_before_intact() {
    // Room for the run at its start, then the disk fills (another program's file): the next
    // checkpoint write fails with a clear message, and what epoch 1 wrote stays loadable.
    let Some(disk) = SmallDisk::mount("200m") else {
        eprintln!("SKIPPED a_disk_that_fills_up_mid_run: cannot mount a tmpfs here (needs root)");
        return;
    };
    let run = disk.0.path().join("run");
    let mut child = train_cmd_of(&run, 640, 3).stderr(Stdio::piped()).spawn().unwrap();
    into_epoch_two(&mut child, &run, Duration::from_millis(0));
    let last_before = std::fs::read(run.join("last.safetensors")).unwrap();
    let filler = disk.0.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![7u8; 1 << 20];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.starts_with(&format!("error: no space left on {}", run.display())), "{err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    for f in ["last.safetensors", "best.safetensors"] {
        spgnet::checkpoint::load(&run.join(f)).unwrap();
    }
    assert_eq!(std::fs::read(run.join("last.safetensors")).unwrap(), last_before, "epoch 1's checkpoint is untouched");
    spgnet::checkpoint::TensorFile::open(&run.join("resume.safetensors")).unwrap();
    // freed, the run resumes from epoch 1's resume point
    std::fs::remove_file(&filler).unwrap();
    assert!(resume_cmd(&run).stderr(Stdio::null()).status().unwrap().success());
}

#[test]
fn a_damaged_resume_file_is_refused_with_a_clear_message() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    assert!(train_cmd_of(&run, 64, 1).status().unwrap().success());
    let p = run.join("resume.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    let at = bytes.len() - 4097;
    bytes[at] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    let out = resume_cmd(&run).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.lines().last().unwrap().contains("resume.safetensors: the tensor data is damaged (checksum"), "{err}");
}

#[test]
fn a_long_run_keeps_a_fixed_set_of_files() {
    // 25 epochs of one step each, with an EMA (the most files a run writes): the folder ends
    // with the same eight files a one-epoch run has, no temporary or lock file left behind.
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let mut cmd = train_cmd_of(&run, 32, 25);
    assert!(cmd.args(["--ema", "0.9"]).status().unwrap().success());
    let mut names: Vec<String> = std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    names.sort();
    let want = [
        "acc.png",
        "best.safetensors",
        "last.safetensors",
        "live.safetensors",
        "loss.png",
        "metrics.csv",
        "resume.safetensors",
        "steps.csv",
    ];
    assert_eq!(names, want);
    assert_eq!(std::fs::read_to_string(run.join("metrics.csv")).unwrap().lines().count(), 26);
}
