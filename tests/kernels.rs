//! Every WGSL kernel on the real adapter against the f64 CPU reference, on awkward shapes.
//! Error bounds (max abs error / max |reference|): 1e-5 for data movement and elementwise
//! ops, 1e-4 for reductions (convolution, matmul, batch norm, loss).

mod common;
use common::*;
use rand::Rng;
use spgnet::gpu::Tensor;
use spgnet::ops::batchnorm::{self, BnIo, BnShape};
use spgnet::ops::conv::{self, ConvShape};
use spgnet::ops::pool::{self, PoolShape};
use spgnet::ops::{dense, elementwise, gemm, linear, loss, sgd};
use spgnet::reference as cpu;

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

fn up(data: &[f32], shape: &[usize]) -> Tensor {
    gpu().upload(data, shape, "test")
}

fn read(t: &Tensor) -> Vec<f32> {
    gpu().read(t).expect("readback")
}

fn check_conv(s: ConvShape, seed: u64) {
    let g = gpu();
    let mut r = rng(seed);
    let x = random(&mut r, s.input_shape().iter().product());
    let w = random(&mut r, s.weight_shape().iter().product());
    let dy = random(&mut r, s.output_shape().iter().product());
    let (xt, wt, dyt) = (up(&x, &s.input_shape()), up(&w, &s.weight_shape()), up(&dy, &s.output_shape()));
    let y = g.zeros(&s.output_shape(), "y");
    let dx = g.zeros(&s.input_shape(), "dx");
    let dw = g.zeros(&s.weight_shape(), "dw");
    let dw_by_tap = g.zeros(&s.weight_shape(), "dw_by_tap");
    let y_by_pixel = g.zeros(&s.output_shape(), "y_by_pixel");
    let mut launches = [conv::forward(g, &s, &xt, &wt, &y), conv::backward_data(g, &s, &dyt, &wt, &dx)].into_iter().flatten().collect::<Vec<_>>();
    // the training graph's pair: the input gradient reading what its forward laid out
    let (y_shared, dx_shared) = (g.zeros(&s.output_shape(), "y_shared"), g.zeros(&s.input_shape(), "dx_shared"));
    let (forward, layout) = conv::forward_sharing(g, &s, &xt, &wt, &y_shared);
    launches.extend(forward);
    launches.extend(conv::backward_data_sharing(g, &s, &dyt, &wt, &layout, &dx_shared));
    launches.push(conv::forward_by_pixel(g, &s, gemm::Tile { tm: 8, nv: 2, wg: 8 }, &xt, &wt, &y_by_pixel));
    launches.extend(conv::backward_weight(g, &s, &dyt, &xt, &dw));
    launches.extend(conv::backward_weight_by_tap(g, &s, gemm::Tile { tm: 2, nv: 2, wg: 8 }, &dyt, &xt, &dw_by_tap));
    // All nine taps per lane (3x3 only), with both of the tiles the host picks from.
    let nine_tap_tiles = [gemm::Tile { tm: 4, nv: 1, wg: 8 }, gemm::Tile { tm: 2, nv: 2, wg: 8 }];
    let dw_nine_taps: Vec<Tensor> = nine_tap_tiles.iter().map(|_| g.zeros(&s.weight_shape(), "dw_nine_taps")).collect();
    if s.k == 3 {
        for (tile, dw) in nine_tap_tiles.iter().zip(&dw_nine_taps) {
            launches.extend(conv::backward_weight_3x3(g, &s, *tile, &dyt, &xt, dw));
        }
    }
    // dy and x in NHWC, where channels per group come in fours
    let nhwc = s.cog() % 4 == 0 && s.cig() % 4 == 0;
    let dw_nhwc = g.zeros(&s.weight_shape(), "dw_nhwc");
    if nhwc {
        launches.extend(conv::backward_weight_nhwc(g, &s, gemm::Tile { tm: 8, nv: 2, wg: 8 }, &dyt, &xt, &dw_nhwc));
    }
    // the forward on four-pixel runs, 16 and 8 output channels per lane (ragged where cog is
    // not), one run per lane or two neighbouring ones where they divide a row
    let fwd_row_tiles: Vec<gemm::Tile> = [(16, 1), (8, 1), (16, 2), (8, 2)].into_iter().filter(|&(_, nv)| (s.w / 4) % nv == 0).map(|(tm, nv)| gemm::Tile { tm, nv: nv as u32, wg: 8 }).collect();
    let fwd_rows = s.k == 3 && s.stride == 1 && s.w % 4 == 0 && s.cog() % 4 == 0;
    let y_rows: Vec<Tensor> = fwd_row_tiles.iter().map(|_| g.zeros(&s.output_shape(), "y_rows")).collect();
    if fwd_rows {
        for (tile, y) in fwd_row_tiles.iter().zip(&y_rows) {
            launches.extend(conv::forward_rows(g, &s, conv::Slices::whole(&s), *tile, &xt, &wt, None, y));
        }
    }
    // ... and the input gradient so (input channels per group in fours)
    let bwd_rows = s.k == 3 && s.stride == 1 && s.w % 4 == 0 && s.cig() % 4 == 0;
    let dx_rows: Vec<Tensor> = fwd_row_tiles.iter().map(|_| g.zeros(&s.input_shape(), "dx_rows")).collect();
    if bwd_rows {
        for (tile, dx) in fwd_row_tiles.iter().zip(&dx_rows) {
            launches.extend(conv::backward_data_rows(g, &s, *tile, &dyt, &wt, dx));
        }
    }
    // 3x3 stride 1 on rows of four-pixel runs, straight from NCHW (ragged channel tiles)
    let row_tiles = [gemm::Tile { tm: 8, nv: 2, wg: 8 }, gemm::Tile { tm: 4, nv: 4, wg: 8 }];
    let by_rows = s.k == 3 && s.stride == 1 && s.w % 4 == 0;
    let dw_rows: Vec<Tensor> = row_tiles.iter().map(|_| g.zeros(&s.weight_shape(), "dw_rows")).collect();
    if by_rows {
        for (tile, dw) in row_tiles.iter().zip(&dw_rows) {
            launches.extend(conv::backward_weight_rows(g, &s, *tile, &dyt, &xt, dw));
        }
    }
    g.run(&launches).unwrap();
    let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
    let y_ref = cpu::conv_forward(&s, &x64, &w64);
    assert_close(&format!("conv forward {s:?}"), &read(&y), &y_ref, REDUCTION_TOL);
    assert_close(&format!("conv forward_by_pixel {s:?}"), &read(&y_by_pixel), &y_ref, REDUCTION_TOL);
    if fwd_rows {
        for (tile, y) in fwd_row_tiles.iter().zip(&y_rows) {
            assert_close(&format!("conv forward_rows {tile:?} {s:?}"), &read(y), &y_ref, REDUCTION_TOL);
        }
    }
    let dx_ref = cpu::conv_backward_data(&s, &dy64, &w64);
    assert_close(&format!("conv backward_data {s:?}"), &read(&dx), &dx_ref, REDUCTION_TOL);
    assert_close(&format!("conv forward_sharing {s:?}"), &read(&y_shared), &y_ref, REDUCTION_TOL);
    assert_close(&format!("conv backward_data_sharing {s:?}"), &read(&dx_shared), &dx_ref, REDUCTION_TOL);
    if bwd_rows {
        for (tile, dx) in fwd_row_tiles.iter().zip(&dx_rows) {
            assert_close(&format!("conv backward_data_rows {tile:?} {s:?}"), &read(dx), &dx_ref, REDUCTION_TOL);
        }
    }
    let dw_ref = cpu::conv_backward_weight(&s, &dy64, &x64);
    assert_close(&format!("conv backward_weight {s:?}"), &read(&dw), &dw_ref, REDUCTION_TOL);
    assert_close(&format!("conv backward_weight_by_tap {s:?}"), &read(&dw_by_tap), &dw_ref, REDUCTION_TOL);
    if nhwc {
        assert_close(&format!("conv backward_weight_nhwc {s:?}"), &read(&dw_nhwc), &dw_ref, REDUCTION_TOL);
    }
    if by_rows {
        for (tile, dw) in row_tiles.iter().zip(&dw_rows) {
            assert_close(&format!("conv backward_weight_rows {tile:?} {s:?}"), &read(dw), &dw_ref, REDUCTION_TOL);
        }
    }
    if s.k == 3 {
        for (tile, dw) in nine_tap_tiles.iter().zip(&dw_nine_taps) {
            assert_close(&format!("conv backward_weight_3x3 {tile:?} {s:?}"), &read(dw), &dw_ref, REDUCTION_TOL);
        }
    }
}

