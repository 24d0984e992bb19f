//! End-to-end training on the real Fashion-MNIST (Debian's dataset-fashion-mnist, installed by
//! scripts/setup.sh): a short run must beat chance by far, a resumed run must end with the same
//! weights as an uninterrupted one, and steps after the first must create no GPU buffers.

mod common;
use spgnet::checkpoint::{self, Checkpoint};
use spgnet::data::Kind;
use spgnet::model::{ModelConfig, Variant};
use spgnet::network::{TrainOptions, Trainer};
use spgnet::train::{self, RunControl, TrainArgs};
use std::path::{Path, PathBuf};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn args(out: &Path, epochs: usize, batch: usize, limit: usize) -> TrainArgs {
    assert!(Path::new(FASHION).is_dir(), "{FASHION} is missing: install dataset-fashion-mnist (bash scripts/setup.sh)");
    TrainArgs {
        dataset: Kind::FashionMnist,
        data: PathBuf::from(FASHION),
        version: Variant::S2P6,
        epochs,
        batch,
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        label_smoothing: 0.1,
        warmup_epochs: 0,
        seed: 7,
        out: out.to_path_buf(),
        limit: Some(limit),
        size: None,
        dropout: 0.1,
        ema: Some(0.9),
        ema_warmup: true,
        flip: None,
        crop_pad: 2,
        decay_bn: true,
        val_split: 0.1,
        init: None,
    }
}

