//! BatchNorm training forward and backward (fused ReLU, concat slices, two-term gradients).

use super::*;
use spgnet::ops::batchnorm::{self, BnIo, BnShape};
use spgnet::reference as cpu;

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
    let mut launches = batchnorm::forward_train(
        g,
        &p,
        &s,
        &xt,
        &saved,
        (&rm, &rv),
        (&gt, &bt),
        &y,
        io.y_copy.then_some(&y_copy),
        io.residual.then_some(&shortcut_t),
    );
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
    let outside = |v: &[f32]| -> Vec<f32> {
        v.iter().enumerate().filter(|(i, _)| !(io.first..io.first + s.c).contains(&(i / s.hw % io.total))).map(|(_, v)| *v).collect()
    };
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
    // The statistics are summed over values less one of the channel's own (shifted one-pass
    // sums): values near 30 with a spread of 0.1 (variance 0.0033) keep the precision f32 gives
    // them, where a one-pass E[x^2] - E[x]^2 of the raw values sums squares near 900 to totals
    // whose rounding (0.1 and more) exceeds the variance itself. All three layouts (a workgroup
    // per channel, a lane per channel, a lane per four channels), vec4 and scalar.
    for (i, s) in [
        BnShape { n: 40, c: 3, hw: 49 },
        BnShape { n: 21, c: 5, hw: 64 },
        BnShape { n: 16, c: 33, hw: 1 },
        BnShape { n: 7, c: 4, hw: 12 },
        BnShape { n: 16, c: 36, hw: 1 },
    ]
    .into_iter()
    .enumerate()
    {
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
        // BatchNorm1d with channels in fours: a lane per four channels (quads), in every role
        (BnShape { n: 13, c: 32, hw: 1 }, true, BnIo { total: 64, first: 0, y_copy: true, dy_sum: true, residual: false }),
        (BnShape { n: 13, c: 32, hw: 1 }, true, BnIo { total: 64, first: 32, y_copy: false, dy_sum: false, residual: false }),
        (BnShape { n: 13, c: 36, hw: 1 }, false, BnIo { total: 36, first: 0, y_copy: false, dy_sum: false, residual: true }),
        // ... not where the slice does not start at a multiple of four channels
        (BnShape { n: 13, c: 32, hw: 1 }, true, BnIo { total: 66, first: 34, y_copy: false, dy_sum: true, residual: false }),
    ];
    assert!(cases.iter().any(|(s, _, io)| batchnorm::quads(s, io)) && cases.iter().any(|(s, _, io)| s.hw == 1 && !batchnorm::quads(s, io)));
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
        // BatchNorm1d with channels in fours (a lane per four channels), a ragged lane count
        (BnShape { n: 16, c: 44, hw: 1 }, true),
        (BnShape { n: 3, c: 8, hw: 1 }, false),
        // more images than the reduction and elementwise workgroups have lanes, ragged
        (BnShape { n: 37, c: 6, hw: 6 }, true),
        // planes of 4 and 16 pixels take the vec4 kernels, also with ragged image counts
        (BnShape { n: 37, c: 5, hw: 4 }, false),
        (BnShape { n: 19, c: 3, hw: 16 }, true),
        (BnShape { n: 1, c: 2, hw: 4 }, true),
        // planes of up to 4 V have their length built into the pipeline (PLANE_V); longer
        // ones (17 V here, a lane per channel; 25 and 49 above) read it from the uniform
        (BnShape { n: 3, c: 4, hw: 68 }, true),
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
