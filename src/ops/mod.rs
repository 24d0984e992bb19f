//! One module per WGSL op family: each builds the launches of its kernels
//! (forward, backward_data, backward_weight side by side) from tensor views.

pub mod batchnorm;
pub mod conv;
pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod pool;
pub mod sgd;

use crate::gpu::KernelSpec;

/// Every WGSL file with the constants its kernels need, for validation and listings.
pub fn all_kernels() -> Vec<KernelSpec> {
    let mut v = Vec::new();
    v.extend(conv::kernels());
    v.extend(batchnorm::kernels());
    v.extend(elementwise::kernels());
    v.extend(pool::kernels());
    v.extend(linear::kernels());
    v.extend(loss::kernels());
    v.extend(sgd::kernels());
    v
}

/// The most storage buffers one kernel binds (BatchNorm's backward: 9). Vulkan, Metal and DX12
/// adapters offer 31 or more per shader stage; Gpu::new refuses an adapter with fewer.
pub fn max_storage_bindings() -> u32 {
    let storage = |k: &KernelSpec| k.bindings.iter().filter(|a| !matches!(a, crate::gpu::Access::Uniform)).count() as u32;
    all_kernels().iter().map(storage).max().unwrap_or(0)
}
