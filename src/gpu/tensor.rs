//! Tensors: views of f32 (or u32) values in storage buffers, with a logical shape.

use super::kernel::UNIFORM_VEC4S;
use std::num::NonZeroU64;
use std::sync::Arc;

/// A view of `len` f32 (or u32) values in a storage buffer, with a logical shape.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub buffer: Arc<wgpu::Buffer>,
    /// Offset in bytes; a multiple of the adapter's storage offset alignment.
    pub offset: u64,
    pub shape: Vec<usize>,
}

impl Tensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * 4
    }
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: NonZeroU64::new(self.bytes().max(4)),
        })
    }
    /// The binding of a tensor read as Access::Uniform: UNIFORM_VEC4S vec4s from its start
    /// (see Gpu::uniform_view).
    pub fn uniform_binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: NonZeroU64::new(UNIFORM_VEC4S as u64 * 16),
        })
    }
    /// The `len` values from value `from` on, as a flat tensor on the same storage.
    pub fn slice(&self, from: usize, len: usize) -> Tensor {
        Tensor { buffer: self.buffer.clone(), offset: self.offset + from as u64 * 4, shape: vec![len] }
    }
    /// Same storage, another shape with the same number of values.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), self.len(), "reshape changes the size");
        Tensor { buffer: self.buffer.clone(), offset: self.offset, shape: shape.to_vec() }
    }
}
