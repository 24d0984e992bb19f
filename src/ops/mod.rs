//! The kernels, one module per WGSL op family. Each declares its entry points as a typed table
//! (`kernel_table!`), its uniform as a `#[repr(C)]` struct, and builds launches from tensor
//! views. Layers only point down: batchnorm and the flat ops use the engine alone; gemm the
//! BN epilogue's types; dense the GEMMs; conv the GEMMs and dense; linear conv.

pub mod batchnorm;
pub mod conv;
pub mod dense;
pub mod elementwise;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod pool;
pub mod sgd;

use crate::gpu::{Entry, KernelSpec};

/// Every kernel of every WGSL source, with the constants it is compiled with (one tile of
/// each tiled kernel, both vector widths where the host picks one), for validation and listings.
pub fn all_kernels() -> Vec<KernelSpec> {
    let tile = gemm::Tile { tm: 4, nv: 1, wg: 8 };
    let mut v: Vec<KernelSpec> = Vec::new();
    v.extend(conv::ForwardKernel::ALL.iter().map(|&k| tile.spec(k)));
    v.extend(conv::BackwardDataKernel::ALL.iter().map(|&k| tile.spec(k)));
    v.extend(conv::BackwardWeightKernel::ALL.iter().map(|&k| tile.spec(k)));
    v.extend(conv::TinyKernel::ALL.iter().map(|&k| tile.spec(k)));
    v.extend(gemm::Matmul::ALL.iter().map(|&k| tile.spec(k)));
    v.extend(gemm::MatmulSubgroup::ALL.iter().map(|&k| gemm::SUBGROUP_TILE.spec(k)));
    for (vw, plane_v) in [(1, 0), (4, 0), (4, 4)] {
        v.extend(batchnorm::Kernel::ALL.iter().map(|&k| batchnorm::spec(k, vw, plane_v)));
    }
    v.extend(elementwise::Kernel::ALL.iter().map(|&k| elementwise::spec(k, 1)));
    v.extend(elementwise::VECTORISED.iter().map(|&k| elementwise::spec(k, 4)));
    v.extend(pool::Kernel::ALL.iter().map(|&k| KernelSpec::of(k)));
    v.extend(loss::Kernel::ALL.iter().map(|&k| KernelSpec::of(k)));
    v.extend(sgd::Kernel::ALL.iter().map(|&k| KernelSpec::of(k)));
    v
}

/// The most storage buffers one kernel binds (gpu::STORAGE_BUFFERS_NEEDED must be as many).
pub fn max_storage_bindings() -> u32 {
    all_kernels().iter().map(KernelSpec::storage_bindings).max().unwrap_or(0)
}
