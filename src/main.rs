//! The `spgnet` command line: thin over the library.

use anyhow::Result;
use clap::{Parser, Subcommand};
use spgnet::gpu::Gpu;
use spgnet::network::TrainOptions;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "spgnet", version, about = "Train and run the SPGNet CNN with WGSL compute shaders on WebGPU (Vulkan, Metal, DX12)")]
struct Cli {
    /// GPU backend: vulkan, metal, dx12, gl or auto (default: WGPU_BACKEND, else the best adapter)
    #[arg(long, global = true)]
    backend: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train SPGNet (defaults: the CIFAR-10 notebook's recipe). Writes to --out: metrics.csv,
    /// steps.csv, loss.png, acc.png, best.safetensors, last.safetensors, live.safetensors (with
    /// --ema: the weights themselves, where best and last hold their average) and
    /// resume.safetensors. Ctrl-C stops after the current step and saves a resume point there
    /// (a second Ctrl-C exits at once); continue with --resume
    Train(TrainCli),
    /// Classify images (PNG, JPEG, BMP, WebP, GIF; a folder means every image in it) with the
    /// shipped Fashion-MNIST model or --weights
    Infer {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Checkpoint (default: the model shipped in assets/)
        #[arg(long)]
        weights: Option<PathBuf>,
        /// How many classes to show per image (default: 1, and 5 with --json)
        #[arg(long)]
        top: Option<usize>,
        /// One JSON line per image: {"image": PATH, "top": [{"class": I, "name": N, "prob": P}, ...]}
        #[arg(long)]
        json: bool,
    },
    /// Test-split accuracy (top-1, top-5), loss, confusion matrix and throughput of a checkpoint
    Eval {
        #[command(flatten)]
        set: TestSetFlags,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Evaluate the first N test images only
        #[arg(long)]
        limit: Option<usize>,
        /// Save the confusion matrix as a picture here (.png, .jpg or .bmp)
        #[arg(long)]
        plot: Option<PathBuf>,
        /// One JSON line: {"accuracy": A, "images": N, "img_per_s": R, ...}
        #[arg(long)]
        json: bool,
    },
    /// A picture of test images with predicted and true labels (wrong ones in red)
    Grid {
        #[command(flatten)]
        set: TestSetFlags,
        /// The picture (.png, .jpg or .bmp)
        #[arg(long, default_value = "grid.png")]
        out: PathBuf,
        /// Number of test images shown
        #[arg(long, default_value_t = 32)]
        count: usize,
    },
    /// Write a model as ONNX (--onnx, for ONNX Runtime, TensorRT, OpenVINO...) or re-save it as
    /// safetensors (--out), with conv and linear weights in f16 (--half) and extra metadata
    #[command(group(clap::ArgGroup::new("target").required(true).args(["onnx", "out"])))]
    Export {
        /// The checkpoint to export (default: the shipped Fashion-MNIST model)
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Write an ONNX graph (opset 17): input 'input' [batch, C, S, S], already normalised
        /// ((pixel / 255 - mean) / std, given in its metadata_props), output 'logits'
        #[arg(long, value_name = "MODEL.onnx")]
        onnx: Option<PathBuf>,
        /// ONNX batch dimension: 'dynamic' (any batch size) or a fixed number of images
        #[arg(long, default_value = "dynamic", conflicts_with = "out")]
        batch: String,
        /// ONNX: fold every BatchNorm into the weights and a bias of the conv or linear layer before it
        #[arg(long, conflicts_with = "out")]
        fold_bn: bool,
        /// Re-save as safetensors here
        #[arg(long, value_name = "FILE.safetensors")]
        out: Option<PathBuf>,
        /// Safetensors: store conv and linear weights as f16 (half the size; BN tensors stay f32)
        #[arg(long, conflicts_with = "onnx")]
        half: bool,
        /// Safetensors: extra metadata, KEY=VALUE (repeatable), e.g. spgnet.test_accuracy=0.93
        #[arg(long = "meta", conflicts_with = "onnx")]
        meta: Vec<String>,
    },
    /// Per-layer table: output shape, parameters, multiply-adds; then totals
    Summary {
        #[arg(long, default_value = "s2p6")]
        version: String,
        /// Input side in pixels
        #[arg(long, default_value_t = 32)]
        size: usize,
        #[arg(long, default_value_t = 10)]
        classes: usize,
        #[arg(long, default_value_t = 3)]
        in_ch: usize,
    },
    /// Training-step and inference throughput on random data (medians of synchronised steps)
    Bench {
        #[arg(long, default_value = "s2p6")]
        version: String,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 32)]
        size: usize,
        #[arg(long, default_value_t = 5)]
        steps: usize,
        #[arg(long, default_value_t = 10)]
        classes: usize,
        #[arg(long, default_value_t = 3)]
        in_ch: usize,
        /// Also time every kernel of a training step on its own and print a table
        #[arg(long)]
        profile: bool,
        /// One JSON line instead of text
        #[arg(long)]
        json: bool,
    },
    /// List the GPU adapters and say which one spgnet would use
    Info,
    /// Run training steps on one batch and dump logits, loss, gradients and the state after
    /// (the format of the reference's golden files, for compare_step.py)
    DebugStep {
        /// Model weights (safetensors, PyTorch names)
        #[arg(long)]
        weights: PathBuf,
        /// Batch: `input` [N,C,H,W] f32 and `labels` [N] i64 or i32
        #[arg(long)]
        batch: PathBuf,
        /// Output safetensors file
        #[arg(long)]
        out: PathBuf,
        /// Number of SGD steps on the batch
        #[arg(long, default_value_t = 1)]
        steps: usize,
        #[command(flatten)]
        optim: OptimizerFlags,
    },
}