#[test]
fn init_starts_from_a_checkpoint_of_the_same_model() {
    let gpu = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let quiet = RunControl::default();
    let first = dir.path().join("first");
    train::train(gpu, Some(args(&first, 1, 32, 64)), None, quiet.clone()).unwrap();
    let start = checkpoint::load(&first.join("last.safetensors")).unwrap();
    // A tiny learning rate and no decay: the weights must stay where --init put them.
    let tuned = dir.path().join("tuned");
    let a = TrainArgs { init: Some(first.join("last.safetensors")), lr: 1e-9, weight_decay: 0.0, ema: None, ..args(&tuned, 1, 32, 64) };
    train::train(gpu, Some(a), None, quiet.clone()).unwrap();
    let end = checkpoint::load(&tuned.join("last.safetensors")).unwrap();
    for name in ["first_conv.0.conv.weight", "layers.7.conv1.conv.weight", "fc.weight", "linear.weight"] {
        let diff = start.tensors[name].iter().zip(&end.tensors[name]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-6, "{name}: moved by {diff} from the --init weights");
    }
    let fresh = Checkpoint::initialized(start.config.clone(), 7);
    assert_ne!(fresh.tensors["fc.weight"], end.tensors["fc.weight"], "the run must not start from the initialisation");
    // Another architecture is refused in one line before training.
    let other =
        TrainArgs { init: Some(first.join("last.safetensors")), version: Variant::S2P7, ..args(&dir.path().join("other"), 1, 32, 64) };
    let e = match train::train(gpu, Some(other), None, quiet.clone()) {
        Ok(_) => panic!("--init with another architecture must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("--init") && e.contains("s2p6") && e.contains("s2p7") && !e.contains('\n'), "{e}");
}

#[test]
fn resumed_run_ends_with_the_same_weights() {
    let gpu = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let (full, split) = (dir.path().join("full"), dir.path().join("split"));
    let quiet = RunControl::default();
    train::train(gpu, Some(args(&full, 2, 32, 160)), None, quiet.clone()).unwrap();
    // The same run stopped after its first epoch (as if killed there), then resumed.
    let first = train::train(gpu, Some(args(&split, 2, 32, 160)), None, RunControl { stop_after: Some(1), ..quiet.clone() }).unwrap();
    assert_eq!(first.epochs.len(), 1);
    let resumed = train::train(gpu, None, Some(&split), quiet.clone()).unwrap();
    assert_eq!(resumed.epochs.len(), 2, "metrics.csv keeps the first epoch's row");
    let a = checkpoint::load(&full.join("last.safetensors")).unwrap();
    let b = checkpoint::load(&split.join("last.safetensors")).unwrap();
    for (name, va) in &a.tensors {
        let vb = &b.tensors[name];
        let diff = va.iter().zip(vb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-6, "{name}: resumed run differs by {diff}");
    }
    let csv = std::fs::read_to_string(split.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("epoch,step,lr,train_loss,train_acc,val_loss,val_acc,img_per_s,seconds"));
    for f in ["best.safetensors", "last.safetensors", "live.safetensors", "resume.safetensors", "loss.png", "acc.png"] {
        assert!(split.join(f).is_file(), "{f} missing");
    }
    // With --ema, last holds the average and live the weights themselves: both full checkpoints.
    let live = checkpoint::load(&split.join("live.safetensors")).unwrap();
    assert_eq!(live.meta.input_size, b.meta.input_size);
    assert!(live.tensors.keys().any(|n| live.tensors[n] != b.tensors[n]), "live.safetensors should hold the weights, not their average");
    assert_eq!(image::open(split.join("acc.png")).unwrap().width(), 800);
    // The checkpoint carries what inference needs.
    assert_eq!(b.meta.classes.as_ref().unwrap()[0], "T-shirt/top");
    assert_eq!(b.meta.input_size, Some(28));
    assert_eq!(b.meta.dataset.as_deref(), Some("fashion-mnist"));
    // Resuming a finished run does nothing and says so.
    assert_eq!(train::train(gpu, None, Some(&split), quiet.clone()).unwrap().epochs.len(), 2);
}

#[test]
fn short_fashion_mnist_run_beats_chance_by_far() {
    let gpu = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    // 96 steps of batch 32 (measured: 59% test accuracy); chance is 10%.
    let mut a = args(dir.path(), 3, 32, 1024);
    a.lr = 0.02;
    a.ema = None;
    a.dropout = 0.0;
    let s = train::train(gpu, Some(a), None, RunControl::default()).unwrap();
    let last = s.epochs.last().unwrap();
    eprintln!("1024 images x 3 epochs: test accuracy {:.1}%, train loss {:.3}", 100.0 * last.val_acc, last.train_loss);
    assert!(last.val_acc > 0.4, "test accuracy {:.3} (chance is 0.1)", last.val_acc);
    assert!(s.epochs[0].train_loss > last.train_loss, "the training loss should fall");
}

#[test]
fn ema_warmup_follows_the_weights_from_the_first_epochs() {
    // The short run above, from scratch, evaluated through a weight EMA of decay 0.999: with a
    // fixed decay the average is still 91% initialisation after 96 steps (its BN statistics
    // fit nothing: near chance), with the warm-up it tracks the trained weights.
    let gpu = common::gpu();
    let run = |ema_warmup: bool| {
        let dir = tempfile::tempdir().unwrap();
        let a = TrainArgs { lr: 0.02, ema: Some(0.999), ema_warmup, dropout: 0.0, ..args(dir.path(), 3, 32, 1024) };
        train::train(gpu, Some(a), None, RunControl::default()).unwrap().epochs.last().unwrap().val_acc
    };
    let (warm, fixed) = (run(true), run(false));
    eprintln!("EMA 0.999 after 96 steps: test accuracy {:.1}% with the warm-up, {:.1}% without", 100.0 * warm, 100.0 * fixed);
    assert!(warm > 0.4, "with the warm-up: test accuracy {warm:.3} (chance is 0.1)");
    assert!(warm > fixed + 0.2, "the warm-up should beat the fixed decay early on: {warm:.3} against {fixed:.3}");
}

#[test]
fn training_steps_after_the_first_create_no_buffers() {
    let gpu = common::gpu();
    let ck = Checkpoint::initialized(ModelConfig::new(Variant::S2P6, 1, 10), 0);
    let t = Trainer::new(gpu, &ck, 4, (28, 28), TrainOptions::default()).unwrap();
    let input = vec![0.5f32; 4 * 28 * 28];
    let labels = [1, 2, 3, 4];
    t.step(gpu, &input, &labels, 0.1, 0).unwrap();
    pollster::block_on(t.metrics(gpu)).unwrap();
    let after_first = gpu.buffers_created();
    for i in 1..4 {
        t.step(gpu, &input, &labels, 0.1, i).unwrap();
        pollster::block_on(t.metrics(gpu)).unwrap();
    }
    assert_eq!(gpu.buffers_created(), after_first, "steps 2-4 created GPU buffers");
}

#[test]
fn a_training_step_lays_out_each_tiny_map_weight_once() {
    // The tiny-map convs' expanded weights (conv.expand_tiny) serve the forward and the input
    // gradient of the same step: one expansion per layer, not two.
    let gpu = common::gpu();
    let ck = Checkpoint::initialized(ModelConfig::new(Variant::S2P6, 3, 10), 0);
    let t = Trainer::new(gpu, &ck, 4, (32, 32), TrainOptions::default()).unwrap();
    let tiny_layers: std::collections::BTreeSet<&str> =
        t.launches().filter(|l| l.label.starts_with("conv.tiny.forward")).map(|l| l.layer.as_str()).collect();
    let expansions: Vec<&str> = t.launches().filter(|l| l.label == "conv.expand_tiny").map(|l| l.layer.as_str()).collect();
    assert!(tiny_layers.len() >= 8, "s2p6 at 32x32 has tiny-map convs in stages 2 and 3, found {tiny_layers:?}");
    assert_eq!(expansions.len(), tiny_layers.len(), "expansions {expansions:?} for layers {tiny_layers:?}");
}