#[test]
fn conv_awkward_shapes() {
    let cases = [
        // depthwise (groups = channels), 7x7 and 5x5 inputs with stride 2
        ConvShape { n: 2, cin: 12, h: 7, w: 7, cout: 12, groups: 12, k: 3, stride: 2 },
        ConvShape { n: 3, cin: 5, h: 5, w: 5, cout: 5, groups: 5, k: 3, stride: 2 },
        // batch 1, channels not a multiple of 4 or of the tile
        ConvShape { n: 1, cin: 3, h: 9, w: 7, cout: 7, groups: 1, k: 3, stride: 1 },
        ConvShape { n: 1, cin: 15, h: 5, w: 5, cout: 9, groups: 3, k: 3, stride: 2 },
        // 1x1 convs, as in conv_in / conv_out / skip, on a 1x1 map (stage 3 at 32x32)
        ConvShape { n: 5, cin: 13, h: 1, w: 1, cout: 6, groups: 1, k: 1, stride: 1 },
        // ... and with input channels in fours: the dense vec4 kernels
        ConvShape { n: 5, cin: 12, h: 1, w: 1, cout: 7, groups: 1, k: 1, stride: 1 },
        // 1x1 convs on maps of 4 and 12 pixels: vec4 over each image's pixels, ragged channels
        ConvShape { n: 3, cin: 5, h: 2, w: 2, cout: 7, groups: 1, k: 1, stride: 1 },
        ConvShape { n: 1, cin: 9, h: 4, w: 3, cout: 13, groups: 1, k: 1, stride: 1 },
        ConvShape { n: 2, cin: 10, h: 6, w: 6, cout: 22, groups: 1, k: 1, stride: 1 },
        // output channels per group and each output channel's weights in fours: the forward
        // reads transposed weights (forward_wt), stride 1 and 2, ragged columns
        ConvShape { n: 3, cin: 8, h: 5, w: 7, cout: 8, groups: 2, k: 3, stride: 1 },
        ConvShape { n: 2, cin: 16, h: 7, w: 6, cout: 16, groups: 2, k: 3, stride: 2 },
        // ... those copies bind as uniform buffers up to 16384 weights (every case above), as
        // storage beyond (41472 here)
        ConvShape { n: 2, cin: 72, h: 3, w: 5, cout: 64, groups: 1, k: 3, stride: 1 },
        // 12 rows per lane over the stem's 12 and 24 output channels (also 12 input channels
        // per lane for the input gradient), from one input channel as at 28x28 and 56x56
        ConvShape { n: 2, cin: 12, h: 5, w: 6, cout: 24, groups: 1, k: 3, stride: 2 },
        ConvShape { n: 3, cin: 1, h: 13, w: 11, cout: 12, groups: 1, k: 3, stride: 2 },
        // 16 rows per lane over 40 output channels (a ragged row tile of uniform weights)
        ConvShape { n: 2, cin: 12, h: 5, w: 6, cout: 40, groups: 1, k: 3, stride: 2 },
        // ... and 16 input channels per lane for the input gradient (ragged at 20 per group)
        ConvShape { n: 2, cin: 40, h: 5, w: 4, cout: 8, groups: 2, k: 3, stride: 1 },
        ConvShape { n: 3, cin: 32, h: 6, w: 5, cout: 12, groups: 2, k: 3, stride: 2 },
        // the weight gradient from dy transposed to NHWC (backward_weight_dyt), split over
        // the batch into 4 slices
        ConvShape { n: 9, cin: 8, h: 12, w: 11, cout: 16, groups: 2, k: 3, stride: 1 },
        // channels in fours: the input gradient (1x1) and weight gradient (dense) read their
        // transposed A as vec4s of rows (matmul_tn4), with a ragged last row tile
        ConvShape { n: 3, cin: 12, h: 2, w: 6, cout: 10, groups: 1, k: 1, stride: 1 },
        // ... and out in fours: the weight gradient straight from NCHW (matmul_nt4_images,
        // pixels in fours) or, on 15 pixels, from NHWC copies of dy and x (matmul_tn4)
        ConvShape { n: 3, cin: 12, h: 2, w: 6, cout: 8, groups: 1, k: 1, stride: 1 },
        ConvShape { n: 3, cin: 12, h: 3, w: 5, cout: 8, groups: 1, k: 1, stride: 1 },
        // (matmul_nt4_images with ragged row and column tiles, 8 x 8)
        ConvShape { n: 3, cin: 12, h: 4, w: 2, cout: 20, groups: 1, k: 1, stride: 1 },
        // (their transposed weights bind as a uniform buffer up to 16384 values, here not)
        ConvShape { n: 2, cin: 136, h: 2, w: 2, cout: 128, groups: 1, k: 1, stride: 1 },
        // a weight gradient in 3 chunks of the pixels (the last ragged), each chunk's dy read
        // through a uniform binding and added into dw
        ConvShape { n: 10, cin: 36, h: 7, w: 7, cout: 92, groups: 1, k: 1, stride: 1 },
        ConvShape { n: 5, cin: 20, h: 1, w: 1, cout: 12, groups: 1, k: 1, stride: 1 },
        // and a batch in fours: the dense forward and input gradient transpose their operands
        ConvShape { n: 8, cin: 20, h: 1, w: 1, cout: 12, groups: 1, k: 1, stride: 1 },
        // ... and too long for one uniform binding: forward and input gradient in two row
        // blocks of 16 images each
        ConvShape { n: 32, cin: 516, h: 1, w: 1, cout: 1024, groups: 1, k: 1, stride: 1 },
        // 3x3 stride 1 on rows of four-pixel runs (backward_weight_rows), split over the batch
        // into slices of 5 and 4 images, ragged tiles of 4 output x 2 input channels (5 and 3 per group)
        ConvShape { n: 9, cin: 10, h: 8, w: 8, cout: 6, groups: 2, k: 3, stride: 1 },
        // SPGNet-like grouped 3x3 (G = 6) and a 5x5 kernel
        ConvShape { n: 4, cin: 48, h: 8, w: 8, cout: 48, groups: 6, k: 3, stride: 1 },
        ConvShape { n: 2, cin: 8, h: 3, w: 16, cout: 24, groups: 2, k: 3, stride: 1 },
        ConvShape { n: 2, cin: 6, h: 7, w: 6, cout: 4, groups: 2, k: 5, stride: 2 },
        // stride 2 on an even map; 2x2 output; 3-channel stem
        ConvShape { n: 3, cin: 8, h: 4, w: 4, cout: 8, groups: 4, k: 3, stride: 2 },
        ConvShape { n: 8, cin: 3, h: 16, w: 16, cout: 12, groups: 1, k: 3, stride: 2 },
        // maps smaller than the kernel: only some taps ever touch the image (skipped)
        ConvShape { n: 4, cin: 12, h: 1, w: 1, cout: 18, groups: 6, k: 3, stride: 1 },
        ConvShape { n: 3, cin: 4, h: 2, w: 1, cout: 6, groups: 2, k: 3, stride: 2 },
        ConvShape { n: 2, cin: 3, h: 2, w: 3, cout: 5, groups: 1, k: 5, stride: 1 },
        // stride 2 on a 1x1 map (3 of 4 parity classes empty), a strided 1x1 kernel
        ConvShape { n: 2, cin: 4, h: 1, w: 1, cout: 4, groups: 2, k: 3, stride: 2 },
        ConvShape { n: 2, cin: 3, h: 5, w: 4, cout: 5, groups: 1, k: 1, stride: 2 },
        // 3x3 stride 1 on maps of 4 and 8 columns, ragged output channels, a map taller than wide
        ConvShape { n: 3, cin: 12, h: 4, w: 4, cout: 18, groups: 3, k: 3, stride: 1 },
        ConvShape { n: 2, cin: 6, h: 5, w: 8, cout: 10, groups: 2, k: 3, stride: 1 },
        // stride 3 (the general division path of backward_data)
        ConvShape { n: 2, cin: 4, h: 8, w: 7, cout: 6, groups: 2, k: 3, stride: 3 },
    ];
    for (i, s) in cases.into_iter().enumerate() {
        check_conv(s, i as u64);
    }
}

