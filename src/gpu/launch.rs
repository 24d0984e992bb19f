//! Launches: dispatches built once (pipeline, bind group, grid) and replayed every step.

use std::sync::Arc;

/// A recorded dispatch: pipeline, its bind group and grid. Built once, replayed every step
/// (benchmarks clone one to record it many times; the GPU objects are shared, not copied).
#[derive(Clone)]
pub struct Launch {
    pub label: String,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    /// The kernel's uniform parameters; steps may rewrite fields (learning rate, dropout seed).
    pub params: Arc<wgpu::Buffer>,
    /// Floating-point operations of one dispatch (for per-layer GFLOP/s reports).
    pub flops: f64,
    /// The network layer it belongs to ("" outside a network), for per-layer profiles.
    pub layer: String,
    /// It only re-lays out weights (a transposed copy): an eval graph runs it once per
    /// change of the weights instead of in every pass (network.rs, Evaluator).
    pub weight_layout: bool,
}

/// Record launches into one compute pass, skipping the empty ones (see Gpu::launch).
pub fn record(pass: &mut wgpu::ComputePass<'_>, launches: &[Launch]) {
    for l in launches {
        if l.workgroups.contains(&0) {
            continue;
        }
        pass.set_pipeline(&l.pipeline);
        pass.set_bind_group(0, &l.bind_group, &[]);
        pass.dispatch_workgroups(l.workgroups[0], l.workgroups[1], l.workgroups[2]);
    }
}

/// Split `n` invocations of `wg`-wide workgroups into a grid within the per-dimension limit.
/// Kernels recover the flat index as `gid.x + gid.y * num_workgroups.x * wg`.
pub fn grid_1d(n: usize, wg: u32) -> [u32; 3] {
    let groups = (n as u64).div_ceil(wg as u64).max(1);
    let x = groups.min(65535);
    let y = groups.div_ceil(x);
    [x as u32, y as u32, 1]
}
