//! Inputs kept from fuzzing (fuzz/, cargo-fuzz) and hand-made edge cases, replayed through the
//! same parsers as the fuzz targets: each must end in an error or a value, never a panic.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions").join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{} holds no inputs", dir.display());
    v
}

#[test]
fn safetensors_inputs() {
    for (name, data) in inputs("safetensors") {
        if let Ok(f) = spgnet::checkpoint::TensorFile::from_bytes(name, data) {
            let _ = spgnet::checkpoint::from_file(&f);
            for n in f.names() {
                let _ = f.floats(&n);
                let _ = f.integers(&n);
            }
        }
    }
}

#[test]
fn idx_inputs() {
    for (name, data) in inputs("idx") {
        for rank in [1, 3] {
            let _ = spgnet::data::parse_idx(Path::new(&name), &data, rank);
        }
    }
}

#[test]
fn cifar_inputs() {
    for (name, data) in inputs("cifar") {
        for (label_bytes, classes) in [(1, 10), (2, 100)] {
            let mut d =
                spgnet::data::Dataset { name: "t".into(), images: vec![], labels: vec![], channels: 3, h: 32, w: 32, classes: vec![] };
            let _ = spgnet::data::parse_cifar(&name, &data, label_bytes, classes, &mut d);
        }
    }
}

#[test]
fn image_inputs() {
    for (_, data) in inputs("image") {
        if let Ok(img) = spgnet::data::decode_image(&data) {
            let _ = spgnet::data::to_planes(&img, 1, 8);
        }
    }
}
