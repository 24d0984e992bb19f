//! `spgnet train`: the CIFAR-10 notebook's recipe (and others) on the GPU, with progress bars,
//! evaluation every epoch, metrics.csv, learning-curve pictures, best/last checkpoints and an
//! exact `--resume`. Everything is written atomically; a NaN loss stops the run keeping the
//! last good checkpoint.

use crate::augment::{self, Preprocess};
use crate::checkpoint::{self, Checkpoint, Metadata, TensorFile};
use crate::data::{self, Dataset, Kind};
use crate::gpu::Gpu;
use crate::model::{Architecture, ModelConfig, Variant};
use crate::network::{DeviceState, Evaluator, TrainOptions, Trainer};
use crate::ops::sgd;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Everything that defines a run; saved in the resume file so `--resume` continues it exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainArgs {
    pub dataset: Kind,
    pub data: PathBuf,
    pub version: Variant,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub label_smoothing: f32,
    pub warmup_epochs: usize,
    pub seed: u64,
    pub out: PathBuf,
    /// Train on the first N training images (and evaluate on the first N test images).
    pub limit: Option<usize>,
    /// Model input side (default: the dataset's own).
    pub size: Option<usize>,
    pub dropout: f32,
    /// Weight EMA decay (the released ImageNet recipe uses 0.9999).
    pub ema: Option<f32>,
    /// Raise the EMA's decay gradually (sgd::ema_decay) instead of using it from the first step.
    pub ema_warmup: bool,
    /// Horizontal flips (default: on for natural images, off for digits and clothes).
    pub flip: Option<bool>,
    /// Random-crop padding (the notebook's 4).
    pub crop_pad: usize,
    /// Decay BN gamma/beta too (the notebook); false decays conv/linear weights only.
    pub decay_bn: bool,
    pub val_split: f32,
    /// Start from these weights (fine-tuning) instead of the initialisation.
    pub init: Option<PathBuf>,
}

