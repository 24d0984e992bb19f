//! Global, max and average pooling and their backward passes.

use super::*;
use spgnet::ops::pool::{self, PoolShape};
use spgnet::reference as cpu;

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
