//! Register-tile sweep over SPGNet s2p6's conv shapes (batch 64, 32x32): for each direction
//! and shape, the time of every tile, to choose `Tile::for_gemm`'s rule. Prints a table.
//! `cargo bench --bench tiles -- 1024` sweeps only the shapes whose name contains "1024".

use spgnet::gpu::{Gpu, Launch};
use spgnet::ops::conv::{self, ConvShape};
use spgnet::ops::gemm::{self, Tile};
use std::time::Instant;

fn time(gpu: &Gpu, l: &[Launch]) -> f64 {
    gpu.run(l).unwrap();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        gpu.run(l).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let gpu = Gpu::new().expect("needs an adapter");
    let n = 64;
    let shapes = [
        // the reference shape for the grouped 3x3 kernels
        ConvShape { n, cin: 96, h: 8, w: 8, cout: 96, groups: 6, k: 3, stride: 1 },
        ConvShape { n, cin: 24, h: 8, w: 8, cout: 48, groups: 1, k: 1, stride: 1 },
        ConvShape { n, cin: 48, h: 8, w: 8, cout: 48, groups: 6, k: 3, stride: 2 },
        ConvShape { n, cin: 48, h: 4, w: 4, cout: 48, groups: 6, k: 3, stride: 1 },
        ConvShape { n, cin: 96, h: 4, w: 4, cout: 96, groups: 1, k: 1, stride: 1 },
        ConvShape { n, cin: 96, h: 2, w: 2, cout: 96, groups: 6, k: 3, stride: 1 },
        ConvShape { n, cin: 192, h: 2, w: 2, cout: 192, groups: 1, k: 1, stride: 1 },
        ConvShape { n, cin: 192, h: 1, w: 1, cout: 192, groups: 6, k: 3, stride: 1 },
        ConvShape { n, cin: 384, h: 1, w: 1, cout: 1024, groups: 1, k: 1, stride: 1 },
        // the head's fc layer (a 1x1 conv on 1x1 maps)
        ConvShape { n, cin: 1024, h: 1, w: 1, cout: 1024, groups: 1, k: 1, stride: 1 },
        ConvShape { n, cin: 3, h: 32, w: 32, cout: 12, groups: 1, k: 3, stride: 2 },
        ConvShape { n, cin: 12, h: 16, w: 16, cout: 24, groups: 1, k: 3, stride: 2 },
    ];
    let tiles = [(4, 1), (8, 1), (8, 2), (16, 1), (16, 2), (4, 2), (32, 1)].map(|(tm, nv)| Tile { tm, nv, wg: 8 });
    println!(
        "{:<44} {:<6} {}",
        "shape",
        "dir",
        tiles.iter().map(|t| format!("{:>9}", format!("{}x{}", t.tm, t.cols()))).collect::<String>()
    );
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let name = |s: &ConvShape| format!("{}->{} g{} k{} s{} {}x{}", s.cin, s.cout, s.groups, s.k, s.stride, s.h, s.w);
    for s in shapes.into_iter().filter(|s| filter.as_ref().is_none_or(|f| name(s).contains(f.as_str()))) {
        let (x, w, y) = (gpu.zeros(&s.input_shape(), "x"), gpu.zeros(&s.weight_shape(), "w"), gpu.zeros(&s.output_shape(), "y"));
        let dense = s.k == 1 && s.h == 1 && s.w == 1 && s.groups == 1 && s.cin % 4 == 0;
        let pointwise = s.k == 1 && s.groups == 1 && s.h * s.w % 4 == 0;
        let dirs: &[&str] = match (dense, pointwise) {
            (true, _) => &["fwd", "fwd_p", "bwd_d", "bwd_w", "bwd_wt", "dn_f", "dn_ft", "dn_d", "dn_w"],
            (_, true) => &["fwd", "fwd_p", "bwd_d", "bwd_w", "bwd_wt", "pw_f", "pw_d"],
            _ if s.k == 3 => &["fwd", "fwd_wt", "fwd_p", "bwd_d", "bwd_d_wt", "bwd_w", "bwd_w_dyt", "bwd_w_nhwc", "bwd_wt", "bwd_w9"],
            _ => &["fwd", "fwd_p", "bwd_d", "bwd_w", "bwd_wt"],
        };
        let d = (s.n, s.cin, s.cout);
        for &dir in dirs {
            let row: String = tiles
                .iter()
                .map(|&t| {
                    let l = match dir {
                        "fwd" => vec![conv::forward_tiled(&gpu, &s, t, &x, &w, &y)],
                        // the weights transposed, four output channels per load (rows in fours only)
                        "fwd_wt" if t.tm % 4 == 0 && s.cog() % 4 == 0 => conv::forward_wt(&gpu, &s, t, &x, &w, &y),
                        "bwd_d_wt" if t.tm % 4 == 0 && s.cig() % 4 == 0 => conv::backward_data_wt(&gpu, &s, t, &y, &w, &x),
                        "bwd_w_dyt" if t.tm % 4 == 0 && s.cog() % 4 == 0 => conv::backward_weight_dyt(&gpu, &s, t, &y, &x, &w),
                        "bwd_w_nhwc" if t.tm % 4 == 0 && s.cog() % 4 == 0 && s.cig() % 4 == 0 => {
                            conv::backward_weight_nhwc(&gpu, &s, t, &y, &x, &w)
                        }
                        "fwd_wt" | "bwd_d_wt" | "bwd_w_dyt" | "bwd_w_nhwc" => vec![],
                        // fwd_p: half the tile's rows per lane, 8 lanes
                        "fwd_p" => vec![conv::forward_by_pixel(&gpu, &s, Tile { tm: t.tm / 2, ..t }, &x, &w, &y)],
                        "bwd_d" => vec![conv::backward_data_tiled(&gpu, &s, t, &y, &w, &x)],
                        "bwd_w" => conv::backward_weight_tiled(&gpu, &s, t, &y, &x, &w),
                        // 1x1 convs as vec4 GEMMs over each image's pixels
                        "pw_f" => conv::forward_pointwise(&gpu, &s, t, &x, &w, &y),
                        "pw_d" => vec![conv::backward_data_pointwise(&gpu, &s, t, &y, &w, &x)],
                        // dense (1x1 on 1x1 maps) as the vec4 GEMMs of ops::linear
                        "dn_f" => vec![gemm::matmul_nt4(&gpu, t, (d.0, d.2, d.1), &x, &w, &y)],
                        // the forward against a transposed weight: the transpose, then matmul_nn4
                        "dn_ft" => {
                            let wt = gpu.zeros(&[d.1, d.2], "wt");
                            let f = gemm::matmul_nn4(
                                &gpu,
                                t,
                                (d.0, d.2, d.1),
                                (&x, gemm::Strides::rows(d.1)),
                                &wt,
                                gemm::Columns::matrix(d.2),
                                &y,
                            );
                            vec![gemm::transpose(&gpu, (d.2, d.1), &w, &wt), f]
                        }
                        "dn_d" => vec![gemm::matmul_nn4(
                            &gpu,
                            t,
                            (d.0, d.1, d.2),
                            (&y, gemm::Strides::rows(d.2)),
                            &w,
                            gemm::Columns::matrix(d.1),
                            &x,
                        )],
                        "dn_w" => vec![gemm::matmul_nn4(
                            &gpu,
                            t,
                            (d.2, d.1, d.0),
                            (&y, gemm::Strides::transposed(d.2)),
                            &x,
                            gemm::Columns::matrix(d.1),
                            &w,
                        )],
                        // all nine taps per lane, tm rows per lane: the sweep's 4..32-row tiles mean 1..4 here
                        "bwd_w9" => conv::backward_weight_3x3(&gpu, &s, Tile { tm: (t.tm / 8).max(1), ..t }, &y, &x, &w),
                        // tm rows per lane: the sweep's 4..32-row tiles mean 1..4 here
                        _ => conv::backward_weight_by_tap(&gpu, &s, Tile { tm: (t.tm / 8).max(1), ..t }, &y, &x, &w),
                    };
                    if l.is_empty() {
                        format!("{:>9}", "-")
                    } else {
                        format!("{:>8.2}m", 1000.0 * time(&gpu, &l))
                    }
                })
                .collect();
            println!("{:<44} {:<6} {row}", name(&s), dir);
        }
    }
}