/// A checkpoint and the test split it is judged on (`eval`, `grid`).
#[derive(clap::Args)]
struct TestSetFlags {
    /// cifar10, cifar100, mnist, fashion-mnist or folder
    #[arg(long)]
    dataset: String,
    /// Dataset location (default for mnist and fashion-mnist: Debian's /usr/share/datasets/...)
    #[arg(long)]
    data: Option<PathBuf>,
    /// Checkpoint (default: the model shipped in assets/)
    #[arg(long)]
    weights: Option<PathBuf>,
}

impl TestSetFlags {
    /// The model and its test split (the first `limit` images) at the model's size and channels.
    fn load(&self, limit: Option<usize>) -> Result<(spgnet::infer::Model, spgnet::data::Dataset)> {
        let kind = spgnet::data::Kind::parse(&self.dataset)?;
        let path = dataset_path(kind, self.data.clone())?;
        let model = spgnet::infer::load_model(self.weights.as_deref())?;
        let test = spgnet::infer::test_split(&model, kind, &path, limit)?;
        Ok((model, test))
    }
}

/// SGD and loss settings shared by `train` and `debug-step` (defaults: the notebook's).
#[derive(clap::Args)]
struct OptimizerFlags {
    /// Learning rate (train: the peak, decayed by a cosine per step)
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    #[arg(long, default_value_t = 0.1)]
    label_smoothing: f32,
}

#[derive(clap::Args)]
struct TrainCli {
    /// cifar10, cifar100, mnist, fashion-mnist or folder (one sub-folder of images per class)
    #[arg(long, default_value = "cifar10")]
    dataset: String,
    /// Dataset location: a folder, or the CIFAR .tar.gz (default for mnist and fashion-mnist:
    /// Debian's /usr/share/datasets/...)
    #[arg(long)]
    data: Option<PathBuf>,
    /// s2p6, s2p7, s2p8 or s2p9
    #[arg(long, default_value = "s2p6")]
    version: String,
    #[arg(long, default_value_t = 200)]
    epochs: usize,
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[command(flatten)]
    optim: OptimizerFlags,
    /// Epochs of linear learning-rate warm-up before the cosine
    #[arg(long, default_value_t = 0)]
    warmup_epochs: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output folder (default runs/<dataset>-<version>)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this folder exactly where it stopped (its own settings are used)
    #[arg(long, conflicts_with_all = ["out"])]
    resume: Option<PathBuf>,
    /// Use only the first N training (and test) images
    #[arg(long)]
    limit: Option<usize>,
    /// Model input size (default: the dataset's, e.g. 28 for Fashion-MNIST, 32 for CIFAR)
    #[arg(long)]
    size: Option<usize>,
    /// Dropout before the classifier
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.9999) and
    /// evaluate and save it
    #[arg(long)]
    ema: Option<f32>,
    /// With --ema, raise the decay gradually, min(decay, (1 + step) / (10 + step)), so that
    /// the average starts near the trained weights rather than the initialisation; false keeps
    /// the fixed decay of the released recipe
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    ema_warmup: bool,
    /// Random horizontal flips: on by default for CIFAR and folders, off for digits and clothes
    #[arg(long)]
    flip: Option<bool>,
    /// Padding of the random crop (0 disables cropping)
    #[arg(long, default_value_t = 4)]
    crop_pad: usize,
    /// Decay only conv and linear weights (the ImageNet recipe), not BN gamma and beta
    #[arg(long)]
    no_bn_decay: bool,
    /// Fraction of an image folder held out for testing when it has no train/ and val/
    #[arg(long, default_value_t = 0.1)]
    val_split: f32,
    /// Start from the weights and BN statistics of this checkpoint (fine-tuning; same variant,
    /// channels and classes) instead of the initialisation
    #[arg(long, value_name = "WEIGHTS")]
    init: Option<PathBuf>,
}

