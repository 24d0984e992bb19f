//! What defines a run (`TrainArgs`), checked, and kept in the resume file's metadata so
//! that `--resume` continues it exactly.

use crate::data::Kind;
use crate::model::Variant;
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::path::PathBuf;

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

    pub(super) fn to_meta(&self) -> HashMap<String, String> {
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

    pub(super) fn from_meta(m: &HashMap<String, String>, file: &str) -> Result<TrainArgs> {
        let get = |k: &str| {
            m.get(&format!("train.{k}")).cloned().ok_or_else(|| anyhow!("{file}: not a resume file of spgnet train (no train.{k})"))
        };
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
