//! `spgnet bench`: training-step and inference throughput on random data (medians of
//! synchronised steps, after a warm-up step that compiles every pipeline), peak GPU buffer
//! bytes, and optionally a per-kernel profile (each dispatch submitted alone and timed, less
//! the cost of a submit and wait).

use crate::checkpoint::Checkpoint;
use crate::gpu::{Gpu, Launch};
use crate::model::{ModelConfig, Variant};
use crate::network::{Evaluator, TrainOptions, Trainer};
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use web_time::Instant;

#[derive(Clone, Debug)]
pub struct BenchArgs {
    pub version: Variant,
    pub batch: usize,
    pub size: usize,
    pub steps: usize,
    pub classes: usize,
    pub in_channels: usize,
    pub profile: bool,
}

/// Time share of one kind of kernel in a training step.
#[derive(Clone, Debug)]
pub struct KernelTime {
    pub label: String,
    pub dispatches: usize,
    pub seconds: f64,
    pub flops: f64,
}

pub struct BenchReport {
    pub adapter: String,
    pub train_img_per_s: f64,
    pub infer_img_per_s: f64,
    pub train_step_ms: f64,
    pub infer_ms: f64,
    pub peak_buffer_bytes: u64,
    /// Buffers created by the context after the first training step and after the last.
    pub buffers_after_first_step: usize,
    pub buffers_after_last_step: usize,
    /// The process's resident memory after the first training step and after the last (Linux;
    /// None elsewhere): a step that leaks shows as growth over many steps.
    pub rss_after_first_step: Option<u64>,
    pub rss_after_last_step: Option<u64>,
    pub profile: Vec<KernelTime>,
    /// The same dispatches grouped by network layer (forward and backward together).
    pub layers: Vec<KernelTime>,
    /// By layer and kernel.
    pub pairs: Vec<KernelTime>,
    /// The inference pass (eval mode, BN fused into the convs) by kernel.
    pub infer_profile: Vec<KernelTime>,
    /// What submitting an empty pass and waiting for it takes (median), taken off every
    /// profiled dispatch's time.
    pub submit_seconds: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The median wall time of submitting an empty compute pass and waiting for it: the part of a
/// profiled dispatch's time that is not the kernel's (about 0.1-0.2 ms on lavapipe, as much as
/// a small elementwise kernel takes).
pub async fn submit_seconds(gpu: &Gpu) -> Result<f64> {
    let mut times = Vec::with_capacity(21);
    for _ in 0..21 {
        let t = Instant::now();
        gpu.submit(&[]);
        gpu.finish().await?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Each launch alone, timed with a wait (lavapipe's timestamps are no finer than this) less
/// `submit` (see `submit_seconds`, floored at zero): the per-dispatch time, grouped by kernel
/// and by network layer, most expensive first. The third table is each (layer, kernel) pair:
/// where a faster kernel would pay most. What remains of the dispatch cost inside a pass of
/// many (tens of microseconds on lavapipe) is counted to the kernel, as a real pass pays it.
pub async fn profile<'a>(gpu: &Gpu, launches: impl Iterator<Item = &'a Launch>, submit: f64) -> Result<[Vec<KernelTime>; 3]> {
    let mut by_kernel: BTreeMap<String, KernelTime> = BTreeMap::new();
    let mut by_layer: BTreeMap<String, KernelTime> = BTreeMap::new();
    let mut by_pair: BTreeMap<String, KernelTime> = BTreeMap::new();
    for l in launches {
        let t = Instant::now();
        gpu.submit(std::slice::from_ref(l));
        gpu.finish().await?;
        let seconds = (t.elapsed().as_secs_f64() - submit).max(0.0);
        let layer = if l.layer.is_empty() { "loss and SGD".to_string() } else { l.layer.clone() };
        let pair = format!("{layer} {}", l.label);
        for (map, key) in [(&mut by_kernel, l.label.clone()), (&mut by_layer, layer), (&mut by_pair, pair)] {
            let e = map.entry(key.clone()).or_insert(KernelTime { label: key, dispatches: 0, seconds: 0.0, flops: 0.0 });
            e.dispatches += 1;
            e.seconds += seconds;
            e.flops += l.flops;
        }
    }
    let sorted = |m: BTreeMap<String, KernelTime>| {
        let mut v: Vec<KernelTime> = m.into_values().collect();
        v.sort_by(|a, b| b.seconds.partial_cmp(&a.seconds).unwrap());
        v
    };
    Ok([sorted(by_kernel), sorted(by_layer), sorted(by_pair)])
}

pub async fn run(gpu: &Gpu, a: &BenchArgs) -> Result<BenchReport> {
    if a.steps == 0 || a.batch < 2 {
        bail!("bench needs --steps >= 1 and --batch >= 2");
    }
    let ck = Checkpoint::initialized(ModelConfig::new(a.version, a.in_channels, a.classes), 0);
    let trainer = Trainer::new(gpu, &ck, a.batch, (a.size, a.size), TrainOptions::default())?;
    let evaluator = Evaluator::new(gpu, &trainer.state, a.batch, (a.size, a.size), 0.1)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let input: Vec<f32> = (0..trainer.graph.input.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
    let labels: Vec<u32> = (0..a.batch).map(|_| rng.random_range(0..a.classes as u32)).collect();
    // step 0 of each is a warm-up that compiles every pipeline
    let mut train = Vec::with_capacity(a.steps);
    let (mut buffers_after_first_step, mut rss_after_first_step) = (0, None);
    for i in 0..=a.steps {
        let t = Instant::now();
        trainer.step(gpu, &input, &labels, 0.01, i as u32)?;
        trainer.metrics(gpu).await?;
        match i {
            0 => (buffers_after_first_step, rss_after_first_step) = (gpu.buffers_created(), resident_bytes()),
            _ => train.push(t.elapsed().as_secs_f64()),
        }
    }
    let (buffers_after_last_step, rss_after_last_step) = (gpu.buffers_created(), resident_bytes());
    let mut inf = Vec::with_capacity(a.steps);
    for i in 0..=a.steps {
        let t = Instant::now();
        evaluator.logits(gpu, &input).await?;
        if i > 0 {
            inf.push(t.elapsed().as_secs_f64());
        }
    }
    // Every buffer made so far (parameters and their arenas, both graphs' activations, the ops'
    // scratch such as split-K partial sums and transposed weights, staging); none is freed.
    let peak = gpu.bytes_created();
    let submit = if a.profile { submit_seconds(gpu).await? } else { 0.0 };
    let [profile, layers, pairs] = if a.profile { profile(gpu, trainer.launches(), submit).await? } else { Default::default() };
    let infer_profile = if a.profile { self::profile(gpu, evaluator.graph.forward.iter(), submit).await?[0].clone() } else { Vec::new() };
    let t = median(train);
    Ok(BenchReport {
        adapter: gpu.describe(),
        train_img_per_s: a.batch as f64 / t,
        infer_img_per_s: a.batch as f64 / median(inf.clone()),
        train_step_ms: 1000.0 * t,
        infer_ms: 1000.0 * median(inf),
        peak_buffer_bytes: peak,
        buffers_after_first_step,
        buffers_after_last_step,
        rss_after_first_step,
        rss_after_last_step,
        profile,
        layers,
        pairs,
        infer_profile,
        submit_seconds: submit,
    })
}

/// The process's resident set size in bytes (Linux: /proc/self/statm).
fn resident_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }
    #[cfg(not(target_os = "linux"))]
    None
}
