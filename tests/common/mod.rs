//! Helpers shared by the GPU tests: one device per test binary, random data, error bounds.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use spgnet::gpu::Gpu;
use std::sync::OnceLock;

/// The adapter the tests run on. With no adapter the tests fail (never skip): CI must have one.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let g = Gpu::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e:#}"));
        eprintln!("adapter: {}", g.describe());
        g
    })
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

pub fn random(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// max |got - want| / max |want| <= tol: the error relative to the tensor's scale.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (*g as f64 - w).abs();
        assert!(e.is_finite(), "{what}: non-finite value {g} at {i}");
        if e > worst {
            worst = e;
            at = i;
        }
    }
    let rel = worst / scale;
    assert!(rel <= tol, "{what}: relative error {rel:.3e} > {tol:.0e} at index {at} (got {}, want {})", got[at], want[at]);
}