#[test]
fn conv_on_tiny_maps_as_dense_gemms() {
    let cases = [
        // SPGNet's stage 2 at 32x32 input: 2x2 maps, G = 6, 16 channels per group, a batch
        // that leaves a ragged row tile
        ConvShape { n: 37, cin: 96, h: 2, w: 2, cout: 96, groups: 6, k: 3, stride: 1 },
        // ragged output channels per group (rows of Wt not in fours), batch 1
        ConvShape { n: 1, cin: 24, h: 2, w: 2, cout: 30, groups: 6, k: 3, stride: 1 },
        // stage 3's first conv1: 2x2 -> 1x1 with stride 2 (4 of 9 taps live)
        ConvShape { n: 3, cin: 16, h: 2, w: 2, cout: 12, groups: 2, k: 3, stride: 2 },
        // no groups, 5 input channels; a 5x5 kernel; a 4x2 map
        ConvShape { n: 2, cin: 5, h: 2, w: 2, cout: 3, groups: 1, k: 3, stride: 1 },
        ConvShape { n: 2, cin: 8, h: 2, w: 2, cout: 4, groups: 2, k: 5, stride: 1 },
        ConvShape { n: 3, cin: 8, h: 4, w: 2, cout: 6, groups: 2, k: 3, stride: 2 },
    ];
    for (i, s) in cases.into_iter().enumerate() {
        assert!(conv::tiny_map(&s), "{s:?} should take the tiny-map GEMMs");
        check_conv(s, 300 + i as u64);
    }
    // Eval with BN in the epilogue, reading and writing channel slices (conv1 / conv2 of an
    // SPG block in stage 2 write into the concat buffer).
    let s = ConvShape { n: 3, cin: 24, h: 2, w: 2, cout: 20, groups: 4, k: 3, stride: 1 };
    check_conv_bn_eval(s, conv::Slices { x_channels: 28, x_first: 4, y_channels: 44, y_first: 20 }, true, 310);
    let s = ConvShape { n: 5, cin: 16, h: 2, w: 2, cout: 12, groups: 2, k: 3, stride: 2 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), false, 311);
    // Too little of Wt would be live taps (4x4 -> 2x2 with stride 2), or too few channels per group.
    assert!(!conv::tiny_map(&ConvShape { n: 2, cin: 16, h: 4, w: 4, cout: 16, groups: 2, k: 3, stride: 2 }));
    assert!(!conv::tiny_map(&ConvShape { n: 2, cin: 12, h: 2, w: 2, cout: 12, groups: 12, k: 3, stride: 1 }));
}

#[test]
fn conv_large_shapes_span_workgroups_in_every_dimension() {
    // Many column tiles (x), several row tiles (y), several groups (z), and a split-K weight gradient.
    let s = ConvShape { n: 6, cin: 36, h: 16, w: 15, cout: 54, groups: 3, k: 3, stride: 1 };
    let t = gemm::Tile::for_forward(s.cog(), s.n * s.oh() * s.ow());
    let grid = t.grid(s.cog(), s.n * s.oh() * s.ow(), s.groups);
    assert!(grid.iter().all(|&d| d > 1), "grid {grid:?} should exceed one workgroup everywhere");
    check_conv(s, 100);
    let stem = ConvShape { n: 32, cin: 3, h: 16, w: 16, cout: 12, groups: 1, k: 3, stride: 2 };
    assert!(conv::weight_grad_splits(&stem) > 1, "the stem's weight gradient should be split");
    check_conv(stem, 101);
}

#[test]
fn conv_random_shapes() {
    let mut r = rng(2024);
    for i in 0..12 {
        let groups = [1, 2, 3, 6][r.random_range(0..4)];
        let cig = r.random_range(1..6);
        let cog = r.random_range(1..7);
        let depthwise = i % 4 == 3;
        let (cin, cout, groups) = if depthwise { (groups * cig, groups * cig, groups * cig) } else { (groups * cig, groups * cog, groups) };
        let s = ConvShape {
            n: r.random_range(1..4),
            cin,
            h: r.random_range(1..10),
            w: r.random_range(1..10),
            cout,
            groups,
            k: [1, 3, 3, 5][r.random_range(0..4)],
            stride: r.random_range(1..3),
        };
        check_conv(s, 200 + i);
    }
}

fn check_batchnorm(s: BnShape, relu: bool, seed: u64) {
    check_batchnorm_io(s, relu, BnIo::whole(s.c), seed);
}

/// Values of x: scale * U(-1, 1) + offset.
const BN_X: (f32, f32) = (3.0, 0.5);

/// Channels first..first + c of each image of a [n, total, hw] buffer.
fn channel_slice(v: &[f32], s: &BnShape, total: usize, first: usize) -> Vec<f32> {
    (0..s.n).flat_map(|n| v[(n * total + first) * s.hw..(n * total + first + s.c) * s.hw].to_vec()).collect()
}

/// The training forward and backward with y and dy laid out as `io` says (the fused concat),
/// against the CPU reference: y in its channels of the wider buffer and the other channels
/// untouched, the whole copy of y with y_copy, the sum of both gradient terms with dy_sum.
fn check_batchnorm_io(s: BnShape, relu: bool, io: BnIo, seed: u64) {
    check_batchnorm_with(s, relu, io, BN_X, seed);
}

