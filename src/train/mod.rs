//! `spgnet train`: the CIFAR-10 notebook's recipe (and others) on the GPU, with progress bars,
//! evaluation every epoch, metrics.csv, learning-curve pictures, best/last checkpoints and an
//! exact `--resume`. Everything is written atomically; a NaN loss stops the run keeping the
//! last good checkpoint. `args`: what defines a run; `setup`: its data and the checks before
//! it; `resume`: where it starts; `epoch`: one epoch's steps and evaluation; `metrics`: the
//! record it leaves; `faults`: fault injection for the tests.

mod args;
mod epoch;
mod faults;
mod metrics;
mod resume;
mod setup;

pub use crate::network::learning_rate;
pub use args::TrainArgs;
pub use epoch::evaluate;
pub use metrics::{read_metrics, read_steps, EpochMetrics, StepMetrics};
pub use setup::{prepare, Prepared};

use crate::checkpoint::{self, Checkpoint, Metadata};
use crate::gpu::Gpu;
use crate::model::ModelConfig;
use crate::network::{DeviceState, Evaluator, TrainOptions, Trainer};
use anyhow::{bail, Result};
use epoch::EpochEnd;
use pollster::block_on;
use resume::Progress;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What a finished (or stopped) run reports.
pub struct Summary {
    pub epochs: Vec<EpochMetrics>,
    pub best_acc: f64,
    pub out: PathBuf,
    /// Where an interrupted run stopped: (epoch, 1-based; batches done of it, of how many).
    pub interrupted: Option<(usize, usize, usize)>,
}

/// How a call to `train` runs (not part of the run's definition).
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// Progress bars and per-epoch lines on stderr.
    pub progress: bool,
    /// Stop after this many epochs in total (as if the run were killed at that epoch's end).
    pub stop_after: Option<usize>,
    /// Set (by a Ctrl-C or SIGTERM handler) to stop after the step under way, saving a resume
    /// point there.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// Train (or resume) a run. Returns the per-epoch metrics.
