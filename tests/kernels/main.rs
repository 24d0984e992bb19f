//! Every WGSL kernel on the real adapter against the f64 CPU reference, on awkward shapes,
//! one module per op family. Error bounds (max abs error / max |reference|): 1e-5 for data
//! movement and elementwise ops, 1e-4 for reductions (convolution, matmul, batch norm, loss).

#[path = "../common/mod.rs"]
mod common;

mod batchnorm;
mod conv;
mod elementwise;
mod gemm;
mod loss_sgd;
mod pool;

use common::*;
use spgnet::gpu::Tensor;

const REDUCTION_TOL: f64 = 1e-4;
const ELEMENTWISE_TOL: f64 = 1e-5;

/// Where the adapter has subgroups the GEMMs run their *_sg variants (matmul_subgroup.wgsl);
/// adapters without run the plain kernels: every test here again in a child process with
/// SPGNET_NO_SUBGROUPS=1, so both stay proven.
#[test]
fn every_kernel_test_again_without_subgroups() {
    if std::env::var_os("SPGNET_NO_SUBGROUPS").is_some() {
        return; // the child itself
    }
    if !gpu().subgroups {
        eprintln!("this adapter runs the plain kernels (no subgroups of 8 lanes): the other tests proved them");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("SPGNET_NO_SUBGROUPS", "1")
        .args(["--skip", "every_kernel_test_again_without_subgroups"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("test result: ok"), "without subgroups:\n{text}");
}

pub(crate) fn up(data: &[f32], shape: &[usize]) -> Tensor {
    gpu().upload(data, shape, "test")
}

pub(crate) fn read(t: &Tensor) -> Vec<f32> {
    gpu().read(t).expect("readback")
}