fn check_batchnorm_with(s: BnShape, relu: bool, io: BnIo, (scale, offset): (f32, f32), seed: u64) {
    let g = gpu();
    let mut r = rng(seed);
    let x: Vec<f32> = random(&mut r, s.len()).iter().map(|v| scale * v + offset).collect();
    let gamma = random(&mut r, s.c);
    let beta = random(&mut r, s.c);
    let rm0 = random(&mut r, s.c);
    let rv0: Vec<f32> = random(&mut r, s.c).iter().map(|v| v.abs() + 0.5).collect();
    let (shape, wide) = ([s.n, s.c, s.hw], [s.n, io.total, s.hw]);
    let wide_len = s.n * io.total * s.hw;
    let dy_wide = random(&mut r, wide_len);
    let dy2 = random(&mut r, s.len());
    let y_before = random(&mut r, wide_len);
    let shortcut = random(&mut r, s.len());
    let (xt, gt, bt, dyt) = (up(&x, &shape), up(&gamma, &[s.c]), up(&beta, &[s.c]), up(&dy_wide, &wide));
    let (dy2t, shortcut_t) = (up(&dy2, &shape), up(&shortcut, &shape));
    let (rm, rv) = (up(&rm0, &[s.c]), up(&rv0, &[s.c]));
    let saved = g.zeros(&[2, s.c], "saved");
    let (y, y_copy, y_eval, dx) = (up(&y_before, &wide), g.zeros(&shape, "y copy"), g.zeros(&shape, "y_eval"), g.zeros(&shape, "dx"));
    let (dgamma, dbeta) = (g.zeros(&[s.c], "dgamma"), g.zeros(&[s.c], "dbeta"));
    let p = batchnorm::params_io(g, &s, relu, io);
    let mut launches = batchnorm::forward_train(g, &p, &s, &xt, &saved, (&rm, &rv), (&gt, &bt), &y, io.y_copy.then_some(&y_copy), io.residual.then_some(&shortcut_t));
    launches.extend(batchnorm::backward(g, &p, &s, &dyt, io.dy_sum.then_some(&dy2t), &xt, &saved, (&gt, &bt), (&dgamma, &dbeta), &dx));
    launches.push(batchnorm::forward_eval(g, &p, &s, &xt, (&rm, &rv), (&gt, &bt), &y_eval));
    g.run(&launches).unwrap();

    let (x64, g64, b64) = (f64s(&x), f64s(&gamma), f64s(&beta));
    let eps = batchnorm::EPS as f64;
    let (mean, var) = cpu::bn_stats(&s, &x64);
    let z = cpu::bn_normalize(&s, &x64, &mean, &var, &g64, &b64, eps);
    let act = |v: Vec<f64>| if relu { cpu::relu(&v) } else { v };
    let what = format!("batchnorm {s:?} relu={relu} {io:?}");
    let y_all = read(&y);
    // A residual BN: relu(BN + shortcut) (its own relu flag is off).
    let y_ref = if io.residual { cpu::relu(&cpu::add(&z, &f64s(&shortcut))) } else { act(z.clone()) };
    assert_close(&format!("{what} forward"), &channel_slice(&y_all, &s, io.total, io.first), &y_ref, REDUCTION_TOL);
    let outside = |v: &[f32]| -> Vec<f32> { v.iter().enumerate().filter(|(i, _)| !(io.first..io.first + s.c).contains(&(i / s.hw % io.total))).map(|(_, v)| *v).collect() };
    assert_close(&format!("{what} other channels untouched"), &outside(&y_all), &f64s(&outside(&y_before)), 0.0);
    if io.y_copy {
        assert_close(&format!("{what} forward copy"), &read(&y_copy), &y_ref, REDUCTION_TOL);
    }
    let mut run = (f64s(&rm0), f64s(&rv0));
    cpu::bn_running_update(&s, (&mut run.0, &mut run.1), &mean, &var, batchnorm::MOMENTUM as f64);
    assert_close(&format!("{what} running mean"), &read(&rm), &run.0, REDUCTION_TOL);
    assert_close(&format!("{what} running var"), &read(&rv), &run.1, REDUCTION_TOL);
    let z_eval = cpu::bn_normalize(&s, &x64, &run.0, &run.1, &g64, &b64, eps);
    assert_close(&format!("{what} eval forward"), &read(&y_eval), &act(z_eval), REDUCTION_TOL);
    let mut dy = f64s(&channel_slice(&dy_wide, &s, io.total, io.first));
    if io.dy_sum {
        dy = cpu::add(&dy, &f64s(&dy2));
    }
    // Through the fused ReLU the incoming gradient is masked by the pre-activation's sign.
    let dz = if relu { cpu::relu_backward(&dy, &z) } else { dy };
    let (dx_ref, dgamma_ref, dbeta_ref) = cpu::bn_backward(&s, &dz, &x64, &g64, eps);
    assert_close(&format!("{what} dx"), &read(&dx), &dx_ref, REDUCTION_TOL);
    assert_close(&format!("{what} dgamma"), &read(&dgamma), &dgamma_ref, REDUCTION_TOL);
    assert_close(&format!("{what} dbeta"), &read(&dbeta), &dbeta_ref, REDUCTION_TOL);
}

#[test]
fn batchnorm_statistics_of_values_far_from_zero() {
    // The variance is summed over centred values (a second pass after the mean): values near
    // 30 with a spread of 0.1 (variance 0.0033) keep the precision f32 gives them, where a
    // one-pass E[x^2] - E[x]^2 sums values near 900 to totals whose rounding (0.1 and more)
    // exceeds the variance itself. (A one-pass variant shifted by a value of the channel passed
    // this but lost precision against the Paddle golden step, and was dropped.) Both layouts
    // (a workgroup and a lane per channel), vec4 and scalar.
    for (i, s) in [BnShape { n: 40, c: 3, hw: 49 }, BnShape { n: 21, c: 5, hw: 64 }, BnShape { n: 16, c: 33, hw: 1 }, BnShape { n: 7, c: 4, hw: 12 }].into_iter().enumerate() {
        check_batchnorm_with(s, i % 2 == 0, BnIo::whole(s.c), (0.1, 30.0), 380 + i as u64);
        check_batchnorm_with(s, true, BnIo::whole(s.c), (1.0, -100.0), 390 + i as u64);
    }
}

