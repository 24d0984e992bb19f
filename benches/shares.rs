//! The kernel criterion, measured so that it survives this machine's drifting speed:
//! each conv kernel's GFLOP/s as a share of the best GEMM, with the GEMM timed right beside it
//! in every round (best of 3 runs of 10 back-to-back copies each), then the median over the
//! rounds. `cargo bench --bench shares [ROUNDS]`.

use spgnet::gpu::{Gpu, Launch};
use spgnet::ops::conv::{self, ConvShape};
use spgnet::ops::gemm::Strides;
use spgnet::ops::gemm::{self, Tile};
use std::time::Instant;

const REPEAT: usize = 10;

/// GFLOP/s of a launch sequence (its flops are the useful work; transposes count as time).
fn gflops(gpu: &Gpu, seq: &[Launch]) -> f64 {
    let flops: f64 = seq.iter().map(|l| l.flops).sum::<f64>() * REPEAT as f64;
    let launches: Vec<Launch> = (0..REPEAT).flat_map(|_| seq.iter().cloned()).collect();
    gpu.run(&launches).unwrap();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        gpu.run(&launches).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    flops / best / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    let gpu = Gpu::new().expect("needs an adapter");
    eprintln!("adapter: {}", gpu.describe());
    // The best GEMM of benches/kernels.rs, matmul_tn4 64x4096x576 (A from storage), and the
    // same with k = 256, where A (16384 values) fits a uniform binding and is read from there
    // as the convs read their weights; with subgroups also A row-major (matmul_nn4_sg) and
    // C = A B^T (matmul_nt4_sg). The fastest of them all is the reference.
    let (m, n) = (64, 4096);
    let mut gemms: Vec<Vec<Launch>> = vec![];
    for k in [576, 256] {
        let (a, b, c) = (gpu.zeros_with_uniform_room(k * m, 0, "a"), gpu.zeros(&[k, n], "b"), gpu.zeros(&[m, n], "c"));
        // the tiles of the plain kernels and the subgroup kernels' tall ones (16 x 4, and
        // matmul_tn4_sg's 32 x 4 for rows in 32s)
        let tall = [gemm::SG_TALL_TILE, Tile { tm: 32, nv: 1, wg: 8 }];
        for t in [Tile { tm: 8, nv: 2, wg: 8 }, Tile { tm: 8, nv: 4, wg: 8 }, Tile { tm: 16, nv: 2, wg: 8 }].into_iter().chain(tall) {
            gemms.push(vec![gemm::matmul_nn4(&gpu, t, (m, n, k), (&a, Strides::transposed(m)), &b, gemm::Columns::matrix(n), &c)]);
            gemms.push(vec![gemm::matmul_nn4(&gpu, t, (m, n, k), (&a, Strides::rows(k)), &b, gemm::Columns::matrix(n), &c)]);
            gemms.push(vec![gemm::matmul_nt4(&gpu, t, (m, n, k), &a, &b, &c)]);
        }
    }
    // The reference 3x3 shape and the 1x1 conv of benches/kernels.rs.
    let s = ConvShape { n: 64, cin: 96, h: 8, w: 8, cout: 96, groups: 6, k: 3, stride: 1 };
    let (x, w, y) = (gpu.zeros(&s.input_shape(), "x"), gpu.zeros(&s.weight_shape(), "w"), gpu.zeros(&s.output_shape(), "y"));
    let p = ConvShape { n: 64, cin: 192, h: 4, w: 4, cout: 96, groups: 1, k: 1, stride: 1 };
    let (px, pw, py) = (gpu.zeros(&p.input_shape(), "x"), gpu.zeros(&p.weight_shape(), "w"), gpu.zeros(&p.output_shape(), "y"));
    let kernels: Vec<(&str, Vec<Launch>)> = vec![
        ("3x3 g6 8x8 forward", conv::forward(&gpu, &s, &x, &w, &y)),
        ("3x3 g6 8x8 input gradient", conv::backward_data(&gpu, &s, &y, &w, &x)),
        ("3x3 g6 8x8 weight gradient", conv::backward_weight(&gpu, &s, &y, &x, &w)),
        ("1x1 192->96 4x4 forward", conv::forward(&gpu, &p, &px, &pw, &py)),
        ("1x1 192->96 4x4 input gradient", conv::backward_data(&gpu, &p, &py, &pw, &px)),
        ("1x1 192->96 4x4 weight gradient", conv::backward_weight(&gpu, &p, &py, &px, &pw)),
    ];
    let mut best_gemm = vec![];
    let mut results: Vec<Vec<(f64, f64)>> = vec![vec![]; kernels.len()];
    for round in 0..rounds {
        for (i, (_, seq)) in kernels.iter().enumerate() {
            let g = gemms.iter().map(|l| gflops(&gpu, l)).fold(0.0, f64::max);
            let kf = gflops(&gpu, seq);
            best_gemm.push(g);
            results[i].push((kf, kf / g));
        }
        eprintln!("round {} of {rounds}", round + 1);
    }
    println!("best GEMM (64x4096 by k = 576 or 256: matmul_tn4, matmul_nn4, matmul_nt4, tiles 8 x 8, 8 x 16, 16 x 8, 16 x 4, 32 x 4; subgroups {}): median {:.2} GFLOP/s over {} runs", if gpu.subgroups { "on" } else { "off" }, median(best_gemm), rounds * kernels.len());
    println!("{:<34} {:>9} {:>22}", "kernel (with its transposes)", "GFLOP/s", "share of the GEMM beside it");
    for ((name, _), r) in kernels.iter().zip(&results) {
        let (g, share) = (median(r.iter().map(|x| x.0).collect()), median(r.iter().map(|x| x.1).collect()));
        println!("{name:<34} {g:>9.2} {:>21.0}%", 100.0 * share);
    }
}
