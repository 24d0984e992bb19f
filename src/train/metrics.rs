//! The per-epoch record of a run: metrics.csv and the learning-curve pictures.

use anyhow::Result;
use std::path::Path;

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

pub(super) const CSV_HEADER: &str = "epoch,step,lr,train_loss,train_acc,val_loss,val_acc,img_per_s,seconds";

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

pub fn read_metrics(path: &Path) -> Vec<EpochMetrics> {
    std::fs::read_to_string(path).map(|s| s.lines().skip(1).filter_map(EpochMetrics::parse).collect()).unwrap_or_default()
}

pub(super) fn write_metrics(out: &Path, rows: &[EpochMetrics]) -> Result<()> {
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    for r in rows {
        csv.push_str(&r.csv());
        csv.push('\n');
    }
    crate::files::write_atomic(&out.join("metrics.csv"), csv.as_bytes())?;
    let series = |f: fn(&EpochMetrics) -> f64| rows.iter().map(|r| (r.epoch as f64, f(r))).collect::<Vec<_>>();
    crate::plot::line_chart(
        &out.join("loss.png"),
        "Loss",
        "epoch",
        "loss",
        &[("train", series(|r| r.train_loss)), ("test", series(|r| r.val_loss))],
    )?;
    crate::plot::line_chart(
        &out.join("acc.png"),
        "Accuracy",
        "epoch",
        "accuracy (%)",
        &[("train", series(|r| 100.0 * r.train_acc)), ("test", series(|r| 100.0 * r.val_acc))],
    )?;
    Ok(())
}
