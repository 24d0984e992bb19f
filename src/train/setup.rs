//! A run's data (loaded, conformed to the model's input, with its preprocessing) and the
//! checks made before any GPU work: the output folder is writable and has room.

use super::TrainArgs;
use crate::data::Dataset;
use crate::datasets;
use crate::model::{Architecture, ModelConfig};
use crate::preprocess::{conform, Preprocess};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::sync::Arc;

/// Data and preprocessing of a run.
pub struct Prepared {
    pub train: Arc<Dataset>,
    pub test: Arc<Dataset>,
    pub channels: usize,
    pub size: usize,
    pub eval_pre: Arc<Preprocess>,
    pub train_pre: Arc<Preprocess>,
}

pub fn prepare(args: &TrainArgs) -> Result<Prepared> {
    let splits = datasets::load(args.dataset, &args.data, args.val_split, args.seed)?;
    let (mut train, mut test) = (splits.train, splits.test);
    if let Some(n) = args.limit {
        train.truncate(n);
        test.truncate(n);
    }
    if train.is_empty() || test.is_empty() {
        bail!("{}: the training or test split is empty", args.data.display());
    }
    if args.batch > train.len() {
        bail!("--batch {} is larger than the training set ({} images): use a smaller batch", args.batch, train.len());
    }
    let channels = train.channels;
    let size = args.size.unwrap_or(train.h);
    let (mean, std) = args.dataset.fixed_mean_std().unwrap_or_else(|| train.mean_std());
    let train = Arc::new(conform(&train, channels, size));
    let test = Arc::new(conform(&test, channels, size));
    let flip = args.flip.unwrap_or(args.dataset.flip_by_default());
    let eval_pre = Arc::new(Preprocess { mean: mean.clone(), std: std.clone(), pad: 0, flip: false });
    let train_pre = Arc::new(Preprocess { mean, std, pad: args.crop_pad, flip });
    Ok(Prepared { train, test, channels, size, eval_pre, train_pre })
}

/// Fail early when the output folder cannot be written (read-only, full disk).
pub(super) fn check_writable(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create the output folder", out.display()))?;
    let probe = out.join(".spgnet-write-test");
    let result = std::fs::write(&probe, vec![0u8; 1 << 20]);
    let _ = std::fs::remove_file(&probe);
    result.map_err(|e| anyhow!("{}: the output folder is not writable ({e})", out.display()))
}

/// Fail early when the output folder's disk cannot hold the run's files: best and last
/// (the state each), resume (state and momentum) and the temporary copy an atomic write of
/// resume needs beside it, plus the plots.
pub(super) fn check_space(out: &Path, config: &ModelConfig) -> Result<()> {
    let values: usize = Architecture::new(config.clone()).tensors().iter().map(|t| t.shape.iter().product::<usize>()).sum();
    let needed = 6 * 4 * values as u64 + (4 << 20);
    let free = fs4::available_space(out).with_context(|| format!("{}: cannot tell how much disk space is free", out.display()))?;
    if free < needed {
        bail!(
            "{}: the disk has {:.1} MiB free but this run's checkpoints need {:.1} MiB; free some space or choose another --out",
            out.display(),
            free as f64 / 1048576.0,
            needed as f64 / 1048576.0
        );
    }
    Ok(())
}

/// `--out` held by this run: a second run on the same folder is refused while this one lives.
/// The lock is the operating system's, released when the process ends however it ends, so a
/// crashed or killed run leaves nothing stuck.
pub(super) struct OutputLock(std::fs::File, std::path::PathBuf);

impl Drop for OutputLock {
    fn drop(&mut self) {
        // a run that ends leaves its folder as it found it; the lock goes with the file
        let _ = std::fs::remove_file(&self.1);
        let _ = self.0.unlock();
    }
}

pub(super) fn lock_output(out: &Path) -> Result<OutputLock> {
    use std::io::{Read, Seek, Write};
    let path = out.join(".spgnet.lock");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0)?;
            f.seek(std::io::SeekFrom::Start(0))?;
            write!(f, "{}", std::process::id())?;
            Ok(OutputLock(f, path))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            bail!(
                "{}: another spgnet train (pid {}) is writing to this folder; wait for it to end, or choose another --out",
                out.display(),
                holder.trim()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => bail!("{}: cannot lock ({e})", path.display()),
    }
}
