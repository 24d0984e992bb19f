//! ReLU and its backward, the residual add, flat grids beyond one dimension, dropout.

use super::*;
use spgnet::ops::elementwise;
use spgnet::reference as cpu;

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
fn copy_channels_out_of_a_wider_tensor() {
    // (n, channels, first, c, h, w): vec4 runs; odd pixels per plane (scalar); a slice at the
    // end; a grid of several workgroups
    let g = gpu();
    let mut r = rng(610);
    for (n, channels, first, c, h, w) in [(3, 8, 0, 4, 4, 4), (2, 6, 2, 3, 3, 3), (5, 10, 7, 3, 2, 2), (64, 96, 48, 48, 4, 4)] {
        let src = random(&mut r, n * channels * h * w);
        let st = up(&src, &[n, channels, h, w]);
        let out = g.zeros(&[n, c, h, w], "out");
        g.run(&[elementwise::copy_channels(g, &st, first, &out)]).unwrap();
        let plane = h * w;
        let want: Vec<f64> =
            (0..n * c * plane).map(|i| src[(i / (c * plane)) * channels * plane + first * plane + i % (c * plane)] as f64).collect();
        assert_close(&format!("copy channels {first}..{} of {n}x{channels}x{h}x{w}", first + c), &read(&out), &want, 0.0);
    }
}