#[test]
fn batchnorm_writes_and_reads_a_concat_buffer_in_place() {
    // conv1's BN (first half, a whole copy of y, two gradient terms) and conv2's (second
    // half), stem1's (whole, two gradient terms) and conv_out's (the residual add and the
    // block's ReLU); vec4 and scalar planes, both layouts
    // (a workgroup per channel above BY_CHANNEL_MAX values per channel, a lane per channel below).
    let cases = [
        (BnShape { n: 3, c: 5, hw: 9 }, true, BnIo { total: 10, first: 0, y_copy: true, dy_sum: true, residual: false }),
        (BnShape { n: 3, c: 5, hw: 9 }, false, BnIo { total: 10, first: 5, y_copy: false, dy_sum: false, residual: false }),
        (BnShape { n: 37, c: 6, hw: 4 }, true, BnIo { total: 12, first: 0, y_copy: true, dy_sum: true, residual: false }),
        (BnShape { n: 37, c: 6, hw: 4 }, true, BnIo { total: 12, first: 6, y_copy: false, dy_sum: false, residual: false }),
        (BnShape { n: 21, c: 3, hw: 64 }, true, BnIo { total: 6, first: 3, y_copy: false, dy_sum: false, residual: false }),
        (BnShape { n: 40, c: 3, hw: 49 }, true, BnIo { total: 7, first: 1, y_copy: true, dy_sum: true, residual: false }),
        (BnShape { n: 16, c: 33, hw: 1 }, false, BnIo { total: 66, first: 33, y_copy: false, dy_sum: true, residual: false }),
        (BnShape { n: 5, c: 12, hw: 16 }, true, BnIo { total: 12, first: 0, y_copy: false, dy_sum: true, residual: false }),
        // conv_out's BN ending a block: relu(BN + shortcut), both layouts, vec4 and scalar
        (BnShape { n: 5, c: 12, hw: 16 }, false, BnIo { total: 12, first: 0, y_copy: false, dy_sum: false, residual: true }),
        (BnShape { n: 40, c: 3, hw: 49 }, false, BnIo { total: 3, first: 0, y_copy: false, dy_sum: false, residual: true }),
        (BnShape { n: 16, c: 33, hw: 1 }, false, BnIo { total: 33, first: 0, y_copy: false, dy_sum: false, residual: true }),
    ];
    assert!(cases.iter().any(|(s, _, _)| s.n * s.hw > batchnorm::BY_CHANNEL_MAX));
    for (i, (s, relu, io)) in cases.into_iter().enumerate() {
        check_batchnorm_io(s, relu, io, 350 + i as u64);
    }
}

#[test]
fn batchnorm_2d_and_1d() {
    let cases = [
        (BnShape { n: 3, c: 5, hw: 49 }, true),
        (BnShape { n: 1, c: 7, hw: 25 }, false),
        (BnShape { n: 16, c: 33, hw: 1 }, true),
        (BnShape { n: 3, c: 3, hw: 1 }, false),
        (BnShape { n: 8, c: 24, hw: 256 }, true),
        (BnShape { n: 70, c: 4, hw: 1 }, false),
        // more images than the reduction and elementwise workgroups have lanes, ragged
        (BnShape { n: 37, c: 6, hw: 6 }, true),
        // planes of 4 and 16 pixels take the vec4 kernels, also with ragged image counts
        (BnShape { n: 37, c: 5, hw: 4 }, false),
        (BnShape { n: 19, c: 3, hw: 16 }, true),
        (BnShape { n: 1, c: 2, hw: 4 }, true),
        // more than BY_CHANNEL_MAX values per channel (8x24x256 above too): a workgroup per
        // channel with a tree reduction, scalar and vec4; the smaller ones take a lane per channel
        (BnShape { n: 40, c: 3, hw: 49 }, true),
        (BnShape { n: 21, c: 5, hw: 64 }, false),
    ];
    assert!(cases.iter().any(|(s, _)| s.n * s.hw > batchnorm::BY_CHANNEL_MAX && s.hw % 4 != 0));
    assert!(cases.iter().any(|(s, _)| s.n * s.hw <= batchnorm::BY_CHANNEL_MAX && s.c > 8));
    for (i, (s, relu)) in cases.into_iter().enumerate() {
        check_batchnorm(s, relu, 300 + i as u64);
    }
}

#[test]
fn relu_and_residual_kernels() {
    // Planes of 9 and 1 pixel (odd lengths: the scalar kernels), of 16 and 4 pixels (vec4),
    // with a last lane that owns fewer than its four values.
    for (i, dims) in [(3, 5, 9), (3, 5, 16), (2, 3, 4), (1, 3, 1), (2, 8, 1), (3, 40, 4), (2, 44, 9)].into_iter().enumerate() {
        check_relu_and_residual(dims, 400 + i as u64);
    }
}

fn check_relu_and_residual((n, c, hw): (usize, usize, usize), seed: u64) {
    let g = gpu();
    let mut r = rng(seed);
    let shape = [n, c, hw];
    let (a, b, d) = (random(&mut r, n * c * hw), random(&mut r, n * c * hw), random(&mut r, n * c * hw));
    let (at, bt, dt) = (up(&a, &shape), up(&b, &shape), up(&d, &shape));
    let [relu_y, relu_dx, relu_sum_dx, sum_relu] = ["r", "rd", "rsd", "sr"].map(|l| g.zeros(&shape, l));
    let l = vec![
        elementwise::relu_forward(g, &at, &relu_y),
        elementwise::relu_backward(g, &bt, &at, &relu_dx),
        elementwise::relu_backward_sum(g, (&bt, &dt), &at, &relu_sum_dx),
        elementwise::add_relu(g, &at, &bt, &sum_relu),
    ];
    g.run(&l).unwrap();
    let (a64, b64, d64) = (f64s(&a), f64s(&b), f64s(&d));
    assert_close("relu", &read(&relu_y), &cpu::relu(&a64), 0.0);
    assert_close("relu backward", &read(&relu_dx), &cpu::relu_backward(&b64, &a64), 0.0);
    assert_close("relu backward of a sum", &read(&relu_sum_dx), &cpu::relu_backward(&cpu::add(&b64, &d64), &a64), ELEMENTWISE_TOL);
    assert_close("add relu", &read(&sum_relu), &cpu::relu(&cpu::add(&a64, &b64)), ELEMENTWISE_TOL);
}

#[test]
fn elementwise_grid_beyond_one_dimension() {
    // 65535 workgroups of 64 lanes, 4 values each, cover 16.8 M values; an odd length (the
    // scalar kernel) past that needs a second grid row.
    let g = gpu();
    let len = 16_777_221;
    let a: Vec<f32> = (0..len).map(|i| (i % 1000) as f32).collect();
    let b: Vec<f32> = (0..len).map(|i| -((i % 7) as f32)).collect();
    let (at, bt, out) = (up(&a, &[len]), up(&b, &[len]), g.zeros(&[len], "out"));
    let add = elementwise::add_relu(g, &at, &bt, &out);
    assert!(add.workgroups[1] > 1, "grid {:?} should have a second row", add.workgroups);
    g.run(&[add]).unwrap();
    assert_close("add + relu on a 2-D grid", &read(&out), &cpu::relu(&cpu::add(&f64s(&a), &f64s(&b))), 0.0);
}

