//! ONNX export, checked by the real runtime: every exported model passes onnx.checker and gives,
//! in ONNX Runtime, the logits spgnet computes on the GPU -- the shipped model on the sample PNGs
//! and Fashion-MNIST test images, and s2p6..s2p9 with 1 and 3 input channels, BatchNorm kept or
//! folded, dynamic or fixed batch. ONNX Runtime comes from tools/.venv (`bash
//! tools/onnx_venv.sh`, run by scripts/setup.sh) or the interpreter SPGNET_ONNX_PYTHON names.

mod common;

use common::gpu;
use prost::Message;
use rand::{Rng, SeedableRng};
use spgnet::checkpoint::Checkpoint;
use spgnet::classify::{forward_all, Model};
use spgnet::model::{Architecture, ModelConfig, Variant};
use spgnet::network::DeviceState;
use spgnet::onnx::{export, proto::ModelProto, Batch, ExportOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Logits may differ by summation order only: 1e-4 of the image's largest logit.
const TOLERANCE: f64 = 1e-4;

fn python() -> PathBuf {
    let p = std::env::var_os("SPGNET_ONNX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/.venv/bin/python"));
    assert!(p.exists(), "{} is missing: run `bash tools/onnx_venv.sh` (ONNX Runtime and onnx from PyPI)", p.display());
    p
}

/// A random model whose BatchNorms are not the identity (so folding them is really tested).
fn random_model(variant: Variant, channels: usize, seed: u64) -> Model {
    let mut ck = Checkpoint::initialized(ModelConfig::new(variant, channels, 10), seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for t in Architecture::new(ck.config.clone()).tensors().into_iter().filter(|t| !t.is_weight) {
        let field = t.name.rsplit('.').next().unwrap_or_default();
        for v in ck.tensors.get_mut(&t.name).unwrap() {
            *v = match field {
                "weight" => rng.random_range(0.5..1.5),
                "running_var" => rng.random_range(0.5..2.0),
                _ => rng.random_range(-0.2..0.2),
            };
        }
    }
    ck.meta.input_size = Some(32);
    Model::new(ck)
}

struct Case {
    name: String,
    model: Model,
    /// Preprocessed images [n, c, s, s].
    input: Vec<f32>,
    options: ExportOptions,
}

/// The images as the model's input: planes at its size, then its normalisation.
fn preprocess(model: &Model, images: &[image::DynamicImage]) -> (Vec<u8>, Vec<f32>) {
    let (c, s) = (model.channels(), model.size);
    let per = c * s * s;
    let planes: Vec<u8> = images.iter().flat_map(|img| spgnet::data::to_planes(img, c, s)).collect();
    let mut input = vec![0f32; planes.len()];
    for (src, dst) in planes.chunks(per).zip(input.chunks_mut(per)) {
        model.pre.apply(src, c, s, dst, None);
    }
    (planes, input)
}

/// Writes the case's model, input and spgnet's logits; returns its manifest entry.
fn write_case(dir: &Path, case: &Case, planes: &[u8]) -> serde_json::Value {
    let m = &case.model;
    let (c, s) = (m.channels(), m.size);
    let n = case.input.len() / (c * s * s);
    let state = DeviceState::new(gpu(), &m.ck).unwrap();
    let logits: Vec<f32> = pollster::block_on(forward_all(gpu(), m, &state, planes, n, 64)).unwrap().concat();
    let bytes = export(m, case.options).unwrap();
    let file = |ext: &str| format!("{}.{ext}", case.name);
    std::fs::write(dir.join(file("onnx")), &bytes).unwrap();
    std::fs::write(dir.join(file("input")), bytemuck::cast_slice(&case.input)).unwrap();
    std::fs::write(dir.join(file("logits")), bytemuck::cast_slice(&logits)).unwrap();
    serde_json::json!({
        "name": case.name, "onnx": file("onnx"), "input": file("input"), "logits": file("logits"),
        "input_shape": [n, c, s, s],
        "batch": match case.options.batch { Batch::Dynamic => serde_json::json!("dynamic"), Batch::Fixed(b) => serde_json::json!(b) },
        "tolerance": TOLERANCE,
        "metadata": {
            "classes": serde_json::to_string(&m.classes).unwrap(),
            "input_size": s.to_string(),
            "input_name": "input",
            "input_shape": match case.options.batch {
                Batch::Dynamic => format!("[\"batch\",{c},{s},{s}]"),
                Batch::Fixed(b) => format!("[{b},{c},{s},{s}]"),
            },
            "input_channels": c.to_string(),
            "mean": serde_json::to_string(&m.pre.mean).unwrap(),
            "std": serde_json::to_string(&m.pre.std).unwrap(),
            "spgnet.version": m.ck.config.variant.name(),
        },
    })
}

fn run_checker(dir: &Path, manifest: Vec<serde_json::Value>) {
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let checker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/check_onnx.py");
    let out = Command::new(python()).arg(checker).arg(&path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "ONNX Runtime disagrees with spgnet:\n{text}");
    assert_eq!(text.lines().filter(|l| l.contains("top-1 agrees")).count(), manifest.len(), "every case checked");
}

/// The shipped model: the sample PNGs and the first Fashion-MNIST test images.
#[test]
fn shipped_model_in_onnx_runtime_matches_infer() {
    let model = spgnet::infer::load_model(None).unwrap();
    let mut images: Vec<image::DynamicImage> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples"))
        .unwrap()
        .map(|e| image::open(e.unwrap().path()).unwrap())
        .collect();
    let fashion = Path::new("/usr/share/datasets/fashion-mnist");
    assert!(fashion.is_dir(), "install dataset-fashion-mnist (bash scripts/setup.sh)");
    let test = spgnet::datasets::load(spgnet::data::Kind::FashionMnist, fashion, 0.1, 0).unwrap().test;
    images.extend((0..60).map(|i| image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(28, 28, test.image(i).to_vec()).unwrap())));
    let (planes, input) = preprocess(&model, &images);
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();
    for (name, options) in [
        ("shipped", ExportOptions { batch: Batch::Dynamic, fold_bn: false }),
        ("shipped-folded-batch1", ExportOptions { batch: Batch::Fixed(1), fold_bn: true }),
    ] {
        let model = Model::new(model.ck.clone());
        manifest.push(write_case(dir.path(), &Case { name: name.into(), model, input: input.clone(), options }, &planes));
    }
    run_checker(dir.path(), manifest);
}

