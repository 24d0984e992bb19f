//! One epoch of a run: its training steps (with the EMA update, a progress bar or log lines,
//! and a stop on a non-finite loss), then the evaluation on the test split.

use super::faults::Faults;
use super::metrics::{StepMetrics, STEP_EVERY};
use super::resume::Partial;
use super::setup::Prepared;
use super::{EpochMetrics, TrainArgs};
use crate::augment;
use crate::data::Dataset;
use crate::gpu::{Gpu, Launch};
use crate::network::learning_rate;
use crate::network::{Evaluator, Trainer};
use crate::ops::sgd;
use crate::preprocess::{batch_count, Preprocess};
use anyhow::{bail, Result};
use pollster::block_on;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use web_time::Instant;

/// What the steps of a run share: the trainer, the EMA's launches, the evaluator.
pub(super) struct Session<'a> {
    pub gpu: &'a Gpu,
    pub args: &'a TrainArgs,
    pub prep: &'a Prepared,
    pub trainer: &'a Trainer,
    pub ema_launches: &'a [Launch],
    pub evaluator: &'a Evaluator,
    pub faults: Faults,
    pub progress: bool,
    /// Set by Ctrl-C or SIGTERM: the epoch stops after the step under way.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// steps.csv's rows so far.
    pub steps: std::cell::RefCell<Vec<StepMetrics>>,
}

/// How an epoch ended: complete (its row of metrics.csv), or interrupted with what it had done.
pub(super) enum EpochEnd {
    Complete(EpochMetrics),
    Interrupted(Partial),
}

impl Session<'_> {
    pub fn steps_per_epoch(&self) -> usize {
        batch_count(self.prep.train.len(), self.args.batch, true)
    }

    /// Train epoch `epoch` (0-based) from where `done` left it, and evaluate: its row of
    /// metrics.csv; or, when interrupted, how far it got.
    pub fn run_epoch(&self, epoch: usize, done: Partial) -> Result<EpochEnd> {
        let (args, gpu) = (self.args, self.gpu);
        let steps = self.steps_per_epoch();
        let (total_steps, warmup) = (steps * args.epochs, steps * args.warmup_epochs);
        let t0 = Instant::now();
        let bar = if self.progress { indicatif::ProgressBar::new(steps as u64) } else { indicatif::ProgressBar::hidden() };
        bar.set_position(done.batches as u64);
        bar.set_style(bar_style());
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, args.epochs));
        // Logs (stderr not a terminal) get a line every tenth of an epoch instead of a bar.
        let log_lines = self.progress && !std::io::IsTerminal::is_terminal(&std::io::stderr());
        let (mut loss_sum, mut correct, mut seen) = (done.loss_sum, done.correct, done.seen);
        let elapsed = |t0: Instant| done.seconds + t0.elapsed().as_secs_f64();
        let mut lr = args.lr;
        // the steps since the last row of steps.csv: summed loss, accuracy, count
        let mut window = (0f64, 0f64, 0usize);
        let batches =
            augment::batches_from(self.prep.train.clone(), self.prep.train_pre.clone(), args.batch, args.seed, epoch, true, done.batches)?;
        for b in batches {
            let step = epoch * steps + b.index;
            lr = learning_rate(args.lr, step, warmup, total_steps);
            self.faults.before_step(gpu, step);
            self.trainer.step(gpu, &b.input, &b.labels, lr, (args.seed as u32).wrapping_add(step as u32))?;
            if let Some(decay) = args.ema {
                sgd::set_ema_decay(gpu, self.ema_launches, if args.ema_warmup { sgd::ema_decay(decay, step) } else { decay });
                gpu.submit(self.ema_launches);
            }
            let (loss, right) = block_on(self.trainer.metrics(gpu))?;
            if !loss.is_finite() {
                bar.abandon();
                let last = args.out.join("last.safetensors");
                let kept = if last.exists() {
                    format!("the last good checkpoint is {}", last.display())
                } else {
                    "no checkpoint was written yet".to_string()
                };
                bail!("the loss became {loss} at epoch {} step {}: training stopped; {kept}. Try a smaller --lr", epoch + 1, b.index + 1);
            }
            loss_sum += loss as f64 * args.batch as f64;
            correct += right as f64;
            seen += args.batch;
            window = (window.0 + loss as f64, window.1 + right as f64 / args.batch as f64, window.2 + 1);
            if (step + 1).is_multiple_of(STEP_EVERY) {
                let (l, a, n) = window;
                self.steps.borrow_mut().push(StepMetrics {
                    step: step + 1,
                    epoch: (step + 1) as f64 / steps as f64,
                    lr,
                    loss: l / n as f64,
                    acc: a / n as f64,
                });
                window = (0.0, 0.0, 0);
            }
            let rate = seen as f64 / elapsed(t0);
            let msg = format!("loss {:.4} acc {:.2}% {:.0} img/s lr {lr:.4}", loss_sum / seen as f64, 100.0 * correct / seen as f64, rate);
            if log_lines && (b.index + 1) % (steps / 10).max(1) == 0 {
                let eta = (steps - b.index - 1) as f64 * args.batch as f64 / rate;
                eprintln!("epoch {}/{} step {}/{steps}: {msg}, epoch eta {eta:.0} s", epoch + 1, args.epochs, b.index + 1);
            }
            bar.set_message(msg);
            bar.inc(1);
            if self.interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) && b.index + 1 < steps {
                bar.abandon();
                return Ok(EpochEnd::Interrupted(Partial { batches: b.index + 1, loss_sum, correct, seen, seconds: elapsed(t0) }));
            }
        }
        let train_secs = elapsed(t0);
        bar.finish_and_clear();
        let (val_loss, val_acc) = evaluate(gpu, self.evaluator, &self.prep.test, &self.prep.eval_pre)?;
        Ok(EpochEnd::Complete(EpochMetrics {
            epoch: epoch + 1,
            step: (epoch + 1) * steps,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct / seen.max(1) as f64,
            val_loss,
            val_acc,
            img_per_s: seen as f64 / train_secs,
            seconds: elapsed(t0),
        }))
    }
}

/// Evaluate the evaluator's state on a dataset: (mean loss, accuracy).
pub fn evaluate(gpu: &Gpu, eval: &Evaluator, ds: &Dataset, pre: &Preprocess) -> Result<(f64, f64)> {
    eval.weights_changed(); // training or the EMA wrote them since the last evaluation
    block_on(crate::fit::evaluate(gpu, eval, ds, pre))
}

fn bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}").unwrap().progress_chars("=> ")
}