#[test]
fn transpose_in_4x4_blocks() {
    // Dense forwards read their weight transposed. A small non-square matrix, and one of
    // 524,800 blocks: more than 65535 workgroups of 8 lanes, so the grid has a second row.
    let g = gpu();
    for (rows, cols) in [(12, 8), (4, 4), (8, 2_099_200)] {
        let a: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let t = g.zeros(&[cols, rows], "t");
        let l = gemm::transpose(g, (rows, cols), &up(&a, &[rows, cols]), &t);
        assert_eq!(l.workgroups[1] > 1, rows * cols > 65535 * 8 * 16, "grid {:?}", l.workgroups);
        g.run(&[l]).unwrap();
        let expected: Vec<f64> = (0..cols * rows).map(|i| a[(i % rows) * cols + i / rows] as f64).collect();
        assert_close(&format!("transpose {rows}x{cols}"), &read(&t), &expected, 0.0);
    }
    // Each image of an NCHW tensor on its own ([c, hw] -> [hw, c]), as the 1x1 weight gradient
    // does; rows in fours over planes that are not (7x7 maps: 4x1 blocks per lane, ragged
    // last workgroup) -- and over a plane too wide for one grid row of those (one value per
    // lane instead); and sizes not in fours (one value per lane), as conv weights
    // [co][ci][tap] need.
    for (count, rows, cols) in [(3, 12, 20), (5, 3, 9), (3, 8, 49), (2, 96, 9), (1, 4, 1), (1, 4, 524_289)] {
        let a: Vec<f32> = (0..count * rows * cols).map(|i| i as f32).collect();
        let t = g.zeros(&[count, cols, rows], "t");
        g.run(&[gemm::transpose_each(g, (count, rows, cols), &up(&a, &[count, rows, cols]), &t)]).unwrap();
        let expected: Vec<f64> = (0..count * cols * rows)
            .map(|i| {
                let (z, r) = (i / (rows * cols), i % (rows * cols));
                a[z * rows * cols + (r % rows) * cols + r / rows] as f64
            })
            .collect();
        assert_close(&format!("transpose each of {count} {rows}x{cols}"), &read(&t), &expected, 0.0);
    }
}

#[test]
fn dropout_mask_is_seeded_and_shared_by_backward() {
    let g = gpu();
    let mut r = rng(500);
    let len = 20_000;
    let p = 0.3;
    let x = random(&mut r, len);
    let dy = random(&mut r, len);
    let (xt, dyt) = (up(&x, &[len]), up(&dy, &[len]));
    let (y, dx, mask, mask2) = (g.zeros(&[len], "y"), g.zeros(&[len], "dx"), g.zeros(&[len], "m"), g.zeros(&[len], "m2"));
    let params = elementwise::dropout_params(g, len, p, 1234);
    let l = [
        elementwise::dropout(g, &params, &xt, &y),
        elementwise::dropout(g, &params, &dyt, &dx),
        elementwise::dropout_mask(g, &params, &xt, &mask),
    ];
    g.run(&l).unwrap();
    let m = f64s(&read(&mask));
    let kept = m.iter().sum::<f64>() / len as f64;
    assert!((kept - 0.7).abs() < 0.02, "kept fraction {kept} for p = 0.3");
    assert_close("dropout forward", &read(&y), &cpu::dropout(&f64s(&x), &m, p as f64), ELEMENTWISE_TOL);
    assert_close("dropout backward", &read(&dx), &cpu::dropout(&f64s(&dy), &m, p as f64), ELEMENTWISE_TOL);
    // Another seed gives another mask.
    elementwise::set_dropout_seed(g, &params, 99);
    g.run(&[elementwise::dropout_mask(g, &params, &xt, &mask2)]).unwrap();
    let m2 = read(&mask2);
    let same = m.iter().zip(&m2).filter(|(a, b)| **a == **b as f64).count();
    assert!(same < len * 9 / 10, "seed change should change the mask");
}

#[test]
fn pooling() {
    let g = gpu();
    let mut r = rng(600);
    for (i, s) in [
        PoolShape { n: 2, c: 3, h: 7, w: 7, k: 3, stride: 2, pad: 1 },
        PoolShape { n: 1, c: 5, h: 5, w: 5, k: 3, stride: 2, pad: 1 },
        PoolShape { n: 3, c: 2, h: 6, w: 6, k: 2, stride: 2, pad: 0 },
        PoolShape { n: 2, c: 4, h: 9, w: 5, k: 3, stride: 1, pad: 1 },
    ]
    .into_iter()
    .enumerate()
    {
        let in_len = s.n * s.c * s.h * s.w;
        let out_len = s.n * s.c * s.oh() * s.ow();
        let x = random(&mut r, in_len);
        let dy = random(&mut r, out_len);
        let (xt, dyt) = (up(&x, &[in_len]), up(&dy, &[out_len]));
        let (ym, arg, dxm) = (g.zeros(&[out_len], "ym"), g.zeros(&[out_len], "arg"), g.zeros(&[in_len], "dxm"));
        let (ya, dxa) = (g.zeros(&[out_len], "ya"), g.zeros(&[in_len], "dxa"));
        g.run(&[
            pool::maxpool_forward(g, &s, &xt, &ym, &arg),
            pool::maxpool_backward(g, &s, &dyt, &arg, &dxm),
            pool::avgpool_forward(g, &s, &xt, &ya),
            pool::avgpool_backward(g, &s, &dyt, &dxa),
        ])
        .unwrap();
        let (x64, dy64) = (f64s(&x), f64s(&dy));
        let (ym_ref, arg_ref) = cpu::maxpool_forward(&s, &x64);
        assert_close(&format!("maxpool forward {i}"), &read(&ym), &ym_ref, 0.0);
        assert_close(&format!("maxpool backward {i}"), &read(&dxm), &cpu::maxpool_backward(&s, &dy64, &arg_ref), ELEMENTWISE_TOL);
        assert_close(&format!("avgpool forward {i}"), &read(&ya), &cpu::avgpool_forward(&s, &x64), ELEMENTWISE_TOL);
        assert_close(&format!("avgpool backward {i}"), &read(&dxa), &cpu::avgpool_backward(&s, &dy64), ELEMENTWISE_TOL);
    }
    for (n, c, h, w) in [(3, 5, 7, 7), (2, 9, 1, 1), (1, 4, 4, 3)] {
        let s = PoolShape::global(n, c, h, w);
        let x = random(&mut r, n * c * h * w);
        let dy = random(&mut r, n * c);
        let (xt, dyt) = (up(&x, &[n, c, h, w]), up(&dy, &[n, c]));
        let (y, dx) = (g.zeros(&[n, c], "y"), g.zeros(&[n, c, h, w], "dx"));
        g.run(&[pool::gap_forward(g, &s, &xt, &y), pool::gap_backward(g, &s, &dyt, &dx)]).unwrap();
        assert_close("global avg pool", &read(&y), &cpu::gap_forward(&s, &f64s(&x)), ELEMENTWISE_TOL);
        assert_close("global avg pool backward", &read(&dx), &cpu::gap_backward(&s, &f64s(&dy)), ELEMENTWISE_TOL);
    }
}

#[test]
fn linear_layer() {
    let g = gpu();
    let mut r = rng(700);
    // inputs in fours take the vec4 dense kernels, the others the conv kernels; outputs in
    // fours or not, ragged batches
    for (batch, fin, fout) in [(5, 37, 13), (1, 1024, 10), (64, 256, 130), (3, 3, 1), (7, 20, 9), (37, 12, 50), (7, 44, 12), (64, 128, 256)] {
        let x = random(&mut r, batch * fin);
        let w = random(&mut r, fout * fin);
        let dy = random(&mut r, batch * fout);
        let (xt, wt, dyt) = (up(&x, &[batch, fin]), up(&w, &[fout, fin]), up(&dy, &[batch, fout]));
        let (y, dx, dw) = (g.zeros(&[batch, fout], "y"), g.zeros(&[batch, fin], "dx"), g.zeros(&[fout, fin], "dw"));
        let mut l = [linear::forward(g, &xt, &wt, &y), linear::backward_data(g, &dyt, &wt, &dx)].into_iter().flatten().collect::<Vec<_>>();
        l.extend(linear::backward_weight(g, &dyt, &xt, &dw));
        g.run(&l).unwrap();
        let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
        let what = format!("linear {batch}x{fin}->{fout}");
        assert_close(&format!("{what} forward"), &read(&y), &cpu::linear_forward(batch, fin, fout, &x64, &w64), REDUCTION_TOL);
        let (dx_ref, dw_ref) = cpu::linear_backward(batch, fin, fout, &dy64, &x64, &w64);
        assert_close(&format!("{what} dx"), &read(&dx), &dx_ref, REDUCTION_TOL);
        assert_close(&format!("{what} dw"), &read(&dw), &dw_ref, REDUCTION_TOL);
    }
}

