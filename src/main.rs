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

fn gpu(cli_backend: &Option<String>) -> Result<Gpu> {
    let g = Gpu::with_backend(cli_backend.as_deref())?;
    eprintln!("adapter: {}", g.describe());
    Ok(g)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
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
