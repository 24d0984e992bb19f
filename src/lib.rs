//! spgnet: the SPGNet CNN trained and run with WGSL compute shaders on wgpu.
//!
//! The portable core (builds for wasm32-unknown-unknown with `--no-default-features`), each
//! layer using only those above it in this list:
//! - `gpu`: the engine: adapter, tensors, kernel specs, pipeline cache, launches, async readback
//! - `ops`: the kernels, one module per WGSL op family, each with its typed kernel table
//! - `model`: the architecture as data (tensor names, shapes, initialisation)
//! - `network`: the model on the GPU: state arenas, the recorded graph, trainer, evaluator
//! - `checkpoint`, `data`, `preprocess`: safetensors, datasets and images from bytes, batches
//! - `classify`, `fit`, `debug_step`, `bench`, `summary`: what the commands, the web page and a
//!   program using the library compute (classify images, train on data in memory, ...)
//! - `onnx`: a model as an ONNX graph for ONNX Runtime and other runtimes
//!
//! Native only (the `native` feature, on by default): files, threads, terminal and pictures:
//! `files`, `datasets`, `augment`, `infer`, `train`, `plot`.
//!
//! `reference` (the `testing` feature): the f64 CPU reference of every op, for tests.
//!
//! Classify an image with the shipped Fashion-MNIST model (`examples/classify.rs`; train on
//! data of your own with [`fit::fit`], `examples/train_custom.rs`):
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! let gpu = spgnet::gpu::Gpu::new()?;
//! let model = spgnet::infer::load_model(None)?; // or Some(path) to any spgnet safetensors file
//! let files = [std::path::PathBuf::from("assets/samples/bag.png")];
//! let prediction = &spgnet::infer::predict(&gpu, &model, &files, 1)?[0];
//! let (class, name, probability) = &prediction.top[0];
//! assert_eq!((*class, name.as_str()), (8, "Bag"));
//! assert!(*probability > 0.5);
//! # Ok(())
//! # }
//! ```
//!
//! Export a model as ONNX (no GPU needed):
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! use spgnet::onnx::{export, Batch, ExportOptions};
//! let model = spgnet::infer::load_model(None)?;
//! let bytes = export(&model, ExportOptions { batch: Batch::Dynamic, fold_bn: true })?;
//! assert!(bytes.len() > 1_000_000); // 3.3 M float32 values
//! # Ok(())
//! # }
//! ```

pub mod bench;
pub mod checkpoint;
pub mod classify;
pub mod data;
pub mod debug_step;
pub mod fit;
pub mod gpu;
pub mod model;
pub mod network;
pub mod onnx;
pub mod ops;
pub mod preprocess;
pub mod summary;

#[cfg(feature = "native")]
pub mod augment;
#[cfg(feature = "native")]
pub mod datasets;
#[cfg(feature = "native")]
pub mod files;
#[cfg(feature = "native")]
pub mod infer;
#[cfg(feature = "native")]
pub mod plot;
#[cfg(feature = "native")]
pub mod train;

#[cfg(any(test, feature = "testing"))]
pub mod reference;