#[test]
fn softmax_cross_entropy() {
    let g = gpu();
    let mut r = rng(800);
    for (n, classes, smoothing) in [(5, 10, 0.1f32), (130, 7, 0.0), (1, 1000, 0.1), (64, 100, 0.2)] {
        let logits: Vec<f32> = random(&mut r, n * classes).iter().map(|v| 8.0 * v).collect();
        let labels: Vec<u32> = (0..n).map(|_| r.random_range(0..classes as u32)).collect();
        let lt = up(&logits, &[n, classes]);
        let labt = g.upload_u32(&labels, "labels");
        let (dl, per, out) = (g.zeros(&[n, classes], "dl"), g.zeros(&[2, n], "per"), g.zeros(&[2], "out"));
        g.run(&loss::softmax_xent(g, smoothing, &lt, &labt, &dl, &per, &out)).unwrap();
        let l64 = f64s(&logits);
        let lab: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        let (loss_ref, grad_ref) = cpu::softmax_xent(classes, &l64, &lab, smoothing as f64);
        let correct = (0..n)
            .filter(|&i| {
                let row = &logits[i * classes..(i + 1) * classes];
                let arg = (0..classes).fold(0, |b, k| if row[k] > row[b] { k } else { b });
                arg == lab[i]
            })
            .count();
        let got = read(&out);
        assert_close(&format!("loss n={n} classes={classes}"), &got[..1], &[loss_ref], REDUCTION_TOL);
        assert_eq!(got[1] as usize, correct, "correct count");
        assert_close(&format!("dlogits n={n} classes={classes}"), &read(&dl), &grad_ref, REDUCTION_TOL);
    }
}

#[test]
fn sgd_momentum_weight_decay_and_ema() {
    let g = gpu();
    let mut r = rng(900);
    // vec4s and a tail of 3; vec4s only; a tail only
    for len in [10_007, 10_000, 3] {
        let p0 = random(&mut r, len);
        let v0 = random(&mut r, len);
        let grad = random(&mut r, len);
        let (pt, vt, gt) = (up(&p0, &[len]), up(&v0, &[len]), up(&grad, &[len]));
        let step = sgd::step(g, &gt, &pt, &vt, 0.1, 0.9, 5e-4);
        assert_eq!(step.len(), (len >= 4) as usize + (len % 4 != 0) as usize);
        let (mut p, mut v) = (f64s(&p0), f64s(&v0));
        for lr in [0.1f32, 0.05, 0.01] {
            sgd::set_learning_rate(g, &step, lr);
            g.run(&step).unwrap();
            cpu::sgd_step(&mut p, &f64s(&grad), &mut v, lr as f64, 0.9, 5e-4);
        }
        assert_close(&format!("sgd params, {len} values"), &read(&pt), &p, ELEMENTWISE_TOL);
        assert_close(&format!("sgd velocity, {len} values"), &read(&vt), &v, ELEMENTWISE_TOL);
        // The weight EMA over the same lengths: shadow = d * shadow + (1 - d) * value.
        let shadow0 = random(&mut r, len);
        let shadow = up(&shadow0, &[len]);
        // built with one decay, run with another: set_ema_decay rewrites what the launches read
        let ema = sgd::ema(g, &pt, &shadow, 0.9);
        sgd::set_ema_decay(g, &ema, 0.8);
        g.run(&ema).unwrap();
        let d = 0.8f32 as f64;
        let want: Vec<f64> = f64s(&shadow0).iter().zip(&p).map(|(s, v)| d * s + (1.0 - d) * v).collect();
        assert_close(&format!("ema, {len} values"), &read(&shadow), &want, ELEMENTWISE_TOL);
    }
}

#[test]
fn plain_matmul_with_transposed_operands() {
    let g = gpu();
    let mut r = rng(750);
    for (m, n, k) in [(5, 37, 13), (64, 130, 256), (1, 9, 1024), (17, 4, 3), (13, 20, 12), (9, 68, 5), (36, 68, 5), (12, 8, 33), (20, 36, 44), (48, 64, 96)] {
        let a = random(&mut r, m * k);
        let b = random(&mut r, k * n);
        let (a64, b64) = (f64s(&a), f64s(&b));
        let want = cpu::matmul(m, n, k, &a64, &b64);
        // a row-major, b row-major; then both given as transposes of row-major storage.
        let (at, bt) = (up(&a, &[m, k]), up(&b, &[k, n]));
        let a_t: Vec<f32> = cpu::transpose(m, k, &a64).iter().map(|&v| v as f32).collect();
        let b_t: Vec<f32> = cpu::transpose(k, n, &b64).iter().map(|&v| v as f32).collect();
        let (att, btt) = (up(&a_t, &[k, m]), up(&b_t, &[n, k]));
        let (c1, c2) = (g.zeros(&[m, n], "c1"), g.zeros(&[m, n], "c2"));
        g.run(&[
            gemm::matmul(g, (m, n, k), (&at, gemm::Strides::rows(k)), (&bt, gemm::Strides::rows(n)), &c1),
            gemm::matmul(g, (m, n, k), (&att, gemm::Strides::transposed(m)), (&btt, gemm::Strides::transposed(k)), &c2),
        ])
        .unwrap();
        assert_close(&format!("matmul {m}x{n}x{k}"), &read(&c1), &want, REDUCTION_TOL);
        assert_close(&format!("matmul transposed {m}x{n}x{k}"), &read(&c2), &want, REDUCTION_TOL);
        // the vec4 kernels where their layout allows, with every tile shape the benches try
        for tile in [dense::DENSE_TILE, gemm::Tile { tm: 4, nv: 1, wg: 8 }, gemm::Tile { tm: 8, nv: 2, wg: 8 }, gemm::Tile { tm: 16, nv: 2, wg: 8 }] {
            if n % 4 == 0 {
                let c = g.zeros(&[m, n], "c_nn4");
                g.run(&[gemm::matmul_nn4(g, tile, (m, n, k), (&at, gemm::Strides::rows(k)), &bt, gemm::Columns::matrix(n), &c)]).unwrap();
                assert_close(&format!("matmul_nn4 {m}x{n}x{k} {tile:?}"), &read(&c), &want, REDUCTION_TOL);
                // A given transposed: matmul_tn4 (vec4s of four rows) where m comes in fours
                let c = g.zeros(&[m, n], "c_tn4");
                g.run(&[gemm::matmul_nn4(g, tile, (m, n, k), (&att, gemm::Strides::transposed(m)), &bt, gemm::Columns::matrix(n), &c)]).unwrap();
                assert_close(&format!("matmul_nn4 with A transposed {m}x{n}x{k} {tile:?}"), &read(&c), &want, REDUCTION_TOL);
            }
            if k % 4 == 0 {
                let c = g.zeros(&[m, n], "c_nt4");
                g.run(&[gemm::matmul_nt4(g, tile, (m, n, k), &at, &btt, &c)]).unwrap();
                assert_close(&format!("matmul_nt4 {m}x{n}x{k} {tile:?}"), &read(&c), &want, REDUCTION_TOL);
            }
        }
    }
}

