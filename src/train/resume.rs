//! Where a run starts: from scratch, from `--init` weights, or from its resume file, which
//! holds all the run needs to continue exactly (state, momentum, EMA, progress, arguments).

use super::TrainArgs;
use crate::checkpoint::{self, Checkpoint, Metadata, TensorFile};
use crate::gpu::Gpu;
use crate::model::ModelConfig;
use crate::network::{DeviceState, Trainer};
use anyhow::{anyhow, bail, Result};
use pollster::block_on;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(super) fn resume_path(out: &Path) -> PathBuf {
    out.join("resume.safetensors")
}

/// `--init`: a checkpoint of the same architecture (variant, input channels, classes).
pub(super) fn initial_weights(path: &Path, config: &ModelConfig) -> Result<Checkpoint> {
    let ck = checkpoint::load(path).map_err(|e| anyhow!("--init {}: {e:#}", path.display()))?;
    let (have, want) = (&ck.config, config);
    if (have.variant, have.in_channels, have.num_classes) != (want.variant, want.in_channels, want.num_classes) {
        bail!(
            "--init {}: holds {} with {} input channels and {} classes, but this run trains {} with {} and {}",
            path.display(),
            have.variant.name(),
            have.in_channels,
            have.num_classes,
            want.variant.name(),
            want.in_channels,
            want.num_classes
        );
    }
    Ok(Checkpoint { config: config.clone(), ..ck })
}

pub(super) fn prefixed(file: &TensorFile, prefix: &str) -> Result<BTreeMap<String, Vec<f32>>> {
    file.names()
        .into_iter()
        .filter_map(|n| n.strip_prefix(prefix).map(|s| (n.clone(), s.to_string())))
        .map(|(full, short)| Ok((short, file.floats(&full)?.data)))
        .collect()
}

pub(super) fn load_prefixed(file: &TensorFile, prefix: &str, config: ModelConfig, meta: Metadata) -> Result<Checkpoint> {
    let tensors = prefixed(file, prefix)?;
    let arch = crate::model::Architecture::new(config.clone());
    for t in arch.tensors() {
        match tensors.get(&t.name) {
            Some(v) if v.len() == t.len() => {}
            _ => bail!("{}: resume state lacks '{prefix}{}' of the right size: was it written by another model?", file.path(), t.name),
        }
    }
    Ok(Checkpoint { config, tensors, meta })
}

/// All the run needs to continue: model state, momentum, EMA, progress and arguments.
pub(super) fn save_resume(gpu: &Gpu, args: &TrainArgs, trainer: &Trainer, ema: Option<&DeviceState>, progress: &Progress) -> Result<()> {
    let mut tensors = Vec::new();
    let arch = &trainer.state.arch;
    let state = block_on(trainer.state.to_checkpoint(gpu, Metadata::default()))?;
    let shape = |name: &str| arch.tensors().into_iter().find(|t| t.name == name).map(|t| t.shape).unwrap();
    for (n, v) in state.tensors {
        tensors.push((format!("state.{n}"), shape(&n), v));
    }
    for (n, v) in block_on(trainer.state.read_velocity(gpu))? {
        tensors.push((format!("velocity.{n}"), shape(&n), v));
    }
    if let Some(e) = ema {
        for (n, v) in block_on(e.to_checkpoint(gpu, Metadata::default()))?.tensors {
            tensors.push((format!("ema.{n}"), shape(&n), v));
        }
    }
    let mut meta = args.to_meta();
    progress.write(&mut meta);
    crate::files::write_atomic(&resume_path(&args.out), &checkpoint::to_bytes(&tensors, meta)?)
}

/// A run's arguments (its output folder being `dir`) and its resume file.
pub(super) fn open(dir: &Path) -> Result<(TrainArgs, TensorFile)> {
    let f = resume_path(dir);
    if !f.is_file() {
        bail!("{}: no resume.safetensors here: nothing to resume (start the run without --resume)", dir.display());
    }
    let file = TensorFile::open(&f)?;
    let mut a = TrainArgs::from_meta(&file.metadata(), file.path())?;
    a.out = dir.to_path_buf();
    Ok((a, file))
}

/// Where a run stands: complete epochs, the best test accuracy so far, and within an epoch that
/// was interrupted (Ctrl-C, SIGTERM) the batches done and the running sums of its metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub epochs_done: usize,
    pub best_acc: f64,
    pub partial: Partial,
}

/// The interrupted epoch's batches done, its summed loss and correct answers, images seen and
/// training seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Partial {
    pub batches: usize,
    pub loss_sum: f64,
    pub correct: f64,
    pub seen: usize,
    pub seconds: f64,
}

impl Progress {
    fn write(&self, meta: &mut std::collections::HashMap<String, String>) {
        let p = &self.partial;
        for (k, v) in [
            ("epochs_done", self.epochs_done.to_string()),
            ("best_acc", self.best_acc.to_string()),
            ("batches_done", p.batches.to_string()),
            ("loss_sum", p.loss_sum.to_string()),
            ("correct", p.correct.to_string()),
            ("seen", p.seen.to_string()),
            ("seconds", p.seconds.to_string()),
        ] {
            meta.insert(format!("progress.{k}"), v);
        }
    }

    /// The progress a resume file records (files from before mid-epoch resume points have
    /// complete epochs only).
    pub(super) fn read(file: &TensorFile) -> Result<Progress> {
        let m = file.metadata();
        let get = |k: &str| m.get(&format!("progress.{k}"));
        let num = |k: &str| -> Result<Option<f64>> {
            get(k).map(|v| v.parse::<f64>().map_err(|_| anyhow!("{}: progress.{k} = '{v}' is not a number", file.path()))).transpose()
        };
        let epochs_done = num("epochs_done")?.ok_or_else(|| anyhow!("{}: no progress.epochs_done", file.path()))? as usize;
        let partial = Partial {
            batches: num("batches_done")?.unwrap_or(0.0) as usize,
            loss_sum: num("loss_sum")?.unwrap_or(0.0),
            correct: num("correct")?.unwrap_or(0.0),
            seen: num("seen")?.unwrap_or(0.0) as usize,
            seconds: num("seconds")?.unwrap_or(0.0),
        };
        Ok(Progress { epochs_done, best_acc: num("best_acc")?.unwrap_or(-1.0), partial })
    }
}