impl TrainArgs {
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &str, why: String| -> Result<()> { bail!("--{flag}: {why}") };
        if self.epochs == 0 || self.epochs > 100_000 {
            bad("epochs", format!("must be between 1 and 100000, got {}", self.epochs))?;
        }
        if self.batch == 0 || self.batch > 65_536 {
            bad("batch", format!("must be between 1 and 65536, got {}", self.batch))?;
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 100.0) {
            bad("lr", format!("must be a positive number up to 100, got {}", self.lr))?;
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bad("momentum", format!("must be in [0, 1), got {}", self.momentum))?;
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bad("weight-decay", format!("must be >= 0, got {}", self.weight_decay))?;
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            bad("label-smoothing", format!("must be in [0, 1), got {}", self.label_smoothing))?;
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bad("dropout", format!("must be in [0, 1), got {}", self.dropout))?;
        }
        if self.warmup_epochs >= self.epochs && self.warmup_epochs > 0 {
            bad("warmup-epochs", format!("must be fewer than --epochs ({})", self.epochs))?;
        }
        if let Some(d) = self.ema {
            if !(0.0..1.0).contains(&d) {
                bad("ema", format!("decay must be in [0, 1), got {d}"))?;
            }
        }
        if let Some(s) = self.size {
            if !(8..=1024).contains(&s) {
                bad("size", format!("must be between 8 and 1024, got {s}"))?;
            }
        }
        if self.limit == Some(0) {
            bad("limit", "must be at least 1".into())?;
        }
        Ok(())
    }

    fn to_meta(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(format!("train.{k}"), v);
        };
        put("dataset", self.dataset.name().into());
        put("data", self.data.display().to_string());
        put("version", self.version.name().into());
        put("epochs", self.epochs.to_string());
        put("batch", self.batch.to_string());
        put("lr", self.lr.to_string());
        put("momentum", self.momentum.to_string());
        put("weight_decay", self.weight_decay.to_string());
        put("label_smoothing", self.label_smoothing.to_string());
        put("warmup_epochs", self.warmup_epochs.to_string());
        put("seed", self.seed.to_string());
        put("out", self.out.display().to_string());
        put("limit", self.limit.map_or("".into(), |v| v.to_string()));
        put("size", self.size.map_or("".into(), |v| v.to_string()));
        put("dropout", self.dropout.to_string());
        put("ema", self.ema.map_or("".into(), |v| v.to_string()));
        put("ema_warmup", self.ema_warmup.to_string());
        put("flip", self.flip.map_or("".into(), |v| v.to_string()));
        put("crop_pad", self.crop_pad.to_string());
        put("decay_bn", self.decay_bn.to_string());
        put("val_split", self.val_split.to_string());
        put("init", self.init.as_ref().map_or("".into(), |p| p.display().to_string()));
        m
    }

    fn from_meta(m: &HashMap<String, String>, file: &str) -> Result<TrainArgs> {
        let get = |k: &str| m.get(&format!("train.{k}")).cloned().ok_or_else(|| anyhow!("{file}: not a resume file of spgnet train (no train.{k})"));
        fn num<T: std::str::FromStr>(file: &str, k: &str, v: String) -> Result<T> {
            v.parse().map_err(|_| anyhow!("{file}: train.{k} = '{v}' is not valid"))
        }
        let opt = |k: &str| -> Result<Option<String>> { Ok(Some(get(k)?).filter(|v| !v.is_empty())) };
        Ok(TrainArgs {
            dataset: Kind::parse(&get("dataset")?)?,
            data: PathBuf::from(get("data")?),
            version: Variant::parse(&get("version")?)?,
            epochs: num(file, "epochs", get("epochs")?)?,
            batch: num(file, "batch", get("batch")?)?,
            lr: num(file, "lr", get("lr")?)?,
            momentum: num(file, "momentum", get("momentum")?)?,
            weight_decay: num(file, "weight_decay", get("weight_decay")?)?,
            label_smoothing: num(file, "label_smoothing", get("label_smoothing")?)?,
            warmup_epochs: num(file, "warmup_epochs", get("warmup_epochs")?)?,
            seed: num(file, "seed", get("seed")?)?,
            out: PathBuf::from(get("out")?),
            limit: opt("limit")?.map(|v| num(file, "limit", v)).transpose()?,
            size: opt("size")?.map(|v| num(file, "size", v)).transpose()?,
            dropout: num(file, "dropout", get("dropout")?)?,
            ema: opt("ema")?.map(|v| num(file, "ema", v)).transpose()?,
            // absent from resume files written before --ema-warmup existed: those runs used
            // the fixed decay, and resume exactly only with it
            ema_warmup: m.get("train.ema_warmup").map(|v| num(file, "ema_warmup", v.clone())).transpose()?.unwrap_or(false),
            flip: opt("flip")?.map(|v| num(file, "flip", v)).transpose()?,
            crop_pad: num(file, "crop_pad", get("crop_pad")?)?,
            decay_bn: num(file, "decay_bn", get("decay_bn")?)?,
            val_split: num(file, "val_split", get("val_split")?)?,
            // absent from resume files written before --init existed
            init: m.get("train.init").filter(|v| !v.is_empty()).map(PathBuf::from),
        })
    }
}

/// Learning rate at a global step: linear warm-up, then cosine decay to 0 at the last step
/// (PaddlePaddle's CosineAnnealingDecay stepped per batch, as in the notebook).
pub fn learning_rate(base: f32, step: usize, warmup_steps: usize, total_steps: usize) -> f32 {
    if step < warmup_steps {
        return base * (step + 1) as f32 / warmup_steps as f32;
    }
    let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
    let t = ((step - warmup_steps) as f64 / span).min(1.0);
    (base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
}

/// One row of metrics.csv.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub step: usize,
    pub lr: f32,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub img_per_s: f64,
    pub seconds: f64,
}

