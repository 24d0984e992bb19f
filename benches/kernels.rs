//! Kernel throughput on the current adapter. Criterion's "elem/s" are floating-point
//! operations per second here (2 per multiply-add): read Gelem/s as GFLOP/s.
//! Each iteration submits `REPEAT` dispatches in one pass and waits, so the ~0.1 ms submit
//! cost is amortised the way a training step amortises it.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spgnet::gpu::{Gpu, Launch};
use spgnet::ops::batchnorm::{self, BnShape};
use spgnet::ops::conv::{self, ConvShape};
use spgnet::ops::gemm::Strides;
use spgnet::ops::gemm::{self, Tile};

const REPEAT: usize = 10;

/// Times `REPEAT` copies of a launch sequence (one conv may be a few launches: a weight
/// expansion and a GEMM); its flops are the sequence's useful work.
fn bench_launch(c: &mut Criterion, gpu: &Gpu, name: &str, seq: Vec<Launch>) {
    let flops: f64 = seq.iter().map(|l| l.flops).sum();
    bench_repeated(c, gpu, name, flops as u64, seq);
}

/// bench_launch for memory-bound kernels: throughput in the `values` each sequence touches.
fn bench_values(c: &mut Criterion, gpu: &Gpu, name: &str, values: usize, seq: Vec<Launch>) {
    bench_repeated(c, gpu, name, values as u64, seq);
}

fn bench_repeated(c: &mut Criterion, gpu: &Gpu, name: &str, elements: u64, seq: Vec<Launch>) {
    let launches: Vec<Launch> = (0..REPEAT).flat_map(|_| seq.iter().cloned()).collect();
    gpu.run(&launches).unwrap(); // JIT-compiles the pipeline outside the timing
    let mut g = c.benchmark_group("kernels");
    g.sample_size(10).measurement_time(std::time::Duration::from_secs(4));
    g.throughput(Throughput::Elements(elements * REPEAT as u64));
    g.bench_function(name, |b| b.iter(|| gpu.run(&launches).unwrap()));
    g.finish();
}

