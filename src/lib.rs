//! spgnet: the SPGNet CNN trained and run with WGSL compute shaders on wgpu.
pub mod gpu;
pub mod ops;
pub mod reference;
