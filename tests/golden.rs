//! The whole training step against the independent PaddlePaddle reference (../shared/golden):
//! 2 SGD steps on one batch, every logit, the loss, every gradient of the first step and
//! every state tensor after the second, with compare_step.py's rule: relative L2 error at
//! most max(1e-3, 3 x the error of Paddle's own float32 run against the float64 oracle).

mod common;
use spgnet::checkpoint::TensorFile;
use spgnet::network::TrainOptions;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn rel_l2(x: &[f32], e: &[f32]) -> f64 {
    let d: f64 = x.iter().zip(e).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>().sqrt();
    let n: f64 = e.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
    d / n.max(1e-6)
}

fn check_golden(dir: &Path) {
    let gpu = common::gpu();
    let ck = spgnet::checkpoint::load(&dir.join("weights.safetensors")).unwrap();
    let batch = spgnet::debug_step::parse_batch(&TensorFile::open(&dir.join("batch.safetensors")).unwrap(), ck.config.num_classes).unwrap();
    let ours = pollster::block_on(spgnet::debug_step::run(gpu, &ck, &batch, 2, 0.1, TrainOptions::default())).expect("debug step");
    let ours: HashMap<String, (Vec<usize>, Vec<f32>)> = ours.into_iter().map(|(n, s, d)| (n, (s, d))).collect();
    let expected = TensorFile::open(&dir.join("expected.safetensors")).unwrap();
    let baseline = TensorFile::open(&dir.join("expected-f32.safetensors")).unwrap();
    let mut failures = Vec::new();
    let names = expected.names();
    assert!(names.len() > 500, "golden holds {} tensors", names.len());
    for name in &names {
        let e = expected.floats(name).unwrap().data;
        let (shape, x) = ours.get(name).unwrap_or_else(|| panic!("{}: we produce no '{name}'", dir.display()));
        assert_eq!(Some(shape.clone()), expected.shape(name), "{name}: shape");
        assert!(x.iter().all(|v| v.is_finite()), "{name}: non-finite values");
        let err = rel_l2(x, &e);
        let allowed = (3.0 * rel_l2(&baseline.floats(name).unwrap().data, &e)).max(1e-3);
        if err > allowed {
            failures.push(format!("{name}: error {err:.2e} > allowed {allowed:.2e}"));
        }
    }
    assert!(failures.is_empty(), "{}: {} of {} tensors differ:\n{}", dir.display(), failures.len(), names.len(), failures.join("\n"));
    eprintln!("{}: {} tensors within tolerance", dir.display(), names.len());
}

#[test]
fn training_step_matches_the_paddle_reference() {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/golden/s2p6-b16-32");
    if !shipped.join("expected.safetensors").exists() {
        eprintln!("NOT RUN: golden step test: {} is missing (it is present in CI)", shipped.display());
        return;
    }
    check_golden(&shipped);
    // More goldens made with ../shared/reference/make_golden.py, e.g. SPGNET_GOLDEN_DIRS=/tmp/golden/a:/tmp/golden/b
    if let Ok(dirs) = std::env::var("SPGNET_GOLDEN_DIRS") {
        for d in dirs.split(':').filter(|d| !d.is_empty()) {
            check_golden(Path::new(d));
        }
    }
}