pub fn train(gpu: &Gpu, args: Option<TrainArgs>, resume: Option<&Path>, control: RunControl) -> Result<Summary> {
    let (args, resumed) = match resume {
        Some(dir) => {
            let (a, file) = resume::open(dir)?;
            (a, Some(file))
        }
        None => (args.expect("train needs arguments or --resume"), None),
    };
    args.validate()?;
    if let Some(init) = args.init.as_ref().filter(|p| !p.is_file()) {
        bail!("--init {}: no such file (give a .safetensors checkpoint, e.g. a run's best.safetensors)", init.display());
    }
    setup::check_writable(&args.out)?;
    let prep = prepare(&args)?;
    let classes = prep.train.classes.clone();
    let config = ModelConfig { dropout: args.dropout, ..ModelConfig::new(args.version, prep.channels, classes.len()) };
    setup::check_space(&args.out, &config)?;
    let _lock = setup::lock_output(&args.out)?;
    let meta = Metadata {
        input_size: Some(prep.size),
        classes: Some(classes),
        mean: Some(prep.eval_pre.mean.clone()),
        std: Some(prep.eval_pre.std.clone()),
        dataset: Some(args.dataset.name().to_string()),
    };
    let opts = TrainOptions {
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        decay_bn: args.decay_bn,
        label_smoothing: args.label_smoothing,
        dropout: args.dropout,
    };

    let mut progress = Progress::default();
    let mut history = Vec::new();
    let ck = match &resumed {
        Some(file) => {
            progress = Progress::read(file)?;
            history = read_metrics(&args.out.join("metrics.csv")).into_iter().filter(|r| r.epoch <= progress.epochs_done).collect();
            resume::load_prefixed(file, "state.", config.clone(), meta.clone())?
        }
        None => match &args.init {
            Some(path) => resume::initial_weights(path, &config)?,
            None => Checkpoint::initialized(config.clone(), args.seed),
        },
    };
    let size = (prep.size, prep.size);
    let trainer = Trainer::new(gpu, &ck, args.batch, size, opts)?;
    let ema = match (args.ema, &resumed) {
        (None, _) => None,
        (Some(_), Some(file)) => Some(DeviceState::new(gpu, &resume::load_prefixed(file, "ema.", config.clone(), meta.clone())?)?),
        (Some(_), None) => Some(trainer.state.shadow(gpu)),
    };
    if let Some(file) = &resumed {
        trainer.state.write_velocity(gpu, &resume::prefixed(file, "velocity.")?)?;
    }
    let eval_state = ema.as_ref().unwrap_or(&trainer.state);
    let eval_batch = args.batch.min(prep.test.len()).max(2);
    let evaluator = Evaluator::new(gpu, eval_state, eval_batch, size, args.label_smoothing)?;
    let ema_launches = ema.as_ref().map(|e| e.ema_from(gpu, &trainer.state, args.ema.unwrap())).unwrap_or_default();
    let session = epoch::Session {
        gpu,
        args: &args,
        prep: &prep,
        trainer: &trainer,
        ema_launches: &ema_launches,
        evaluator: &evaluator,
        faults: faults::Faults::from_env(),
        progress: control.progress,
        interrupt: control.interrupt.clone(),
        steps: std::cell::RefCell::new(Vec::new()),
    };
    if resumed.is_some() {
        let at = progress.epochs_done * session.steps_per_epoch() + progress.partial.batches;
        *session.steps.borrow_mut() = read_steps(&args.out.join("steps.csv")).into_iter().filter(|r| r.step <= at).collect();
    }

    let start_epoch = progress.epochs_done;
    if start_epoch >= args.epochs {
        eprintln!("{}: all {} epochs are done", args.out.display(), args.epochs);
    } else if control.progress {
        announce(&args, &prep, &config, session.steps_per_epoch(), &progress);
    }
    for epoch in start_epoch..control.stop_after.map_or(args.epochs, |n| n.min(args.epochs)) {
        let done = std::mem::take(&mut progress.partial);
        let ended = session.run_epoch(epoch, done).map_err(|e| with_last_checkpoint(e, gpu, &args.out, &progress))?;
        let row = match ended {
            EpochEnd::Complete(row) => row,
            EpochEnd::Interrupted(partial) => {
                // The resume point at this step: the state, momentum and EMA as they are now.
                progress.partial = partial;
                metrics::write_steps(&args.out, &session.steps.borrow())?;
                resume::save_resume(gpu, &args, &trainer, ema.as_ref(), &progress)?;
                let summary = Summary {
                    epochs: history,
                    best_acc: progress.best_acc,
                    out: args.out.clone(),
                    interrupted: Some((epoch + 1, partial.batches, session.steps_per_epoch())),
                };
                return Ok(summary);
            }
        };
        if control.progress {
            eprintln!(
                "epoch {}/{}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | {:.0} img/s, {:.0} s",
                row.epoch,
                args.epochs,
                row.train_loss,
                100.0 * row.train_acc,
                row.val_loss,
                100.0 * row.val_acc,
                row.img_per_s,
                row.seconds
            );
        }
        let val_acc = row.val_acc;
        history.push(row);
        // Checkpoints first, the resume file last: it is the commit point of the epoch.
        let model_ck = block_on(eval_state.to_checkpoint(gpu, meta.clone()))?;
        checkpoint::save(&args.out.join("last.safetensors"), &model_ck)?;
        if ema.is_some() {
            // The weights themselves beside their average, to evaluate or ship either.
            checkpoint::save(&args.out.join("live.safetensors"), &block_on(trainer.state.to_checkpoint(gpu, meta.clone()))?)?;
        }
        if val_acc > progress.best_acc {
            progress.best_acc = val_acc;
            checkpoint::save(&args.out.join("best.safetensors"), &model_ck)?;
        }
        metrics::write_metrics(&args.out, &history, &session.steps.borrow())?;
        progress.epochs_done = epoch + 1;
        resume::save_resume(gpu, &args, &trainer, ema.as_ref(), &progress)?;
    }
    Ok(Summary { epochs: history, best_acc: progress.best_acc, out: args.out.clone(), interrupted: None })
}

/// A device lost mid-run: the error names the checkpoint to fall back on and how to continue.
fn with_last_checkpoint(e: anyhow::Error, gpu: &Gpu, out: &Path, progress: &Progress) -> anyhow::Error {
    if !gpu.is_lost() {
        return e;
    }
    let last = out.join("last.safetensors");
    let kept = match progress.epochs_done {
        0 => "no epoch had finished, so there is no checkpoint yet".to_string(),
        n if last.exists() => format!("the last good checkpoint is {} (epoch {n})", last.display()),
        n => format!("epoch {n} was the last to finish"),
    };
    anyhow::anyhow!("{e:#}; {kept}; continue with `spgnet train --resume {}`", out.display())
}

/// The run's one-line description at its start.
fn announce(args: &TrainArgs, prep: &Prepared, config: &ModelConfig, steps: usize, progress: &Progress) {
    let (params, macs) = crate::summary::totals(&crate::model::Architecture::new(config.clone()), prep.size);
    eprintln!(
        "model: SPGNet {}, {:.2} M parameters, {:.1} M multiply-adds per {}x{} image",
        args.version.name(),
        params as f64 / 1e6,
        macs as f64 / 1e6,
        prep.size,
        prep.size
    );
    eprintln!(
        "data: {}, {} training and {} test images of {}x{}x{}, {} classes",
        args.dataset.name(),
        prep.train.len(),
        prep.test.len(),
        prep.channels,
        prep.size,
        prep.size,
        prep.train.classes.len()
    );
    let resuming = match (progress.epochs_done, progress.partial.batches) {
        (0, 0) => String::new(),
        (e, 0) => format!(", resuming after epoch {e}"),
        (e, b) => format!(", resuming in epoch {} after step {b}", e + 1),
    };
    eprintln!("training {} epochs of {steps} steps, batch {}, into {}{resuming}", args.epochs, args.batch, args.out.display());
}
