//! The model shipped in assets/ (s2p6 trained here on Fashion-MNIST): its metadata, its test
//! accuracy through `spgnet eval` without --weights, and real PNG files as a user has them,
//! gray 28x28 and upscaled RGB, labelled right about as often as eval says.

use std::path::Path;
use std::process::Command;

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn spgnet(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_spgnet")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().unwrap();
    assert!(out.status.success(), "spgnet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn json(s: &str) -> Vec<serde_json::Value> {
    s.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn shipped_model_metadata_and_accuracy() {
    let path = spgnet::infer::default_weights();
    assert!(path.is_file(), "{} is missing", path.display());
    assert!(std::fs::metadata(&path).unwrap().len() < 8 << 20, "keep the asset small");
    let ck = spgnet::checkpoint::load(&path).unwrap();
    assert_eq!(ck.meta.classes.as_ref().unwrap()[9], "Ankle boot");
    // Fashion-MNIST's 28x28 gray images, at their size or upscaled twice (maps of 28 after the stem)
    assert!(matches!(ck.meta.input_size, Some(28 | 56)), "input size {:?}", ck.meta.input_size);
    assert_eq!(ck.config.in_channels, 1);
    assert_eq!(ck.meta.dataset.as_deref(), Some("fashion-mnist"));
    let recorded: f64 = spgnet::checkpoint::TensorFile::open(&path).unwrap().metadata()["spgnet.test_accuracy"].parse().unwrap();
    assert!(recorded >= 0.93, "the shipped model must reach 93% test accuracy (records {recorded})");
    assert!(Path::new(FASHION).is_dir(), "install dataset-fashion-mnist (bash scripts/setup.sh)");
    let e = &json(&spgnet(&["eval", "--dataset", "fashion-mnist", "--limit", "1000", "--json"]))[0];
    let acc = e["accuracy"].as_f64().unwrap();
    eprintln!("shipped model: {:.2}% on the first 1000 test images (recorded on all 10000: {:.2}%)", 100.0 * acc, 100.0 * recorded);
    assert!((acc - recorded).abs() < 0.03, "eval gives {acc}, the asset records {recorded}");
}

#[test]
fn png_files_are_labelled_as_often_as_eval_says() {
    let n = 200;
    let splits = spgnet::datasets::load(spgnet::data::Kind::FashionMnist, Path::new(FASHION), 0.1, 0).unwrap();
    let test = splits.test;
    let dir = tempfile::tempdir().unwrap();
    let (gray, rgb) = (dir.path().join("gray"), dir.path().join("rgb"));
    std::fs::create_dir(&gray).unwrap();
    std::fs::create_dir(&rgb).unwrap();
    for i in 0..n {
        let img = image::GrayImage::from_raw(28, 28, test.image(i).to_vec()).unwrap();
        img.save(gray.join(format!("{i:04}.png"))).unwrap();
        let big = image::DynamicImage::from(img).resize_exact(56, 56, image::imageops::FilterType::Triangle).to_rgb8();
        big.save(rgb.join(format!("{i:04}.png"))).unwrap();
    }
    let e = &json(&spgnet(&["eval", "--dataset", "fashion-mnist", "--limit", &n.to_string(), "--json"]))[0];
    let eval_acc = e["accuracy"].as_f64().unwrap();
    for folder in [&gray, &rgb] {
        let lines = json(&spgnet(&["infer", "--json", "--top", "1", folder.to_str().unwrap()]));
        assert_eq!(lines.len(), n);
        let right = lines.iter().enumerate().filter(|(i, l)| l["top"][0]["class"].as_u64() == Some(test.labels[*i] as u64)).count();
        let acc = right as f64 / n as f64;
        eprintln!("{}: {:.1}% right, eval says {:.1}%", folder.display(), 100.0 * acc, 100.0 * eval_acc);
        let tol = if folder == &gray { 0.005 } else { 0.05 };
        assert!((acc - eval_acc).abs() <= tol, "{}: {acc} vs eval {eval_acc}", folder.display());
    }
}
