//! A recorded forward (and in training, backward) pass of the whole network, built once per
//! (batch, input size, mode): it reads like the network diagram, stem to head.

use super::layers::{Block, Builder, ConvBn, Grad, Head};
use super::{DeviceState, Mode};
use crate::gpu::{Gpu, Launch, Tensor};
use crate::ops::batchnorm::BnIo;
use anyhow::{anyhow, bail, Result};
use std::sync::Arc;

/// A recorded forward (and in training, backward) pass for one batch size and input size.
pub struct Graph {
    pub mode: Mode,
    pub input: Tensor,
    pub logits: Tensor,
    /// Eval graphs: launches that only re-lay out weights (Launch::weight_layout), to run
    /// before the forward whenever the weights have changed; training graphs keep them in
    /// `forward`, since every step changes the weights.
    pub prepare: Vec<Launch>,
    pub forward: Vec<Launch>,
    pub backward: Vec<Launch>,
    /// Gradient of the loss with respect to the logits (training graphs).
    pub dlogits: Option<Tensor>,
    dropout: Option<Arc<wgpu::Buffer>>,
}

impl Graph {
    /// Build the graph of `state`'s network for `batch` images of `size` (height, width).
    pub fn build(gpu: &Gpu, state: &DeviceState, mode: Mode, batch: usize, size: (usize, usize), dropout: f32) -> Result<Graph> {
        let cfg = &state.arch.config;
        if batch == 0 || size.0 == 0 || size.1 == 0 {
            bail!("batch and input size must be positive");
        }
        if mode == Mode::Train && batch < 2 {
            let sizes = state.arch.feature_sizes(size.0.min(size.1));
            if sizes.last() == Some(&1) {
                bail!("batch 1 cannot train at {}x{}: the last stage's maps are 1x1, so BatchNorm would see one value per channel; use a batch of at least 2", size.0, size.1);
            }
        }
        let mut b = Builder { gpu, state, mode, forward: Vec::new(), backward: Vec::new() };
        let input = b.alloc(&[batch, cfg.in_channels, size.0, size.1], "input");
        let arch = &state.arch;
        let stem0 = ConvBn::forward(&mut b, &arch.stem[0], &input);
        // The first block's input gradient comes back as two terms, which stem1's BN sums.
        let stem1 = match mode {
            Mode::Train => {
                let def = &arch.stem[1];
                let stem_out = b.alloc(&ConvBn::shape(def, &stem0.y).output_shape(), &def.bn);
                ConvBn::forward_into(&mut b, def, &stem0.y, Some((&stem_out, BnIo { dy_sum: true, ..BnIo::whole(def.cout) })), None)
            }
            Mode::Eval => ConvBn::forward(&mut b, &arch.stem[1], &stem0.y),
        };
        let mut blocks: Vec<Block> = Vec::new();
        for def in &arch.blocks {
            let x = blocks.last().map_or(stem1.y.clone(), |blk| blk.y.clone());
            let m = b.mark();
            blocks.push(Block::forward(&mut b, def, &x));
            b.tag(m, &def.name);
        }
        let conv_last = ConvBn::forward(&mut b, &arch.conv_last, &blocks.last().unwrap().y);
        let m = b.mark();
        let head = Head::forward(&mut b, &conv_last.y, dropout);
        b.tag(m, "head");
        let mut dlogits = None;
        if mode == Mode::Train {
            let d = b.alloc(&head.logits.shape, "dlogits");
            let m = b.mark();
            let mut dy = head.backward(&mut b, &d);
            b.tag(m, "head");
            dy = conv_last.backward(&mut b, &dy, None, true).unwrap();
            let mut grad = Grad::One(dy);
            for (blk, def) in blocks.iter().zip(&arch.blocks).rev() {
                let m = b.mark();
                grad = blk.backward(&mut b, &grad);
                b.tag(m, &def.name);
            }
            let Grad::Sum(main, skip) = grad else { bail!("{:?}: a network without SPG blocks", cfg.variant) };
            let dy = stem1.backward(&mut b, &main, Some(&skip), true).unwrap();
            stem0.backward(&mut b, &dy, None, false); // the image needs no gradient
            dlogits = Some(d);
        }
        // Problems too big for the adapter (grid or binding limits) surface here, before any step.
        if let Some((ratio, what)) = gpu.take_oversize() {
            let fit = (batch as f64 / ratio).floor() as usize;
            let advice = match fit {
                0 => "even batch 1 does not fit: use a smaller input --size".to_string(),
                f => format!("use --batch {f} or less (halve it if the GPU then runs out of memory)"),
            };
            bail!("batch {batch} at {}x{} does not fit this adapter: {what}; {advice}", size.0, size.1);
        }
        gpu.check().map_err(|e| anyhow!("batch {batch} at {}x{}: {e}", size.0, size.1))?;
        let (prepare, forward) = match mode {
            Mode::Eval => b.forward.into_iter().partition(|l| l.weight_layout),
            Mode::Train => (Vec::new(), b.forward),
        };
        Ok(Graph {
            mode,
            input,
            logits: head.logits.clone(),
            prepare,
            forward,
            backward: b.backward,
            dlogits,
            dropout: head.dropout.clone(),
        })
    }

    /// Dropout draws a new mask each step from this seed.
    pub fn set_dropout_seed(&self, gpu: &Gpu, seed: u32) {
        if let Some(p) = &self.dropout {
            crate::ops::elementwise::set_dropout_seed(gpu, p, seed);
        }
    }
}