impl TrainCli {
    fn to_args(&self) -> Result<spgnet::train::TrainArgs> {
        let dataset = spgnet::data::Kind::parse(&self.dataset)?;
        let data = dataset_path(dataset, self.data.clone())?;
        let version = spgnet::model::Variant::parse(&self.version)?;
        Ok(spgnet::train::TrainArgs {
            dataset,
            data,
            version,
            epochs: self.epochs,
            batch: self.batch,
            lr: self.optim.lr,
            momentum: self.optim.momentum,
            weight_decay: self.optim.weight_decay,
            label_smoothing: self.optim.label_smoothing,
            warmup_epochs: self.warmup_epochs,
            seed: self.seed,
            out: self.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/{}-{}", dataset.name(), version.name()))),
            limit: self.limit,
            size: self.size,
            dropout: self.dropout,
            ema: self.ema,
            ema_warmup: self.ema_warmup,
            flip: self.flip,
            crop_pad: self.crop_pad,
            decay_bn: !self.no_bn_decay,
            val_split: self.val_split,
            init: self.init.clone(),
        })
    }
}

fn dataset_path(kind: spgnet::data::Kind, data: Option<PathBuf>) -> Result<PathBuf> {
    match (data, kind.default_path()) {
        (Some(d), _) => Ok(d),
        (None, Some(d)) => Ok(PathBuf::from(d)),
        (None, None) => anyhow::bail!("--data is required for {} (the dataset folder or archive)", kind.name()),
    }
}

fn gpu(cli_backend: &Option<String>) -> Result<Gpu> {
    let g = Gpu::with_backend(cli_backend.as_deref())?;
    let kernels = if g.subgroups { "; GEMMs with subgroups (SPGNET_NO_SUBGROUPS=1 for the plain ones)" } else { "" };
    eprintln!("adapter: {}{kernels}", g.describe());
    Ok(g)
}

fn run(cli: Cli) -> Result<()> {
    let backend = &cli.backend;
    match cli.command {
        Command::Train(t) => train(backend, t),
        Command::Infer { images, weights, top, json } => infer(backend, &images, weights, top, json),
        Command::Eval { set, batch, limit, plot, json } => eval(backend, set, batch, limit, plot, json),
        Command::Grid { set, out, count } => grid(backend, set, out, count),
        Command::Export { weights, onnx: Some(onnx), batch, fold_bn, .. } => export_onnx(weights.as_deref(), &onnx, &batch, fold_bn),
        Command::Export { weights, out: Some(out), half, meta, .. } => export(weights.as_deref(), &out, half, meta),
        Command::Export { .. } => anyhow::bail!("export: pass --onnx MODEL.onnx or --out FILE.safetensors"),
        Command::Summary { version, size, classes, in_ch } => summary(&version, size, classes, in_ch),
        Command::Bench { version, batch, size, steps, classes, in_ch, profile, json } => {
            let a = spgnet::bench::BenchArgs {
                version: spgnet::model::Variant::parse(&version)?,
                batch,
                size,
                steps,
                classes,
                in_channels: in_ch,
                profile,
            };
            bench(backend, &a, json)
        }
        Command::Info => {
            for a in Gpu::list_adapters() {
                println!("available: {a}");
            }
            println!("selected:  {}", Gpu::with_backend(backend.as_deref())?.describe());
            Ok(())
        }
        Command::DebugStep { weights, batch, out, steps, optim } => debug_step(backend, &weights, &batch, &out, steps, optim),
    }
}