/// Eval's fused conv + BN (+ ReLU): x read from a channel slice of a wider tensor and y
/// written into a slice of another, other channels of y left untouched.
fn check_conv_bn_eval(s: ConvShape, slices: conv::Slices, relu: bool, seed: u64) {
    let g = gpu();
    let mut r = rng(seed);
    let [n, _, h, w] = s.input_shape();
    let [_, _, oh, ow] = s.output_shape();
    let x_wide = random(&mut r, n * slices.x_channels * h * w);
    let wt = random(&mut r, s.weight_shape().iter().product());
    let (mean, gamma, beta) = (random(&mut r, s.cout), random(&mut r, s.cout), random(&mut r, s.cout));
    let var: Vec<f32> = random(&mut r, s.cout).iter().map(|v| v.abs() + 0.1).collect();
    let y_before = random(&mut r, n * slices.y_channels * oh * ow);
    let y = up(&y_before, &[n, slices.y_channels, oh, ow]);
    let (mt, vt, gt, bt) = (up(&mean, &[s.cout]), up(&var, &[s.cout]), up(&gamma, &[s.cout]), up(&beta, &[s.cout]));
    let bn = batchnorm::BnEval { mean: &mt, var: &vt, gamma: &gt, beta: &bt, relu };
    let xt = up(&x_wide, &[n, slices.x_channels, h, w]);
    g.run(&conv::forward_bn(g, &s, slices, &xt, &up(&wt, &s.weight_shape()), &bn, &y)).unwrap();

    // Reference: cut x's slice, conv, BN with the given statistics, ReLU, paste into y.
    let (hw, ohw) = (h * w, oh * ow);
    let x: Vec<f64> = (0..n).flat_map(|i| x_wide[(i * slices.x_channels + slices.x_first) * hw..][..s.cin * hw].to_vec()).map(f64::from).collect();
    let z = cpu::conv_forward(&s, &x, &f64s(&wt));
    let bs = BnShape { n, c: s.cout, hw: ohw };
    let out = cpu::bn_normalize(&bs, &z, &f64s(&mean), &f64s(&var), &f64s(&gamma), &f64s(&beta), batchnorm::EPS as f64);
    let out = if relu { cpu::relu(&out) } else { out };
    let mut expect = f64s(&y_before);
    for i in 0..n {
        let dst = (i * slices.y_channels + slices.y_first) * ohw;
        expect[dst..dst + s.cout * ohw].copy_from_slice(&out[i * s.cout * ohw..][..s.cout * ohw]);
    }
    assert_close(&format!("conv forward_bn {s:?} {slices:?} relu={relu}"), &read(&y), &expect, REDUCTION_TOL);
}

#[test]
fn conv_bn_eval_fused_with_channel_slices() {
    let s = ConvShape { n: 3, cin: 12, h: 5, w: 5, cout: 12, groups: 6, k: 3, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), true, 1);
    // conv2 of an SPG block: reads its own tensor, writes the second half of the concat
    check_conv_bn_eval(s, conv::Slices { x_channels: 12, x_first: 0, y_channels: 24, y_first: 12 }, true, 2);
    // reading a middle slice, stride 2, odd sizes, no ReLU
    let s = ConvShape { n: 2, cin: 6, h: 7, w: 6, cout: 10, groups: 2, k: 3, stride: 2 };
    check_conv_bn_eval(s, conv::Slices { x_channels: 11, x_first: 3, y_channels: 13, y_first: 1 }, false, 3);
    // grouped 3x3, stride 1, on a 4x4 map, writing a slice
    let s = ConvShape { n: 3, cin: 12, h: 4, w: 4, cout: 12, groups: 3, k: 3, stride: 1 };
    check_conv_bn_eval(s, conv::Slices { x_channels: 12, x_first: 0, y_channels: 24, y_first: 12 }, true, 14);
    // four-pixel runs (forward_rows_bn) reading a middle slice and writing one
    let s = ConvShape { n: 2, cin: 16, h: 3, w: 8, cout: 8, groups: 2, k: 3, stride: 1 };
    check_conv_bn_eval(s, conv::Slices { x_channels: 20, x_first: 4, y_channels: 12, y_first: 2 }, true, 18);
    // transposed weights (forward_wt_bn) writing a slice
    let s = ConvShape { n: 3, cin: 8, h: 5, w: 5, cout: 8, groups: 2, k: 3, stride: 1 };
    check_conv_bn_eval(s, conv::Slices { x_channels: 8, x_first: 0, y_channels: 16, y_first: 8 }, true, 17);
    // a linear layer as a 1x1 conv on 1x1 maps (fc + BatchNorm1d + ReLU of the head)
    let s = ConvShape { n: 5, cin: 33, h: 1, w: 1, cout: 70, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), true, 4);
    // wide 1x1 convs take the lanes-over-channels kernel: ragged rows and pixels, slices
    let s = ConvShape { n: 3, cin: 21, h: 3, w: 5, cout: 130, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices { x_channels: 25, x_first: 2, y_channels: 131, y_first: 1 }, true, 5);
    let s = ConvShape { n: 7, cin: 40, h: 1, w: 1, cout: 200, groups: 2, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), false, 6);
    // dense layers (input channels in fours) take the vec4 GEMM with the BN epilogue:
    // ragged batch and outputs, with and without ReLU; and one written into a slice (conv path)
    let s = ConvShape { n: 5, cin: 36, h: 1, w: 1, cout: 70, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), true, 7);
    let s = ConvShape { n: 19, cin: 8, h: 1, w: 1, cout: 13, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), false, 8);
    check_conv_bn_eval(s, conv::Slices { x_channels: 8, x_first: 0, y_channels: 20, y_first: 7 }, true, 9);
    // ... and outputs in fours
    let s = ConvShape { n: 5, cin: 36, h: 1, w: 1, cout: 72, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), true, 12);
    let s = ConvShape { n: 19, cin: 8, h: 1, w: 1, cout: 16, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), false, 13);
    // ... and the batch in fours too: the input transposed, matmul_tn4_bn_cols (with
    // subgroups matmul_nt4_bn_sg reads x and w as they lie)
    let s = ConvShape { n: 12, cin: 36, h: 1, w: 1, cout: 72, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), true, 15);
    // 1x1 convs on maps of 4k pixels take the pointwise vec4 GEMM with the BN epilogue
    let s = ConvShape { n: 3, cin: 5, h: 2, w: 2, cout: 19, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), true, 10);
    let s = ConvShape { n: 2, cin: 9, h: 4, w: 3, cout: 6, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), false, 11);
    // channels in fours: the weights transposed, matmul_tn4_bn (a ragged row tile of 12; with
    // subgroups matmul_nn4_bn_sg reads them as they lie)
    let s = ConvShape { n: 3, cin: 8, h: 2, w: 2, cout: 12, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), true, 16);
}