const CSV_HEADER: &str = "epoch,step,lr,train_loss,train_acc,val_loss,val_acc,img_per_s,seconds";

impl EpochMetrics {
    fn csv(&self) -> String {
        format!(
            "{},{},{:.6},{:.5},{:.5},{:.5},{:.5},{:.1},{:.1}",
            self.epoch, self.step, self.lr, self.train_loss, self.train_acc, self.val_loss, self.val_acc, self.img_per_s, self.seconds
        )
    }
    fn parse(line: &str) -> Option<EpochMetrics> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 9 {
            return None;
        }
        Some(EpochMetrics {
            epoch: f[0].parse().ok()?,
            step: f[1].parse().ok()?,
            lr: f[2].parse().ok()?,
            train_loss: f[3].parse().ok()?,
            train_acc: f[4].parse().ok()?,
            val_loss: f[5].parse().ok()?,
            val_acc: f[6].parse().ok()?,
            img_per_s: f[7].parse().ok()?,
            seconds: f[8].parse().ok()?,
        })
    }
}

/// What a finished (or stopped) run reports.
pub struct Summary {
    pub epochs: Vec<EpochMetrics>,
    pub best_acc: f64,
    pub out: PathBuf,
}

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
    let splits = data::load(args.dataset, &args.data, args.val_split, args.seed)?;
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
    let train = Arc::new(augment::conform(&train, channels, size));
    let test = Arc::new(augment::conform(&test, channels, size));
    let flip = args.flip.unwrap_or(args.dataset.flip_by_default());
    let eval_pre = Arc::new(Preprocess { mean: mean.clone(), std: std.clone(), pad: 0, flip: false });
    let train_pre = Arc::new(Preprocess { mean, std, pad: args.crop_pad, flip });
    Ok(Prepared { train, test, channels, size, eval_pre, train_pre })
}

fn resume_path(out: &Path) -> PathBuf {
    out.join("resume.safetensors")
}

/// Fail early when the output folder cannot be written (read-only, full disk).
fn check_writable(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create the output folder", out.display()))?;
    let probe = out.join(".spgnet-write-test");
    let result = std::fs::write(&probe, vec![0u8; 1 << 20]);
    let _ = std::fs::remove_file(&probe);
    result.map_err(|e| anyhow!("{}: the output folder is not writable ({e})", out.display()))
}

/// Fail early when the output folder's disk cannot hold the run's files: best and last
/// (the state each), resume (state and momentum) and the temporary copy an atomic write of
/// resume needs beside it, plus the plots.
fn check_space(out: &Path, config: &ModelConfig) -> Result<()> {
    let values: usize = Architecture::new(config.clone()).tensors().iter().map(|t| t.shape.iter().product::<usize>()).sum();
    let needed = 6 * 4 * values as u64 + (4 << 20);
    let free = fs4::available_space(out).with_context(|| format!("{}: cannot tell how much disk space is free", out.display()))?;
    if free < needed {
        bail!("{}: the disk has {:.1} MiB free but this run's checkpoints need {:.1} MiB; free some space or choose another --out", out.display(), free as f64 / 1048576.0, needed as f64 / 1048576.0);
    }
    Ok(())
}

/// Evaluate `state` on a dataset: (mean loss, accuracy).
pub fn evaluate(gpu: &Gpu, eval: &Evaluator, ds: &Arc<Dataset>, pre: &Arc<Preprocess>, seed: u64) -> Result<(f64, f64)> {
    eval.weights_changed(); // training or the EMA wrote them since the last evaluation
    let (mut loss, mut correct, mut n) = (0f64, 0f64, 0usize);
    for b in augment::batches(ds.clone(), pre.clone(), eval.batch(), seed, 0, false)? {
        let (l, c, _) = eval.evaluate(gpu, &b.input, &b.labels)?;
        loss += l[..b.valid].iter().map(|&v| v as f64).sum::<f64>();
        correct += c[..b.valid].iter().map(|&v| v as f64).sum::<f64>();
        n += b.valid;
    }
    Ok((loss / n as f64, correct / n as f64))
}

