//! The model's state on the GPU: arenas (one buffer each for parameters, gradients, momentum
//! and running statistics) so one SGD dispatch updates everything, with views by tensor name.

use crate::checkpoint::{Checkpoint, Metadata};
use crate::gpu::{Gpu, Launch, Tensor};
use crate::model::Architecture;
use crate::ops::sgd;
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug)]
struct Slot {
    trainable: bool,
    offset: usize,
    shape: Vec<usize>,
}

/// Model state on the GPU.
pub struct DeviceState {
    pub arch: Architecture,
    pub params: Tensor,
    pub grads: Tensor,
    pub velocity: Tensor,
    pub stats: Tensor,
    /// Parameters [0, weights_len) are conv and linear weights; the rest BN gamma and beta.
    pub weights_len: usize,
    slots: HashMap<String, Slot>,
    order: Vec<String>,
}

impl DeviceState {
    pub fn new(gpu: &Gpu, ck: &Checkpoint) -> Result<DeviceState> {
        let arch = Architecture::new(ck.config.clone());
        let align = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let mut defs = arch.tensors();
        let order: Vec<String> = defs.iter().map(|t| t.name.clone()).collect();
        // Weights first, so weight decay can be limited to them with one split point.
        defs.sort_by_key(|t| (!t.trainable, !t.is_weight));
        let (mut slots, mut sizes, mut weights_len) = (HashMap::new(), [0usize; 2], 0);
        for t in &defs {
            let arena = if t.trainable { 0 } else { 1 };
            if t.trainable && t.is_weight {
                weights_len = sizes[0] + t.len();
            }
            slots.insert(t.name.clone(), Slot { trainable: t.trainable, offset: sizes[arena], shape: t.shape.clone() });
            sizes[arena] += t.len().div_ceil(align) * align;
        }
        let max = gpu.limits.max_storage_buffer_binding_size as usize;
        if sizes[0] * 4 > max {
            bail!("the model's {} parameters exceed this adapter's storage binding limit of {max} bytes", sizes[0]);
        }
        let mut host = [vec![0f32; sizes[0]], vec![0f32; sizes[1]]];
        for t in &defs {
            let v = ck.tensors.get(&t.name).ok_or_else(|| anyhow!("checkpoint has no tensor '{}'", t.name))?;
            let s = &slots[&t.name];
            host[!s.trainable as usize][s.offset..s.offset + v.len()].copy_from_slice(v);
        }
        Ok(DeviceState {
            params: gpu.upload(&host[0], &[sizes[0]], "params"),
            grads: gpu.zeros(&[sizes[0]], "grads"),
            velocity: gpu.zeros(&[sizes[0]], "velocity"),
            stats: gpu.upload(&host[1], &[sizes[1]], "running_stats"),
            arch,
            weights_len,
            slots,
            order,
        })
    }

    fn view(&self, arena: &Tensor, name: &str) -> Tensor {
        let s = self.slots.get(name).unwrap_or_else(|| panic!("no tensor {name}"));
        Tensor { buffer: arena.buffer.clone(), offset: s.offset as u64 * 4, shape: s.shape.clone() }
    }
    pub fn param(&self, name: &str) -> Tensor {
        self.view(&self.params, name)
    }
    pub fn grad(&self, name: &str) -> Tensor {
        self.view(&self.grads, name)
    }
    pub fn stat(&self, name: &str) -> Tensor {
        self.view(&self.stats, name)
    }

    /// Names of trainable tensors, in state-dict order.
    pub fn trainable_names(&self) -> Vec<String> {
        self.order.iter().filter(|n| self.slots[*n].trainable).cloned().collect()
    }

    async fn unpack(&self, gpu: &Gpu, arena: &Tensor, trainable: bool) -> Result<BTreeMap<String, Vec<f32>>> {
        let all = gpu.read_async(arena).await?;
        Ok(self
            .order
            .iter()
            .filter(|n| self.slots[*n].trainable == trainable)
            .map(|n| {
                let s = &self.slots[n];
                let len: usize = s.shape.iter().product();
                (n.clone(), all[s.offset..s.offset + len].to_vec())
            })
            .collect())
    }

    /// Every state tensor read back, as a checkpoint.
    pub async fn to_checkpoint(&self, gpu: &Gpu, meta: Metadata) -> Result<Checkpoint> {
        let mut tensors = self.unpack(gpu, &self.params, true).await?;
        tensors.extend(self.unpack(gpu, &self.stats, false).await?);
        Ok(Checkpoint { config: self.arch.config.clone(), tensors, meta })
    }

    /// A second state with copies of the parameters and running statistics (for a weight EMA);
    /// gradients and momentum are shared, as the copy is only evaluated.
    pub fn shadow(&self, gpu: &Gpu) -> DeviceState {
        let copy = |t: &Tensor, label: &str| {
            let c = gpu.zeros(&t.shape, label);
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(&t.buffer, t.offset, &c.buffer, 0, t.bytes());
            gpu.queue.submit([enc.finish()]);
            c
        };
        DeviceState {
            arch: self.arch.clone(),
            params: copy(&self.params, "ema.params"),
            grads: self.grads.clone(),
            velocity: self.velocity.clone(),
            stats: copy(&self.stats, "ema.stats"),
            weights_len: self.weights_len,
            slots: self.slots.clone(),
            order: self.order.clone(),
        }
    }

    /// Launches that move this (shadow) state towards `live` by an EMA step.
    pub fn ema_from(&self, gpu: &Gpu, live: &DeviceState, decay: f32) -> Vec<Launch> {
        [sgd::ema(gpu, &live.params, &self.params, decay), sgd::ema(gpu, &live.stats, &self.stats, decay)].into_iter().flatten().collect()
    }

    /// Momentum buffers by tensor name (saved for resuming).
    pub async fn read_velocity(&self, gpu: &Gpu) -> Result<BTreeMap<String, Vec<f32>>> {
        self.unpack(gpu, &self.velocity, true).await
    }

    pub fn write_velocity(&self, gpu: &Gpu, values: &BTreeMap<String, Vec<f32>>) -> Result<()> {
        let mut host = vec![0f32; self.velocity.len()];
        for name in self.trainable_names() {
            let s = &self.slots[&name];
            let v = values.get(&name).ok_or_else(|| anyhow!("optimizer state has no momentum for '{name}'"))?;
            let len: usize = s.shape.iter().product();
            if v.len() != len {
                bail!("optimizer state: momentum of '{name}' has {} values, expected {len}", v.len());
            }
            host[s.offset..s.offset + len].copy_from_slice(v);
        }
        gpu.write(&self.velocity, &host);
        Ok(())
    }

    /// The gradients of the last step, by tensor name.
    pub async fn read_grads(&self, gpu: &Gpu) -> Result<BTreeMap<String, Vec<f32>>> {
        self.unpack(gpu, &self.grads, true).await
    }
}
