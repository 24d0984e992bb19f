//! The `spgnet` command line: thin over the library.

use anyhow::Result;
use clap::{Parser, Subcommand};
use spgnet::gpu::Gpu;
use spgnet::network::TrainOptions;
use std::path::PathBuf;

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
    /// loss.png, acc.png, best.safetensors, last.safetensors and resume.safetensors
    Train(TrainCli),
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
        #[arg(long, default_value_t = 0.1)]
        lr: f32,
        #[arg(long, default_value_t = 0.9)]
        momentum: f32,
        #[arg(long, default_value_t = 5e-4)]
        weight_decay: f32,
        #[arg(long, default_value_t = 0.1)]
        label_smoothing: f32,
    },
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
    /// Peak learning rate, decayed by a cosine per step
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    #[arg(long, default_value_t = 0.1)]
    label_smoothing: f32,
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
}

impl TrainCli {
    fn to_args(&self) -> Result<spgnet::train::TrainArgs> {
        let dataset = spgnet::data::Kind::parse(&self.dataset)?;
        let data = match (&self.data, dataset.default_path()) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => PathBuf::from(d),
            (None, None) => anyhow::bail!("--data is required for {} (the dataset folder or archive)", dataset.name()),
        };
        let version = spgnet::model::Variant::parse(&self.version)?;
        Ok(spgnet::train::TrainArgs {
            dataset,
            data,
            version,
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            label_smoothing: self.label_smoothing,
            warmup_epochs: self.warmup_epochs,
            seed: self.seed,
            out: self.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/{}-{}", dataset.name(), version.name()))),
            limit: self.limit,
            size: self.size,
            dropout: self.dropout,
            ema: self.ema,
            flip: self.flip,
            crop_pad: self.crop_pad,
            decay_bn: !self.no_bn_decay,
            val_split: self.val_split,
        })
    }
}

fn gpu(cli_backend: &Option<String>) -> Result<Gpu> {
    let g = Gpu::with_backend(cli_backend.as_deref())?;
    eprintln!("adapter: {}", g.describe());
    Ok(g)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(t) => {
            let g = gpu(&cli.backend)?;
            let args = if t.resume.is_some() { None } else { Some(t.to_args()?) };
            let summary = spgnet::train::train(&g, args, t.resume.as_deref(), spgnet::train::RunControl { progress: true, stop_after: None })?;
            eprintln!("best test accuracy {:.2}%; checkpoints, metrics.csv, loss.png and acc.png are in {}", 100.0 * summary.best_acc, summary.out.display());
        }
        Command::Bench { version, batch, size, steps, classes, in_ch, profile, json } => {
            let g = gpu(&cli.backend)?;
            let a = spgnet::bench::BenchArgs { version: spgnet::model::Variant::parse(&version)?, batch, size, steps, classes, in_channels: in_ch, profile };
            let r = spgnet::bench::run(&g, &a)?;
            if json {
                println!(
                    "{{\"train_img_per_s\": {:.2}, \"infer_img_per_s\": {:.2}, \"train_step_ms\": {:.1}, \"peak_buffer_bytes\": {}, \"buffers_after_first_step\": {}, \"buffers_after_last_step\": {}, \"adapter\": {:?}, \"version\": {:?}, \"batch\": {batch}, \"size\": {size}}}",
                    r.train_img_per_s, r.infer_img_per_s, r.train_step_ms, r.peak_buffer_bytes, r.buffers_after_first_step, r.buffers_after_last_step, r.adapter, version
                );
            } else {
                println!("SPGNet {version}, batch {batch}, {size}x{size}: train {:.1} img/s ({:.0} ms/step), inference {:.1} img/s", r.train_img_per_s, r.train_step_ms, r.infer_img_per_s);
                println!("peak GPU buffer bytes: {:.1} MiB; buffers created up to the first step {}, up to the last {}", r.peak_buffer_bytes as f64 / 1048576.0, r.buffers_after_first_step, r.buffers_after_last_step);
            }
            if profile {
                let total: f64 = r.profile.iter().map(|k| k.seconds).sum();
                println!("{:<26} {:>6} {:>10} {:>7} {:>9}", "kernel", "calls", "ms", "share", "GFLOP/s");
                for k in &r.profile {
                    let gf = if k.flops > 0.0 { format!("{:.2}", k.flops / k.seconds / 1e9) } else { "-".into() };
                    println!("{:<26} {:>6} {:>10.1} {:>6.1}% {:>9}", k.label, k.dispatches, 1000.0 * k.seconds, 100.0 * k.seconds / total, gf);
                }
            }
        }
        Command::Info => {
            for a in Gpu::list_adapters() {
                println!("available: {a}");
            }
            println!("selected:  {}", Gpu::with_backend(cli.backend.as_deref())?.describe());
        }
        Command::DebugStep { weights, batch, out, steps, lr, momentum, weight_decay, label_smoothing } => {
            let g = gpu(&cli.backend)?;
            let opts = TrainOptions { momentum, weight_decay, label_smoothing, ..Default::default() };
            let tensors = spgnet::debug_step::run(&g, &weights, &batch, steps, lr, opts)?;
            let bytes = spgnet::checkpoint::to_bytes(&tensors, Default::default())?;
            spgnet::checkpoint::write_atomic(&out, &bytes)?;
            eprintln!("wrote {} tensors to {}", tensors.len(), out.display());
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