fn bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}").unwrap().progress_chars("=> ")
}

/// How a call to `train` runs (not part of the run's definition).
#[derive(Clone, Copy, Debug, Default)]
pub struct RunControl {
    /// Progress bars and per-epoch lines on stderr.
    pub progress: bool,
    /// Stop after this many epochs in total (as if the run were killed at that epoch's end).
    pub stop_after: Option<usize>,
}

/// Train (or resume) a run. Returns the per-epoch metrics.
pub fn train(gpu: &Gpu, args: Option<TrainArgs>, resume: Option<&Path>, control: RunControl) -> Result<Summary> {
    let progress = control.progress;
    // Resume: the run's own arguments, its state, its progress.
    let (args, resumed) = match resume {
        Some(dir) => {
            let f = resume_path(dir);
            if !f.is_file() {
                bail!("{}: no resume.safetensors here: nothing to resume (start the run without --resume)", dir.display());
            }
            let file = TensorFile::open(&f)?;
            let mut a = TrainArgs::from_meta(&file.metadata(), file.path())?;
            a.out = dir.to_path_buf();
            (a, Some(file))
        }
        None => (args.expect("train needs arguments or --resume"), None),
    };
    args.validate()?;
    if let Some(init) = args.init.as_ref().filter(|p| !p.is_file()) {
        bail!("--init {}: no such file (give a .safetensors checkpoint, e.g. a run's best.safetensors)", init.display());
    }
    check_writable(&args.out)?;
    let prep = prepare(&args)?;
    let in_ch = prep.channels;
    let classes = prep.train.classes.clone();
    let config = ModelConfig { dropout: args.dropout, ..ModelConfig::new(args.version, in_ch, classes.len()) };
    check_space(&args.out, &config)?;
    let meta = Metadata {
        input_size: Some(prep.size),
        classes: Some(classes.clone()),
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

    let (mut start_epoch, mut best_acc, mut history) = (0usize, -1f64, Vec::new());
    let ck = match &resumed {
        Some(file) => {
            let m = file.metadata();
            start_epoch = m.get("progress.epochs_done").and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("{}: no progress.epochs_done", file.path()))?;
            best_acc = m.get("progress.best_acc").and_then(|v| v.parse().ok()).unwrap_or(-1.0);
            history = read_metrics(&args.out.join("metrics.csv")).into_iter().filter(|r| r.epoch <= start_epoch).collect();
            load_prefixed(file, "state.", config.clone(), meta.clone())?
        }
        None => match &args.init {
            Some(path) => initial_weights(path, &config)?,
            None => Checkpoint::initialized(config.clone(), args.seed),
        },
    };
    let size = (prep.size, prep.size);
    let trainer = Trainer::new(gpu, &ck, args.batch, size, opts)?;
    let ema = match args.ema {
        Some(_) => Some(match &resumed {
            Some(file) => DeviceState::new(gpu, &load_prefixed(file, "ema.", config.clone(), meta.clone())?)?,
            None => trainer.state.shadow(gpu),
        }),
        None => None,
    };
    if let Some(file) = &resumed {
        trainer.state.write_velocity(gpu, &prefixed(file, "velocity.")?)?;
    }
    let eval_state = ema.as_ref().unwrap_or(&trainer.state);
    let eval_batch = args.batch.min(prep.test.len()).max(2);
    let evaluator = Evaluator::new(gpu, eval_state, eval_batch, size, args.label_smoothing)?;
    let ema_launches = ema.as_ref().map(|e| e.ema_from(gpu, &trainer.state, args.ema.unwrap())).unwrap_or_default();

    let steps = augment::steps_per_epoch(prep.train.len(), args.batch);
    let total_steps = steps * args.epochs;
    let warmup = steps * args.warmup_epochs;
    if start_epoch >= args.epochs {
        eprintln!("{}: all {} epochs are done", args.out.display(), args.epochs);
    } else if progress {
        eprintln!(
            "training SPGNet {} on {} ({} train / {} test images, {}x{}x{}, {} classes) for {} epochs of {steps} steps, batch {}{}",
            args.version.name(),
            args.dataset.name(),
            prep.train.len(),
            prep.test.len(),
            in_ch,
            prep.size,
            prep.size,
            classes.len(),
            args.epochs,
            args.batch,
            if start_epoch > 0 { format!(", resuming after epoch {start_epoch}") } else { String::new() }
        );
    }
    let end = control.stop_after.map_or(args.epochs, |n| n.min(args.epochs));
    let is_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Fault injection for tests/errors.rs: a device lost mid-run must end in a clear error
    // with the checkpoints of the finished epochs intact (no way to lose a real one on demand).
    let lose_device_at: Option<usize> = std::env::var("SPGNET_TEST_LOSE_DEVICE_AT_STEP").ok().and_then(|v| v.parse().ok());
    for epoch in start_epoch..end {
        let t0 = Instant::now();
        let bar = if progress { indicatif::ProgressBar::new(steps as u64) } else { indicatif::ProgressBar::hidden() };
        bar.set_style(bar_style());
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, args.epochs));
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0f64, 0usize);
        let mut lr = args.lr;
        for b in augment::batches(prep.train.clone(), prep.train_pre.clone(), args.batch, args.seed, epoch, true)? {
            let step = epoch * steps + b.index;
            lr = learning_rate(args.lr, step, warmup, total_steps);
            if lose_device_at == Some(step) {
                gpu.device.destroy();
            }
            trainer.step(gpu, &b.input, &b.labels, lr, (args.seed as u32).wrapping_add(step as u32))?;
            if let Some(decay) = args.ema {
                let d = if args.ema_warmup { sgd::ema_decay(decay, step) } else { decay };
                for l in &ema_launches {
                    gpu.queue.write_buffer(&l.params, sgd::EMA_DECAY_OFFSET, bytemuck::bytes_of(&d));
                }
                gpu.submit(&ema_launches);
            }
            let (loss, right) = trainer.metrics(gpu)?;
            if !loss.is_finite() {
                bar.abandon();
                let last = args.out.join("last.safetensors");
                let kept = if last.exists() { format!("the last good checkpoint is {}", last.display()) } else { "no checkpoint was written yet".to_string() };
                bail!("the loss became {loss} at epoch {} step {}: training stopped; {kept}. Try a smaller --lr", epoch + 1, b.index + 1);
            }
            loss_sum += loss as f64 * args.batch as f64;
            correct += right as f64;
            seen += args.batch;
            let rate = seen as f64 / t0.elapsed().as_secs_f64();
            let msg = format!("loss {:.4} acc {:.2}% {:.0} img/s lr {lr:.4}", loss_sum / seen as f64, 100.0 * correct / seen as f64, rate);
            // Logs (stderr not a terminal) get a line every tenth of an epoch instead of a bar.
            if progress && !is_terminal && (b.index + 1) % (steps / 10).max(1) == 0 {
                let eta = (steps - b.index - 1) as f64 * args.batch as f64 / rate;
                eprintln!("epoch {}/{} step {}/{steps}: {msg}, epoch eta {eta:.0} s", epoch + 1, args.epochs, b.index + 1);
            }
            bar.set_message(msg);
            bar.inc(1);
        }
        let train_secs = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let (val_loss, val_acc) = evaluate(gpu, &evaluator, &prep.test, &prep.eval_pre, args.seed)?;
        let row = EpochMetrics {
            epoch: epoch + 1,
            step: (epoch + 1) * steps,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct / seen.max(1) as f64,
            val_loss,
            val_acc,
            img_per_s: seen as f64 / train_secs,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if progress {
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
        history.push(row.clone());
        // Checkpoints first, the resume file last: it is the commit point of the epoch.
        let model_ck = eval_state.to_checkpoint(gpu, meta.clone())?;
        checkpoint::save(&args.out.join("last.safetensors"), &model_ck)?;
        if ema.is_some() {
            // The weights themselves beside their average, to evaluate or ship either.
            checkpoint::save(&args.out.join("live.safetensors"), &trainer.state.to_checkpoint(gpu, meta.clone())?)?;
        }
        if val_acc > best_acc {
            best_acc = val_acc;
            checkpoint::save(&args.out.join("best.safetensors"), &model_ck)?;
        }
        write_metrics(&args.out, &history)?;
        save_resume(gpu, &args, &trainer, ema.as_ref(), epoch + 1, best_acc)?;
    }
    Ok(Summary { epochs: history, best_acc, out: args.out.clone() })
}