/// Every variant, gray and colour, BatchNorm kept and folded, random weights and BN statistics.
#[test]
fn every_variant_in_onnx_runtime_matches_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();
    for (i, variant) in Variant::ALL.into_iter().enumerate() {
        for channels in [1, 3] {
            let model = random_model(variant, channels, 10 * i as u64 + channels as u64);
            let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
            let images: Vec<image::DynamicImage> = (0..6)
                .map(|_| {
                    let px: Vec<u8> = (0..32 * 32 * 3).map(|_| rng.random()).collect();
                    image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(32, 32, px).unwrap())
                })
                .collect();
            let (planes, input) = preprocess(&model, &images);
            let fold_bn = channels == 3;
            let batch = if i % 2 == 0 { Batch::Dynamic } else { Batch::Fixed(2) };
            let name = format!("{}-{channels}ch{}", variant.name(), if fold_bn { "-folded" } else { "" });
            manifest.push(write_case(dir.path(), &Case { name, model, input, options: ExportOptions { batch, fold_bn } }, &planes));
        }
    }
    run_checker(dir.path(), manifest);
}

/// The graph's structure, without a runtime: one Conv per ConvX with its group count, one
/// BatchNorm per BN unless folded, the input and output declared, opset 17.
#[test]
fn graph_has_one_node_per_layer() {
    for fold_bn in [false, true] {
        let model = random_model(Variant::S2P7, 3, 1);
        let bytes = export(&model, ExportOptions { batch: Batch::Dynamic, fold_bn }).unwrap();
        let proto = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(proto.opset_import[0].version, Some(17));
        let graph = proto.graph.unwrap();
        let count = |op: &str| graph.node.iter().filter(|n| n.op_type.as_deref() == Some(op)).count();
        let arch = Architecture::new(model.ck.config.clone());
        assert_eq!(count("Conv"), arch.convs().len());
        assert_eq!(count("BatchNormalization"), if fold_bn { 0 } else { arch.convs().len() + 1 });
        assert_eq!(count("Concat"), arch.blocks.len());
        assert_eq!(count("Add"), arch.blocks.len());
        assert_eq!(count("Gemm"), 2);
        let groups: Vec<i64> = graph
            .node
            .iter()
            .filter(|n| n.op_type.as_deref() == Some("Conv"))
            .map(|n| n.attribute.iter().find(|a| a.name.as_deref() == Some("group")).unwrap().i.unwrap())
            .collect();
        let want: Vec<i64> = arch.convs().iter().map(|c| c.groups as i64).collect();
        assert_eq!(groups, want);
        assert!(groups.contains(&7), "grouped 3x3 convs keep their 7 groups");
        assert_eq!(graph.input[0].name.as_deref(), Some("input"));
        assert_eq!(graph.output[0].name.as_deref(), Some("logits"));
        assert_eq!(graph.node.last().unwrap().output[0], "logits");
    }
}

#[test]
fn export_command_writes_onnx_and_rejects_bad_batch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_spgnet")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().unwrap()
    };
    let ok = run(&["export", "--onnx", out.to_str().unwrap(), "--fold-bn", "--batch", "8"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stderr).contains("[8, 1, 56, 56]"));
    let proto = ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    assert!(proto.metadata_props.iter().any(|p| p.key.as_deref() == Some("classes") && p.value.as_deref().unwrap().contains("Ankle boot")));
    let bad = run(&["export", "--onnx", out.to_str().unwrap(), "--batch", "0"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--batch '0'") && err.lines().count() == 1, "{err}");
    let neither = run(&["export"]);
    assert!(!neither.status.success());
    // ONNX options with a safetensors target (and the reverse) are refused, not ignored
    for args in [&["export", "--out", "x.safetensors", "--fold-bn"][..], &["export", "--onnx", "x.onnx", "--half"]] {
        let r = run(args);
        assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("cannot be used with"), "{args:?}");
    }
}