fn train(backend: &Option<String>, t: TrainCli) -> Result<()> {
    let g = gpu(backend)?;
    let args = if t.resume.is_some() { None } else { Some(t.to_args()?) };
    let control = spgnet::train::RunControl { progress: true, stop_after: None, interrupt: Some(interrupt_flag()?) };
    let summary = spgnet::train::train(&g, args, t.resume.as_deref(), control)?;
    let out = summary.out.display();
    if let Some((epoch, step, steps)) = summary.interrupted {
        eprintln!("interrupted in epoch {epoch} after step {step} of {steps}: saved; continue with `spgnet train --resume {out}`");
        std::process::exit(130);
    }
    eprintln!("best test accuracy {:.2}%; checkpoints, metrics.csv, loss.png and acc.png are in {out}", 100.0 * summary.best_acc);
    Ok(())
}

/// Set by the first Ctrl-C or SIGTERM: training stops after the step under way and saves a
/// resume point. A second one exits at once (every file is written atomically, so none is left
/// half-written).
fn interrupt_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // registered first: sees the flag before the handler below sets it
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, flag.clone())?;
        signal_hook::flag::register(signal, flag.clone())?;
    }
    Ok(flag)
}

fn infer(backend: &Option<String>, images: &[PathBuf], weights: Option<PathBuf>, top: Option<usize>, json: bool) -> Result<()> {
    let files = spgnet::infer::expand_inputs(images)?;
    let model = spgnet::infer::load_model(weights.as_deref())?;
    let g = gpu(backend)?;
    let t0 = std::time::Instant::now();
    let predictions = spgnet::infer::predict(&g, &model, &files, top.unwrap_or(if json { 5 } else { 1 }))?;
    let secs = t0.elapsed().as_secs_f64();
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in &predictions {
        if json {
            let top: Vec<_> = p.top.iter().map(|(k, n, pr)| serde_json::json!({"class": k, "name": n, "prob": pr})).collect();
            println!("{}", serde_json::json!({"image": p.image, "top": top}));
        } else {
            let classes: Vec<String> = p.top.iter().map(|(_, n, pr)| format!("{n} {:.1}%", 100.0 * pr)).collect();
            println!("{}  {}", p.image, classes.join(", "));
            *counts.entry(p.top[0].1.as_str()).or_default() += 1;
        }
    }
    if !json {
        let mut most: Vec<(&str, usize)> = counts.into_iter().collect();
        most.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let tally: Vec<String> = most.iter().map(|(n, c)| format!("{n} {c}")).collect();
        let n = predictions.len();
        println!(
            "{n} image{} in {:.2} s ({:.1} img/s, GPU set-up included): {}",
            if n == 1 { "" } else { "s" },
            secs,
            n as f64 / secs,
            tally.join(", ")
        );
    }
    Ok(())
}

fn eval(backend: &Option<String>, set: TestSetFlags, batch: usize, limit: Option<usize>, plot: Option<PathBuf>, json: bool) -> Result<()> {
    if let Some(p) = &plot {
        spgnet::plot::check_picture_path(p)?;
    }
    let (model, test) = set.load(limit)?;
    let g = gpu(backend)?;
    let r = spgnet::infer::evaluate(&g, &model, test, batch)?;
    if let Some(p) = &plot {
        spgnet::plot::confusion_matrix(p, &r.classes, &r.confusion)?;
    }
    if json {
        let line = serde_json::json!({"accuracy": r.accuracy, "top5": r.top5, "loss": r.loss, "images": r.images, "img_per_s": r.img_per_s, "adapter": g.describe()});
        println!("{line}");
        return Ok(());
    }
    println!(
        "{} test images: top-1 {:.2}%{}, loss {:.4}",
        r.images,
        100.0 * r.accuracy,
        r.top5.map_or(String::new(), |t| format!(", top-5 {:.2}%", 100.0 * t)),
        r.loss
    );
    println!("throughput: {:.1} images/s", r.img_per_s);
    let w = r.classes.iter().map(|c| c.len()).max().unwrap_or(4).min(14);
    println!("confusion matrix (rows: true class, columns: predicted):");
    for (t, row) in r.confusion.iter().enumerate() {
        let name: String = r.classes[t].chars().take(w).collect();
        println!("  {name:>w$} {}", row.iter().map(|c| format!("{c:>5}")).collect::<String>());
    }
    if let Some(p) = &plot {
        println!("confusion matrix picture: {}", p.display());
    }
    Ok(())
}