/// `--init`: a checkpoint of the same architecture (variant, input channels, classes).
fn initial_weights(path: &Path, config: &ModelConfig) -> Result<Checkpoint> {
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

fn prefixed(file: &TensorFile, prefix: &str) -> Result<BTreeMap<String, Vec<f32>>> {
    file.names()
        .into_iter()
        .filter_map(|n| n.strip_prefix(prefix).map(|s| (n.clone(), s.to_string())))
        .map(|(full, short)| Ok((short, file.floats(&full)?.data)))
        .collect()
}

fn load_prefixed(file: &TensorFile, prefix: &str, config: ModelConfig, meta: Metadata) -> Result<Checkpoint> {
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
fn save_resume(gpu: &Gpu, args: &TrainArgs, trainer: &Trainer, ema: Option<&DeviceState>, epochs_done: usize, best_acc: f64) -> Result<()> {
    let mut tensors = Vec::new();
    let arch = &trainer.state.arch;
    let state = trainer.state.to_checkpoint(gpu, Metadata::default())?;
    let shape = |name: &str| arch.tensors().into_iter().find(|t| t.name == name).map(|t| t.shape).unwrap();
    for (n, v) in state.tensors {
        tensors.push((format!("state.{n}"), shape(&n), v));
    }
    for (n, v) in trainer.state.read_velocity(gpu)? {
        tensors.push((format!("velocity.{n}"), shape(&n), v));
    }
    if let Some(e) = ema {
        for (n, v) in e.to_checkpoint(gpu, Metadata::default())?.tensors {
            tensors.push((format!("ema.{n}"), shape(&n), v));
        }
    }
    let mut meta = args.to_meta();
    meta.insert("progress.epochs_done".into(), epochs_done.to_string());
    meta.insert("progress.best_acc".into(), best_acc.to_string());
    checkpoint::write_atomic(&resume_path(&args.out), &checkpoint::to_bytes(&tensors, meta)?)
}

pub fn read_metrics(path: &Path) -> Vec<EpochMetrics> {
    std::fs::read_to_string(path).map(|s| s.lines().skip(1).filter_map(EpochMetrics::parse).collect()).unwrap_or_default()
}

fn write_metrics(out: &Path, rows: &[EpochMetrics]) -> Result<()> {
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    for r in rows {
        csv.push_str(&r.csv());
        csv.push('\n');
    }
    checkpoint::write_atomic(&out.join("metrics.csv"), csv.as_bytes())?;
    let series = |f: fn(&EpochMetrics) -> f64| rows.iter().map(|r| (r.epoch as f64, f(r))).collect::<Vec<_>>();
    crate::plot::line_chart(&out.join("loss.png"), "Loss", "epoch", "loss", &[("train", series(|r| r.train_loss)), ("test", series(|r| r.val_loss))])?;
    crate::plot::line_chart(
        &out.join("acc.png"),
        "Accuracy",
        "epoch",
        "accuracy (%)",
        &[("train", series(|r| 100.0 * r.train_acc)), ("test", series(|r| 100.0 * r.val_acc))],
    )?;
    Ok(())
}
