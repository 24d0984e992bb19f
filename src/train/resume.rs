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
pub(super) fn save_resume(
    gpu: &Gpu,
    args: &TrainArgs,
    trainer: &Trainer,
    ema: Option<&DeviceState>,
    epochs_done: usize,
    best_acc: f64,
) -> Result<()> {
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
    meta.insert("progress.epochs_done".into(), epochs_done.to_string());
    meta.insert("progress.best_acc".into(), best_acc.to_string());
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
