//! Fault injection for tests/errors.rs: there is no way to lose a real GPU on demand, so
//! SPGNET_TEST_LOSE_DEVICE_AT_STEP=N destroys the device before step N. A run must then end in
//! a clear error with the checkpoints of its finished epochs intact.

use crate::gpu::Gpu;

pub(super) struct Faults {
    lose_device_at: Option<usize>,
}

impl Faults {
    pub fn from_env() -> Faults {
        Faults { lose_device_at: std::env::var("SPGNET_TEST_LOSE_DEVICE_AT_STEP").ok().and_then(|v| v.parse().ok()) }
    }

    /// Called before every training step.
    pub fn before_step(&self, gpu: &Gpu, step: usize) {
        if self.lose_device_at == Some(step) {
            gpu.device.destroy();
        }
    }
}
