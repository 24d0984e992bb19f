//! spgnet: the SPGNet CNN trained and run with WGSL compute shaders on wgpu.
//!
//! Layers: `gpu` (context, tensors, launches) -> `ops` (one module per WGSL op family)
//! -> `model` (the architecture as data) -> `network` (the model on the GPU, training step)
//! -> commands (`debug_step`, ...). `reference` is the f64 CPU reference of every op.
pub mod augment;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod debug_step;
pub mod gpu;
pub mod infer;
pub mod model;
pub mod network;
pub mod ops;
pub mod plot;
pub mod reference;
pub mod summary;
pub mod train;