fn kernels(c: &mut Criterion) {
    let gpu = Gpu::new().expect("benchmarks need a GPU adapter");
    eprintln!("adapter: {}", gpu.describe());
    // The reference shape: 3x3 grouped conv, N=64, C=96, H=W=8, G=6.
    let s = ConvShape { n: 64, cin: 96, h: 8, w: 8, cout: 96, groups: 6, k: 3, stride: 1 };
    let x = gpu.zeros(&s.input_shape(), "x");
    let w = gpu.zeros(&s.weight_shape(), "w");
    let y = gpu.zeros(&s.output_shape(), "y");
    // Each direction as the training step runs it (with the transposes of weights or dy that
    // let the kernels read four channels per load), then the conv kernel alone.
    for (dir, seq) in [
        ("forward", conv::forward(&gpu, &s, &x, &w, &y)),
        ("backward_data", conv::backward_data(&gpu, &s, &y, &w, &x)),
        ("backward_weight", conv::backward_weight(&gpu, &s, &y, &x, &w)),
    ] {
        let kernel: Vec<Launch> = seq.iter().filter(|l| l.flops > 0.0).cloned().collect();
        bench_launch(c, &gpu, &format!("conv3x3_g6_n64_c96_8x8_{dir}"), seq);
        bench_launch(c, &gpu, &format!("conv3x3_g6_n64_c96_8x8_{dir}_kernel_only"), kernel);
    }
    // Stage 2's grouped 3x3 at 32x32 input: 2x2 maps. The tiny-map GEMMs (weight expansion or
    // fold included) beside the implicit-GEMM conv kernels they replace.
    let t = ConvShape { n: 64, cin: 96, h: 2, w: 2, cout: 96, groups: 6, k: 3, stride: 1 };
    let (tx, tw, ty) = (gpu.zeros(&t.input_shape(), "x"), gpu.zeros(&t.weight_shape(), "w"), gpu.zeros(&t.output_shape(), "y"));
    assert!(conv::tiny_map(&t));
    bench_launch(c, &gpu, "conv3x3_g6_n64_c96_2x2_forward_tiny", conv::forward(&gpu, &t, &tx, &tw, &ty));
    bench_launch(
        c,
        &gpu,
        "conv3x3_g6_n64_c96_2x2_forward_conv",
        vec![conv::forward_tiled(&gpu, &t, Tile::for_forward(t.cog(), t.n * 4), &tx, &tw, &ty)],
    );
    bench_launch(c, &gpu, "conv3x3_g6_n64_c96_2x2_backward_data_tiny", conv::backward_data(&gpu, &t, &ty, &tw, &tx));
    bench_launch(
        c,
        &gpu,
        "conv3x3_g6_n64_c96_2x2_backward_data_conv",
        vec![conv::backward_data_tiled(&gpu, &t, Tile::for_backward_data(t.cig(), t.n * 4), &ty, &tw, &tx)],
    );
    bench_launch(c, &gpu, "conv3x3_g6_n64_c96_2x2_backward_weight_tiny", conv::backward_weight(&gpu, &t, &ty, &tx, &tw));
    bench_launch(
        c,
        &gpu,
        "conv3x3_g6_n64_c96_2x2_backward_weight_conv",
        conv::backward_weight_by_tap(&gpu, &t, Tile { tm: 2, nv: 2, wg: 8 }, &ty, &tx, &tw),
    );
    let p = ConvShape { n: 64, cin: 192, h: 4, w: 4, cout: 96, groups: 1, k: 1, stride: 1 };
    let (px, pw, py) = (gpu.zeros(&p.input_shape(), "x"), gpu.zeros(&p.weight_shape(), "w"), gpu.zeros(&p.output_shape(), "y"));
    bench_launch(c, &gpu, "conv1x1_n64_c192to96_4x4_forward", conv::forward(&gpu, &p, &px, &pw, &py));
    bench_launch(c, &gpu, "conv1x1_n64_c192to96_4x4_backward_data", conv::backward_data(&gpu, &p, &py, &pw, &px));
    bench_launch(c, &gpu, "conv1x1_n64_c192to96_4x4_backward_weight", conv::backward_weight(&gpu, &p, &py, &px, &pw));
    // Training BatchNorm (forward with ReLU, backward) on SPGNet's shapes at 32x32, batch 64:
    // stage 1 (96 channels of 4x4), stage 2 (192 of 2x2), the head's BatchNorm1d (1024).
    // Throughput in activation values (elem/s), not flops.
    for (name, s) in [
        ("s1_c96_4x4", BnShape { n: 64, c: 96, hw: 16 }),
        ("s2_c192_2x2", BnShape { n: 64, c: 192, hw: 4 }),
        ("head_c1024", BnShape { n: 64, c: 1024, hw: 1 }),
        ("stem_c24_8x8", BnShape { n: 64, c: 24, hw: 64 }),
    ] {
        let p = batchnorm::params(&gpu, &s, true);
        let values = |label: &str| gpu.zeros(&[s.len()], label);
        let channels = |label: &str| gpu.zeros(&[s.c], label);
        let (x, y, dx, saved) = (values("x"), values("y"), values("dx"), gpu.zeros(&[2 * s.c], "saved"));
        let [rm, rv, gamma, beta, dgamma, dbeta] = ["rm", "rv", "gamma", "beta", "dgamma", "dbeta"].map(channels);
        let fwd = batchnorm::forward_train(&gpu, &p, &s, &x, &saved, (&rm, &rv), (&gamma, &beta), &y, None, None);
        let bwd = batchnorm::backward(&gpu, &p, &s, &y, None, &x, &saved, (&gamma, &beta), (&dgamma, &dbeta), &dx);
        bench_values(c, &gpu, &format!("bn_forward_train_{name}"), s.len(), fwd);
        bench_values(c, &gpu, &format!("bn_backward_{name}"), s.len(), bwd);
    }
    // A plain GEMM, the adapter's practical ceiling for these kernels: M=64, N=4096, K=576.
    let (m, n, k) = (64, 4096, 576);
    let (a, b, cc) = (gpu.zeros(&[m, k], "a"), gpu.zeros(&[k, n], "b"), gpu.zeros(&[m, n], "c"));
    for tile in [
        Tile { tm: 8, nv: 2, wg: 8 },
        Tile { tm: 4, nv: 2, wg: 8 },
        Tile { tm: 8, nv: 4, wg: 8 },
        Tile { tm: 16, nv: 2, wg: 8 },
        Tile { tm: 16, nv: 4, wg: 8 },
    ] {
        let l = gemm::matmul_tiled(&gpu, tile, (m, n, k), (&a, Strides::rows(k)), (&b, Strides::rows(n)), &cc);
        bench_launch(c, &gpu, &format!("gemm_64x4096x576_tile{}x{}", tile.tm, tile.cols()), vec![l]);
    }
    // The vec4 GEMMs (B, or A and B, read four values per load): the real ceiling.
    let bt = gpu.zeros(&[n, k], "b^T");
    for tile in [Tile { tm: 8, nv: 2, wg: 8 }, Tile { tm: 16, nv: 2, wg: 8 }, Tile { tm: 16, nv: 4, wg: 8 }] {
        let l = gemm::matmul_nn4(&gpu, tile, (m, n, k), (&a, Strides::rows(k)), &b, gemm::Columns::matrix(n), &cc);
        bench_launch(c, &gpu, &format!("gemm_nn4_64x4096x576_tile{}x{}", tile.tm, tile.cols()), vec![l]);
    }
    // A stored transposed ([k, m]), read as vec4s of four rows (matmul_tn4): the fewest loads
    for tile in [Tile { tm: 8, nv: 2, wg: 8 }, Tile { tm: 8, nv: 4, wg: 8 }, Tile { tm: 16, nv: 2, wg: 8 }] {
        let l = gemm::matmul_nn4(&gpu, tile, (m, n, k), (&a, Strides::transposed(m)), &b, gemm::Columns::matrix(n), &cc);
        bench_launch(c, &gpu, &format!("gemm_tn4_64x4096x576_tile{}x{}", tile.tm, tile.cols()), vec![l]);
    }
    for tile in [Tile { tm: 4, nv: 1, wg: 8 }, Tile { tm: 16, nv: 2, wg: 8 }] {
        let l = gemm::matmul_nt4(&gpu, tile, (m, n, k), &a, &bt, &cc);
        bench_launch(c, &gpu, &format!("gemm_nt4_64x4096x576_tile{}x{}", tile.tm, tile.cols()), vec![l]);
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