fn grid(backend: &Option<String>, set: TestSetFlags, out: PathBuf, count: usize) -> Result<()> {
    spgnet::plot::check_picture_path(&out)?;
    let (model, test) = set.load(Some(count))?;
    let g = gpu(backend)?;
    let pred = spgnet::infer::predict_dataset(&g, &model, &test, count)?;
    let per = test.channels * test.h * test.w;
    let tiles: Vec<spgnet::plot::GridTile> = pred
        .iter()
        .enumerate()
        .map(|(i, &p)| spgnet::plot::GridTile {
            pixels: &test.images[i * per..(i + 1) * per],
            channels: test.channels,
            size: test.h,
            predicted: &model.classes[p],
            truth: &model.classes[test.labels[i] as usize],
        })
        .collect();
    spgnet::plot::prediction_grid(&out, &tiles, 8)?;
    let right = tiles.iter().filter(|t| t.predicted == t.truth).count();
    println!("{}: {} test images, {right} predicted right", out.display(), tiles.len());
    Ok(())
}

fn export(weights: Option<&Path>, out: &Path, half: bool, meta: Vec<String>) -> Result<()> {
    let ck = spgnet::infer::load_model(weights)?.ck;
    let mut extra = std::collections::HashMap::new();
    for kv in meta {
        let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--meta '{kv}': expected KEY=VALUE"))?;
        extra.insert(k.to_string(), v.to_string());
    }
    spgnet::checkpoint::save_as(out, &ck, half, extra)?;
    eprintln!("wrote {} ({} bytes)", out.display(), std::fs::metadata(out)?.len());
    Ok(())
}

fn export_onnx(weights: Option<&Path>, out: &Path, batch: &str, fold_bn: bool) -> Result<()> {
    let options = spgnet::onnx::ExportOptions { batch: spgnet::onnx::Batch::parse(batch)?, fold_bn };
    let model = spgnet::infer::load_model(weights)?;
    let bytes = spgnet::onnx::export(&model, options)?;
    spgnet::files::write_atomic(out, &bytes)?;
    let (c, s) = (model.channels(), model.size);
    let n = match options.batch {
        spgnet::onnx::Batch::Dynamic => "batch".to_string(),
        spgnet::onnx::Batch::Fixed(n) => n.to_string(),
    };
    eprintln!(
        "wrote {} ({:.1} MB, opset {}{}): input '{}' [{n}, {c}, {s}, {s}], output '{}' [{n}, {}]",
        out.display(),
        bytes.len() as f64 / 1e6,
        spgnet::onnx::OPSET,
        if fold_bn { ", BatchNorm folded" } else { "" },
        spgnet::onnx::INPUT,
        spgnet::onnx::OUTPUT,
        model.ck.config.num_classes
    );
    Ok(())
}

fn summary(version: &str, size: usize, classes: usize, in_ch: usize) -> Result<()> {
    let v = spgnet::model::Variant::parse(version)?;
    if size == 0 || classes == 0 || in_ch == 0 {
        anyhow::bail!("--size, --classes and --in-ch must be positive");
    }
    let arch = spgnet::model::Architecture::new(spgnet::model::ModelConfig::new(v, in_ch, classes));
    print!("{}", spgnet::summary::table(&arch, size));
    Ok(())
}

fn bench(backend: &Option<String>, a: &spgnet::bench::BenchArgs, json: bool) -> Result<()> {
    let g = gpu(backend)?;
    let r = pollster::block_on(spgnet::bench::run(&g, a))?;
    let (version, batch, size) = (a.version.name(), a.batch, a.size);
    if json {
        let mut line = serde_json::json!({
            "train_img_per_s": r.train_img_per_s, "infer_img_per_s": r.infer_img_per_s, "train_step_ms": r.train_step_ms,
            "peak_buffer_bytes": r.peak_buffer_bytes, "buffers_after_first_step": r.buffers_after_first_step,
            "buffers_after_last_step": r.buffers_after_last_step, "rss_after_first_step": r.rss_after_first_step,
            "rss_after_last_step": r.rss_after_last_step, "adapter": r.adapter, "version": version, "batch": batch, "size": size,
        });
        if a.profile {
            line["profile"] = profile_json(&r);
        }
        println!("{line}");
    } else {
        println!(
            "SPGNet {version}, batch {batch}, {size}x{size}: train {:.1} img/s ({:.0} ms/step), inference {:.1} img/s",
            r.train_img_per_s, r.train_step_ms, r.infer_img_per_s
        );
        println!(
            "peak GPU buffer bytes: {:.1} MiB; buffers created up to the first step {}, up to the last {}",
            r.peak_buffer_bytes as f64 / 1048576.0,
            r.buffers_after_first_step,
            r.buffers_after_last_step
        );
        if let (Some(a), Some(b)) = (r.rss_after_first_step, r.rss_after_last_step) {
            println!(
                "host memory (resident): {:.1} MiB after the first step, {:.1} MiB after the last",
                a as f64 / 1048576.0,
                b as f64 / 1048576.0
            );
        }
    }
    if a.profile && !json {
        print_profile(&r);
    }
    Ok(())
}

