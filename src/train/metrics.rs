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

/// One row of steps.csv: the training loss and accuracy over the steps since the previous row
/// (every STEP_EVERY steps), the notebook's learning curve.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMetrics {
    pub step: usize,
    pub epoch: f64,
    pub lr: f32,
    pub loss: f64,
    pub acc: f64,
}

/// Steps between two rows of steps.csv.
pub const STEP_EVERY: usize = 10;

const STEPS_HEADER: &str = "step,epoch,lr,train_loss,train_acc";

impl StepMetrics {
    fn csv(&self) -> String {
        format!("{},{:.4},{:.6},{:.5},{:.5}", self.step, self.epoch, self.lr, self.loss, self.acc)
    }
    fn parse(line: &str) -> Option<StepMetrics> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            return None;
        }
        Some(StepMetrics {
            step: f[0].parse().ok()?,
            epoch: f[1].parse().ok()?,
            lr: f[2].parse().ok()?,
            loss: f[3].parse().ok()?,
            acc: f[4].parse().ok()?,
        })
    }
}

pub fn read_steps(path: &Path) -> Vec<StepMetrics> {
    std::fs::read_to_string(path).map(|s| s.lines().skip(1).filter_map(StepMetrics::parse).collect()).unwrap_or_default()
}

/// metrics.csv (per epoch), steps.csv (every STEP_EVERY steps) and the curves drawn from both:
/// the training loss and accuracy every STEP_EVERY steps against the step, the test loss and
/// accuracy after each epoch overlaid.
pub(super) fn write_metrics(out: &Path, rows: &[EpochMetrics], steps: &[StepMetrics]) -> Result<()> {
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    for r in rows {
        csv.push_str(&r.csv());
        csv.push('\n');
    }
    crate::files::write_atomic(&out.join("metrics.csv"), csv.as_bytes())?;
    write_steps(out, steps)?;
    let per_step = |f: fn(&StepMetrics) -> f64| steps.iter().map(|r| (r.step as f64, f(r))).collect::<Vec<_>>();
    let per_epoch = |f: fn(&EpochMetrics) -> f64| rows.iter().map(|r| (r.step as f64, f(r))).collect::<Vec<_>>();
    crate::plot::line_chart(
        &out.join("loss.png"),
        "Loss",
        "step",
        "loss",
        &[(&format!("train (every {STEP_EVERY} steps)"), per_step(|r| r.loss)), ("test (each epoch)", per_epoch(|r| r.val_loss))],
    )?;
    crate::plot::line_chart(
        &out.join("acc.png"),
        "Accuracy",
        "step",
        "accuracy (%)",
        &[
            (&format!("train (every {STEP_EVERY} steps)"), per_step(|r| 100.0 * r.acc)),
            ("test (each epoch)", per_epoch(|r| 100.0 * r.val_acc)),
        ],
    )?;
    Ok(())
}

/// steps.csv alone (an interrupted epoch's resume point).
pub(super) fn write_steps(out: &Path, steps: &[StepMetrics]) -> Result<()> {
    let mut csv = String::from(STEPS_HEADER);
    csv.push('\n');
    for r in steps {
        csv.push_str(&r.csv());
        csv.push('\n');
    }
    crate::files::write_atomic(&out.join("steps.csv"), csv.as_bytes())
}
