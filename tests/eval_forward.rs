//! The eval graph (conv + BN + ReLU fused, conv2 writing into the concat buffer, fc + BN1d
//! fused) against a plain f64 CPU forward of the whole network, layer by layer, with random
//! weights and running statistics far from the initial 0 / 1.

mod common;
use common::*;
use pollster::block_on;
use rand::Rng;
use spgnet::checkpoint::Checkpoint;
use spgnet::model::{ConvBnDef, ModelConfig, Skip, Variant};
use spgnet::network::{DeviceState, Evaluator};
use spgnet::ops::batchnorm::{BnShape, EPS};
use spgnet::ops::conv::ConvShape;
use spgnet::ops::pool::PoolShape;
use spgnet::reference as cpu;
use std::collections::BTreeMap;

struct Cpu<'a> {
    t: &'a BTreeMap<String, Vec<f32>>,
    n: usize,
}

impl Cpu<'_> {
    fn get(&self, name: &str) -> Vec<f64> {
        f64s(&self.t[name])
    }
    fn bn(&self, prefix: &str, x: &[f64], c: usize, hw: usize, relu: bool) -> Vec<f64> {
        let s = BnShape { n: self.n, c, hw };
        let g = |f: &str| self.get(&format!("{prefix}.{f}"));
        let y = cpu::bn_normalize(&s, x, &g("running_mean"), &g("running_var"), &g("weight"), &g("bias"), EPS as f64);
        if relu {
            cpu::relu(&y)
        } else {
            y
        }
    }
    /// conv -> BN -> ReLU on x [n, cin, h, w]; returns the output and its size.
    fn conv_bn(&self, d: &ConvBnDef, x: &[f64], h: usize) -> (Vec<f64>, usize) {
        let s = ConvShape { n: self.n, cin: d.cin, h, w: h, cout: d.cout, groups: d.groups, k: d.k, stride: d.stride };
        let z = cpu::conv_forward(&s, x, &self.get(&d.weight));
        (self.bn(&d.bn, &z, d.cout, s.oh() * s.ow(), d.relu), s.oh())
    }
}

#[test]
fn fused_eval_graph_matches_a_plain_cpu_forward() {
    // 12x12: stage 1 on 2x2 maps (the tiny-map GEMMs), stages 2 and 3 on 1x1; 32x32: stage 1
    // on 4x4 maps (the tiled and lanes-over-channels kernels), stage 2 tiny, stage 3 dense.
    check_eval_graph(3, 12);
    check_eval_graph(2, 32);
}

fn check_eval_graph(n: usize, size: usize) {
    let config = ModelConfig::new(Variant::S2P6, 3, 10);
    let mut ck = Checkpoint::initialized(config, 5);
    let mut r = rng(9);
    // Make every BN matter: statistics and affine away from the identity.
    for (name, v) in ck.tensors.iter_mut() {
        if name.ends_with("running_mean") || name.ends_with(".bias") {
            v.iter_mut().for_each(|x| *x = r.random_range(-0.5..0.5));
        } else if name.ends_with("running_var") {
            v.iter_mut().for_each(|x| *x = r.random_range(0.01..0.05));
        } else if name.ends_with("bn.weight") || name.contains(".bn.") && name.ends_with("weight") {
            v.iter_mut().for_each(|x| *x = r.random_range(0.5..1.5));
        }
    }
    let g = gpu();
    let state = DeviceState::new(g, &ck).unwrap();
    let eval = Evaluator::new(g, &state, n, (size, size), 0.0).unwrap();
    let input = random(&mut r, n * 3 * size * size);
    let got = block_on(eval.logits(g, &input)).unwrap();

    let c = Cpu { t: &ck.tensors, n };
    let arch = &state.arch;
    let (mut x, mut h) = (f64s(&input), size);
    for d in &arch.stem {
        (x, h) = c.conv_bn(d, &x, h);
    }
    for b in &arch.blocks {
        let (a, _) = c.conv_bn(&b.conv_in, &x, h);
        let (o1, h1) = c.conv_bn(&b.conv1, &a, h);
        let (o2, _) = c.conv_bn(&b.conv2, &o1, h1);
        let (out, _) = c.conv_bn(&b.conv_out, &cpu::concat(n, &o1, &o2), h1);
        let shortcut = match &b.skip {
            Skip::Identity => x.clone(),
            Skip::Downsample(d0, d1) => {
                let (s0, hs) = c.conv_bn(d0, &x, h);
                c.conv_bn(d1, &s0, hs).0
            }
            Skip::Project(d) => c.conv_bn(d, &x, h).0,
        };
        x = cpu::relu(&cpu::add(&out, &shortcut));
        h = h1;
    }
    (x, h) = c.conv_bn(&arch.conv_last, &x, h);
    let ch = arch.conv_last.cout;
    let pooled = cpu::gap_forward(&PoolShape::global(n, ch, h, h), &x);
    let fc_w = c.get("fc.weight");
    let width = fc_w.len() / ch;
    let fc = cpu::linear_forward(n, ch, width, &pooled, &fc_w);
    let act = c.bn("bn", &fc, width, 1, true);
    let want = cpu::linear_forward(n, width, 10, &act, &c.get("linear.weight"));
    assert_close(&format!("eval logits at {size}x{size}"), &got, &want, 1e-4);

    // Weights written on the device (as a training step or the EMA does): after
    // weights_changed the evaluator re-lays them out (its dense layers read a transposed copy)
    // and agrees with a fresh one.
    let mut params = g.read(&state.params).unwrap();
    params.iter_mut().enumerate().for_each(|(i, v)| *v *= 1.0 + 0.2 * ((i % 7) as f32 - 3.0) / 3.0);
    g.write(&state.params, &params);
    eval.weights_changed();
    let again = block_on(eval.logits(g, &input)).unwrap();
    let fresh = block_on(Evaluator::new(g, &state, n, (size, size), 0.0).unwrap().logits(g, &input)).unwrap();
    assert!(!eval.graph.prepare.is_empty(), "the dense layers should read transposed weights");
    assert_eq!(again, fresh, "logits after weights_changed");
    assert_ne!(again, got, "the new weights should change the logits");
}