/// `bench --profile --json`'s "profile": every row of print_profile's tables (none cut off),
/// times in ms, and the submit cost taken off each dispatch.
fn profile_json(r: &spgnet::bench::BenchReport) -> serde_json::Value {
    let rows = |rows: &[spgnet::bench::KernelTime]| -> Vec<serde_json::Value> {
        rows.iter()
            .map(|k| {
                let gflops = (k.flops > 0.0).then(|| k.flops / k.seconds / 1e9);
                serde_json::json!({"label": k.label, "dispatches": k.dispatches, "ms": 1000.0 * k.seconds, "gflops": gflops})
            })
            .collect()
    };
    serde_json::json!({
        "submit_ms": 1000.0 * r.submit_seconds, "train_step_ms": r.train_step_ms, "infer_ms": r.infer_ms,
        "train_kernels": rows(&r.profile), "train_layers": rows(&r.layers), "train_layer_kernels": rows(&r.pairs),
        "infer_kernels": rows(&r.infer_profile),
    })
}

/// `bench --profile`'s tables: kernels and layers of a training step, kernels of an inference pass.
fn print_profile(r: &spgnet::bench::BenchReport) {
    let total: f64 = r.profile.iter().map(|k| k.seconds).sum();
    let infer_total: f64 = r.infer_profile.iter().map(|k| k.seconds).sum();
    let tables = [
        ("kernel (training step)", &r.profile, usize::MAX, total),
        ("layer (forward + backward)", &r.layers, 20, total),
        ("layer and kernel", &r.pairs, 40, total),
        ("kernel (inference pass)", &r.infer_profile, usize::MAX, infer_total),
    ];
    for (title, rows, limit, total) in tables {
        println!("\n{:<36} {:>6} {:>10} {:>7} {:>9}", title, "calls", "ms", "share", "GFLOP/s");
        for k in rows.iter().take(limit) {
            let gf = if k.flops > 0.0 { format!("{:.2}", k.flops / k.seconds / 1e9) } else { "-".into() };
            println!("{:<36} {:>6} {:>10.1} {:>6.1}% {:>9}", k.label, k.dispatches, 1000.0 * k.seconds, 100.0 * k.seconds / total, gf);
        }
    }
    println!(
        "(each dispatch submitted alone and waited for, less {:.3} ms: what an empty submit and wait takes; the kernels \
         sum to {:.1} ms of a {:.1} ms training step and {:.1} ms of a {:.1} ms inference pass)",
        1000.0 * r.submit_seconds,
        1000.0 * total,
        r.train_step_ms,
        1000.0 * infer_total,
        r.infer_ms
    );
}

fn debug_step(backend: &Option<String>, weights: &Path, batch: &Path, out: &Path, steps: usize, optim: OptimizerFlags) -> Result<()> {
    let g = gpu(backend)?;
    let opts = TrainOptions {
        momentum: optim.momentum,
        weight_decay: optim.weight_decay,
        label_smoothing: optim.label_smoothing,
        ..Default::default()
    };
    let ck = spgnet::checkpoint::load(weights)?;
    let b = spgnet::debug_step::parse_batch(&spgnet::checkpoint::TensorFile::open(batch)?, ck.config.num_classes)?;
    let tensors = pollster::block_on(spgnet::debug_step::run(&g, &ck, &b, steps, optim.lr, opts))?;
    spgnet::files::write_atomic(out, &spgnet::checkpoint::to_bytes(&tensors, Default::default())?)?;
    eprintln!("wrote {} tensors to {}", tensors.len(), out.display());
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    // A bug must still end in one line and exit code 1, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // The reader of our stdout went away (`spgnet eval | head -1`): it has what it wanted.
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error{at}: {msg} (please report it)");
    }));
    let result = std::panic::catch_unwind(|| run(cli));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
        Err(_) => std::process::exit(1),
    }
}
