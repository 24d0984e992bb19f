//! Batches made on a background thread while the GPU trains (native: the browser makes them
//! between steps with preprocess::make_batch).

use crate::data::Dataset;
use crate::preprocess::{batch_count, epoch_order, make_batch, Batch, Preprocess};
use anyhow::{bail, Result};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// Batches of one epoch made on a background thread, two ahead of the consumer.
/// Training drops the last incomplete batch and augments; evaluation pads the last one.
pub fn batches(ds: Arc<Dataset>, pre: Arc<Preprocess>, batch: usize, seed: u64, epoch: usize, train: bool) -> Result<Receiver<Batch>> {
    batches_from(ds, pre, batch, seed, epoch, train, 0)
}

/// The same from batch `first` on (a run resumed in the middle of an epoch): each batch is
/// what it would have been in the whole epoch.
pub fn batches_from(
    ds: Arc<Dataset>,
    pre: Arc<Preprocess>,
    batch: usize,
    seed: u64,
    epoch: usize,
    train: bool,
    first: usize,
) -> Result<Receiver<Batch>> {
    if batch == 0 {
        bail!("batch size must be positive");
    }
    let (tx, rx) = sync_channel(2);
    let order = epoch_order(ds.len(), seed, epoch, train);
    let count = batch_count(ds.len(), batch, train);
    std::thread::spawn(move || {
        for b in first..count {
            if tx.send(make_batch(&ds, &pre, &order, batch, (seed, epoch, b), train)).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
