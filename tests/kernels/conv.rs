//! Grouped convolution: every forward, input-gradient and weight-gradient kernel, the tiny-map
//! GEMMs, and eval's conv + BN epilogue with channel slices.

use super::*;
use rand::Rng;
use spgnet::ops::batchnorm::{self, BnShape};
use spgnet::ops::conv::{self, ConvShape};
use spgnet::ops::gemm;
use spgnet::reference as cpu;

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
    let mut launches =
        [conv::forward(g, &s, &xt, &wt, &y), conv::backward_data(g, &s, &dyt, &wt, &dx)].into_iter().flatten().collect::<Vec<_>>();
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
    let nhwc = s.cog().is_multiple_of(4) && s.cig().is_multiple_of(4);
    let dw_nhwc = g.zeros(&s.weight_shape(), "dw_nhwc");
    if nhwc {
        launches.extend(conv::backward_weight_nhwc(g, &s, gemm::Tile { tm: 8, nv: 2, wg: 8 }, &dyt, &xt, &dw_nhwc));
    }
    // the forward on runs of four output pixels, 16, 12 and 8 output channels per lane (ragged
    // where cog is not), one run per lane or two neighbouring ones where they divide a row, or
    // on maps four pixels wide two or four rows (the column kernels); stride 1, or stride 2 on
    // an input twice as wide as the output
    let column = |nv: usize| s.stride == 1 && s.ow() == 4 && s.oh().is_multiple_of(nv);
    let fwd_row_tiles: Vec<gemm::Tile> = [(16, 1), (8, 1), (16, 2), (8, 2), (12, 2), (12, 1), (8, 4), (16, 4)]
        .into_iter()
        .filter(|&(_, nv)| (s.ow() / 4).is_multiple_of(nv) || column(nv))
        .map(|(tm, nv)| gemm::Tile { tm, nv: nv as u32, wg: 8 })
        .collect();
    let fwd_rows =
        s.k == 3 && s.cog().is_multiple_of(4) && ((s.stride == 1 && s.w.is_multiple_of(4)) || (s.stride == 2 && s.w.is_multiple_of(8)));
    let y_rows: Vec<Tensor> = fwd_row_tiles.iter().map(|_| g.zeros(&s.output_shape(), "y_rows")).collect();
    if fwd_rows {
        for (tile, y) in fwd_row_tiles.iter().zip(&y_rows) {
            launches.extend(conv::forward_rows(g, &s, conv::Slices::whole(&s), *tile, &xt, &wt, None, y));
        }
    }
    // ... and the input gradient so (input channels per group in fours)
    // (stride 2: one run of eight input columns per lane)
    let bwd_rows =
        s.k == 3 && s.cig().is_multiple_of(4) && ((s.stride == 1 && s.w.is_multiple_of(4)) || (s.stride == 2 && s.w.is_multiple_of(8)));
    let bwd_row_tiles: Vec<gemm::Tile> = fwd_row_tiles.iter().filter(|t| s.stride == 1 || t.nv == 1).copied().collect();
    let dx_rows: Vec<Tensor> = bwd_row_tiles.iter().map(|_| g.zeros(&s.input_shape(), "dx_rows")).collect();
    if bwd_rows {
        for (tile, dx) in bwd_row_tiles.iter().zip(&dx_rows) {
            launches.extend(conv::backward_data_rows(g, &s, *tile, &dyt, &wt, dx));
        }
    }
    // the weight gradient on the same row runs, straight from NCHW (ragged channel tiles)
    let row_tiles = [gemm::Tile { tm: 8, nv: 2, wg: 8 }, gemm::Tile { tm: 4, nv: 4, wg: 8 }];
    let by_rows = s.k == 3 && ((s.stride == 1 && s.w.is_multiple_of(4)) || (s.stride == 2 && s.w.is_multiple_of(8)));
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
        for (tile, dx) in bwd_row_tiles.iter().zip(&dx_rows) {
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
        // depthwise with stride 1 on a ragged map; and enough pixels that the weight gradient
        // splits the batch (partial sums added by sum_splits)
        ConvShape { n: 3, cin: 6, h: 5, w: 3, cout: 6, groups: 6, k: 3, stride: 1 },
        ConvShape { n: 9, cin: 10, h: 12, w: 11, cout: 10, groups: 10, k: 3, stride: 1 },
        ConvShape { n: 11, cin: 9, h: 1, w: 2, cout: 9, groups: 9, k: 3, stride: 2 },
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
        // a wide 1x1 conv on 15 pixels: the transposed weights (forward_wt), 16-row tiles
        ConvShape { n: 3, cin: 20, h: 3, w: 5, cout: 128, groups: 1, k: 1, stride: 1 },
        // (matmul_nt4_images with ragged row and column tiles, 8 x 8 or 16 x 4)
        ConvShape { n: 3, cin: 12, h: 4, w: 2, cout: 20, groups: 1, k: 1, stride: 1 },
        // with subgroups the input gradient's rows (64 input channels) in 32-row tiles, the
        // weight gradient's (20 output channels) in a ragged 16-row tile; a dense layer of 48
        // outputs, whose weight gradient takes 16 x 8 tiles
        ConvShape { n: 3, cin: 64, h: 2, w: 2, cout: 20, groups: 1, k: 1, stride: 1 },
        ConvShape { n: 5, cin: 20, h: 1, w: 1, cout: 48, groups: 1, k: 1, stride: 1 },
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
        // stride 2 on row runs (forward_rows_s2): the input width in eights, odd and even
        // heights, ragged output channel tiles, the stem's 3 -> 12 and 12 -> 24, one and two
        // runs per lane
        ConvShape { n: 3, cin: 5, h: 7, w: 8, cout: 12, groups: 1, k: 3, stride: 2 },
        ConvShape { n: 2, cin: 16, h: 8, w: 16, cout: 24, groups: 2, k: 3, stride: 2 },
        ConvShape { n: 2, cin: 12, h: 6, w: 16, cout: 24, groups: 1, k: 3, stride: 2 },
        ConvShape { n: 2, cin: 3, h: 9, w: 24, cout: 20, groups: 1, k: 3, stride: 2 },
        ConvShape { n: 3, cin: 24, h: 8, w: 8, cout: 24, groups: 6, k: 3, stride: 2 },
        // (an odd height with input channels in fours: the input gradient's last row pair is
        // one row, which meets no output row below it)
        ConvShape { n: 2, cin: 8, h: 7, w: 16, cout: 12, groups: 2, k: 3, stride: 2 },
        // ... whose weight gradient (lanes over batch slices) sums 7 slices of up to 3 images
        ConvShape { n: 19, cin: 32, h: 4, w: 8, cout: 32, groups: 1, k: 3, stride: 2 },
        // maps four pixels wide: whole 4x4 planes per lane (stage 1's grouped convs), two rows
        // of a 6-row map, one of a 5-row map; ragged channel tiles
        ConvShape { n: 4, cin: 48, h: 4, w: 4, cout: 48, groups: 6, k: 3, stride: 1 },
        ConvShape { n: 3, cin: 16, h: 4, w: 4, cout: 24, groups: 2, k: 3, stride: 1 },
        ConvShape { n: 2, cin: 8, h: 6, w: 4, cout: 12, groups: 1, k: 3, stride: 1 },
        ConvShape { n: 2, cin: 12, h: 5, w: 4, cout: 8, groups: 1, k: 3, stride: 1 },
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
        // 16 rows of Wt per group (the weight gradient's 16 x 8 tiles with subgroups)
        ConvShape { n: 5, cin: 24, h: 2, w: 2, cout: 24, groups: 6, k: 3, stride: 1 },
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
    let x: Vec<f64> =
        (0..n).flat_map(|i| x_wide[(i * slices.x_channels + slices.x_first) * hw..][..s.cin * hw].to_vec()).map(f64::from).collect();
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
    // ... and with stride 2 (forward_rows_s2_bn), an odd height, one and two runs per lane
    let s = ConvShape { n: 2, cin: 8, h: 5, w: 16, cout: 12, groups: 2, k: 3, stride: 2 };
    check_conv_bn_eval(s, conv::Slices { x_channels: 11, x_first: 2, y_channels: 14, y_first: 1 }, true, 21);
    let s = ConvShape { n: 3, cin: 3, h: 8, w: 8, cout: 12, groups: 1, k: 3, stride: 2 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), false, 22);
    // transposed weights (forward_wt_bn) writing a slice
    let s = ConvShape { n: 3, cin: 8, h: 5, w: 5, cout: 8, groups: 2, k: 3, stride: 1 };
    check_conv_bn_eval(s, conv::Slices { x_channels: 8, x_first: 0, y_channels: 16, y_first: 8 }, true, 17);
    // depthwise (the strided skip path's first conv), reading and writing slices
    let s = ConvShape { n: 3, cin: 7, h: 5, w: 6, cout: 7, groups: 7, k: 3, stride: 2 };
    check_conv_bn_eval(s, conv::Slices { x_channels: 9, x_first: 1, y_channels: 10, y_first: 3 }, false, 19);
    let s = ConvShape { n: 9, cin: 4, h: 3, w: 3, cout: 4, groups: 4, k: 3, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), true, 20);
    // a linear layer as a 1x1 conv on 1x1 maps (fc + BatchNorm1d + ReLU of the head)
    let s = ConvShape { n: 5, cin: 33, h: 1, w: 1, cout: 70, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices::whole(&s), true, 4);
    // wide 1x1 convs on maps not in fours: with output channels in fours the transposed
    // weights (forward_wt_bn), else the lanes-over-channels kernel: ragged rows and pixels, slices
    let s = ConvShape { n: 3, cin: 20, h: 3, w: 5, cout: 128, groups: 1, k: 1, stride: 1 };
    check_conv_bn_eval(s, conv::Slices { x_channels: 24, x_first: 4, y_channels: 132, y_first: 4 }, false, 23);
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
