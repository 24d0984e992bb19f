//! safetensors checkpoints: round trips, metadata, shape inference, and every loading error.

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use spgnet::checkpoint::{self, Checkpoint, Metadata, TensorFile};
use spgnet::model::{Architecture, ModelConfig, Variant};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A tensor as stored: name, dtype, shape, raw bytes.
type RawTensor = (String, Dtype, Vec<usize>, Vec<u8>);

fn small() -> Checkpoint {
    Checkpoint::initialized(ModelConfig::new(Variant::S2P6, 1, 4), 3)
}

/// Write raw tensors (name, dtype, shape, bytes) with optional metadata.
fn write_raw(path: &Path, tensors: Vec<RawTensor>, meta: Option<HashMap<String, String>>) {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::tensor::serialize(views, meta).unwrap()).unwrap();
}

/// The checkpoint's tensors as F32 raw entries, in state-dict order.
fn raw(ck: &Checkpoint) -> Vec<RawTensor> {
    Architecture::new(ck.config.clone())
        .tensors()
        .into_iter()
        .map(|t| {
            let bytes = bytemuck::cast_slice(&ck.tensors[&t.name]).to_vec();
            (t.name, Dtype::F32, t.shape, bytes)
        })
        .collect()
}

fn tmp(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn load_err(path: &Path) -> String {
    format!("{:#}", checkpoint::load(path).expect_err("loading should fail"))
}

#[test]
fn save_and_load_round_trip_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut ck = small();
    ck.meta = Metadata {
        input_size: Some(28),
        classes: Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
        mean: Some(vec![0.286]),
        std: Some(vec![0.353]),
        dataset: Some("fashion-mnist".into()),
    };
    let path = tmp(&dir, "m.safetensors");
    checkpoint::save(&path, &ck).unwrap();
    let back = checkpoint::load(&path).unwrap();
    assert_eq!(back.config, ck.config);
    assert_eq!(back.tensors, ck.tensors);
    assert_eq!(back.meta, ck.meta);
    let meta = checkpoint::TensorFile::open(&path).unwrap().metadata();
    assert_eq!(meta["spgnet.version"], "s2p6");
    assert_eq!(meta["spgnet.num_classes"], "4");
    assert_eq!(meta["spgnet.in_channels"], "1");
    assert_eq!(meta["spgnet.classes"], "a,b,c,d");
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn file_without_metadata_is_recognised_from_shapes() {
    // As converted from the released PyTorch checkpoint: no metadata, num_batches_tracked present.
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::initialized(ModelConfig::new(Variant::S2P7, 3, 12), 1);
    let mut t = raw(&ck);
    t.push(("layers.0.conv1.bn.num_batches_tracked".into(), Dtype::I64, vec![], 5i64.to_le_bytes().to_vec()));
    let path = tmp(&dir, "torch.safetensors");
    write_raw(&path, t, None);
    let back = checkpoint::load(&path).unwrap();
    assert_eq!(back.config, ModelConfig::new(Variant::S2P7, 3, 12));
    assert_eq!(back.tensors, ck.tensors);
    assert_eq!(back.meta, Metadata::default());
}

#[test]
fn half_precision_files_load_converted() {
    let dir = tempfile::tempdir().unwrap();
    let ck = small();
    let t: Vec<_> = raw(&ck)
        .into_iter()
        .map(|(n, _, s, _)| {
            let h: Vec<u8> = ck.tensors[&n].iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
            (n, Dtype::F16, s, h)
        })
        .collect();
    let path = tmp(&dir, "f16.safetensors");
    write_raw(&path, t, None);
    let back = checkpoint::load(&path).unwrap();
    let w = &back.tensors["layers.3.conv1.conv.weight"];
    let orig = &ck.tensors["layers.3.conv1.conv.weight"];
    assert!(w.iter().zip(orig).all(|(a, b)| (a - b).abs() <= 1e-3 * b.abs().max(1e-2)));
}

#[test]
fn every_loading_error_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let ck = small();
    let case = |name: &str, edit: &dyn Fn(&mut Vec<RawTensor>)| {
        let mut t = raw(&ck);
        edit(&mut t);
        let p = tmp(&dir, name);
        write_raw(&p, t, None);
        load_err(&p)
    };
    let e = case("missing.safetensors", &|t| t.retain(|x| x.0 != "layers.4.conv2.bn.bias"));
    assert!(e.contains("missing tensor 'layers.4.conv2.bn.bias'"), "{e}");
    let e = case("shape.safetensors", &|t| {
        let x = t.iter_mut().find(|x| x.0 == "layers.2.conv1.conv.weight").unwrap();
        x.2 = vec![48, 8, 9, 1];
    });
    assert!(e.contains("'layers.2.conv1.conv.weight' has shape [48, 8, 9, 1], expected [48, 8, 3, 3]"), "{e}");
    let e = case("dtype.safetensors", &|t| {
        let x = t.iter_mut().find(|x| x.0 == "fc.weight").unwrap();
        x.1 = Dtype::I32;
    });
    assert!(e.contains("'fc.weight' has dtype I32"), "{e}");
    let e = case("unknown.safetensors", &|t| t.push(("layers.99.conv1.conv.weight".into(), Dtype::F32, vec![1], vec![0; 4])));
    assert!(e.contains("unexpected tensor 'layers.99.conv1.conv.weight'"), "{e}");
    let e = case("nan.safetensors", &|t| {
        let x = t.iter_mut().find(|x| x.0 == "bn.weight").unwrap();
        x.3[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert!(e.contains("'bn.weight' holds a non-finite value"), "{e}");
    let e = case("variant.safetensors", &|t| {
        let x = t.iter_mut().find(|x| x.0 == "first_conv.0.conv.weight").unwrap();
        x.2 = vec![5, 1, 3, 3];
        x.3.truncate(5 * 9 * 4);
    });
    assert!(e.contains("5 output channels; no SPGNet variant"), "{e}");

    let good = tmp(&dir, "good.safetensors");
    checkpoint::save(&good, &ck).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = tmp(&dir, "truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_err(&truncated).contains("not a valid safetensors file"));
    let garbage = tmp(&dir, "garbage.safetensors");
    std::fs::write(&garbage, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a header").unwrap();
    assert!(load_err(&garbage).contains("not a valid safetensors file"));
    assert!(load_err(dir.path()).contains("is a folder"));
    assert!(load_err(&tmp(&dir, "absent.safetensors")).contains("cannot read"));

    let mut meta = HashMap::new();
    meta.insert("spgnet.classes".to_string(), "only,two".to_string());
    let p = tmp(&dir, "classes.safetensors");
    write_raw(&p, raw(&ck), Some(meta));
    assert!(load_err(&p).contains("lists 2 class names for 4 classes"));
}

#[test]
fn damaged_files_are_caught_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = tmp(&dir, "good.safetensors");
    checkpoint::save(&path, &small()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(TensorFile::open(&path).unwrap().metadata().contains_key(checkpoint::CHECKSUM_KEY), "saved files record a checksum");
    // one bit flipped in the tensor data: the header still parses, the checksum does not match
    let mut flipped = bytes.clone();
    let at = flipped.len() - 1001;
    flipped[at] ^= 0x10;
    let p = tmp(&dir, "flipped.safetensors");
    std::fs::write(&p, &flipped).unwrap();
    let e = load_err(&p);
    assert!(e.contains("flipped.safetensors: the tensor data is damaged (checksum"), "{e}");
    // truncated: not a safetensors file any more
    let p = tmp(&dir, "truncated.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&p);
    assert!(e.contains("truncated.safetensors: not a valid safetensors file"), "{e}");
    // the intact file still loads, with the same values
    assert_eq!(checkpoint::load(&path).unwrap().tensors, small().tensors);
}
