//! The GPU engine: adapter and device, tensors in storage buffers, a pipeline cache and
//! pre-built dispatches ("launches") that a step records into one compute pass. Portable:
//! readbacks are async (`read_async`); native code blocks on them with `read`.

mod kernel;
mod launch;
mod tensor;

use kernel::uniform_vec4_binding;
pub use kernel::{Access, Entry, KernelSpec, Source, UNIFORM_VEC4S};
pub use launch::{grid_1d, record, Launch};
pub use tensor::Tensor;

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The most storage buffers one of spgnet's kernels binds (BatchNorm's backward with a
/// two-term gradient: 9; tests/shaders.rs checks the kernel tables against it). Vulkan, Metal
/// and DX12 adapters offer 31 or more per shader stage; `Gpu` refuses an adapter with fewer.
pub const STORAGE_BUFFERS_NEEDED: u32 = 9;

#[cfg(not(target_arch = "wasm32"))]
/// Which backends `--backend` may name.
pub fn parse_backends(name: &str) -> Result<wgpu::Backends> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => wgpu::Backends::VULKAN,
        "metal" | "mtl" => wgpu::Backends::METAL,
        "dx12" | "d3d12" => wgpu::Backends::DX12,
        "gl" | "gles" | "opengl" => wgpu::Backends::GL,
        "primary" | "auto" => wgpu::Backends::PRIMARY,
        other => bail!("unknown backend '{other}': use vulkan, metal, dx12, gl or auto"),
    })
}

/// The bind group layout and pipeline layout of one list of binding accesses.
type Layout = (wgpu::BindGroupLayout, wgpu::PipelineLayout);

/// A compiled pipeline: (file, entry, appended constants, the bindings' declared access).
type PipelineKey = (String, &'static str, String, Vec<Access>);

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Whether the *_sg kernels run: the adapter has subgroups of at least 8 lanes.
    pub subgroups: bool,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    layouts: Mutex<HashMap<Vec<Access>, Arc<Layout>>>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Set by the device-lost callback.
    lost: Arc<Mutex<Option<String>>>,
    staging: Mutex<Vec<wgpu::Buffer>>,
    unused: Mutex<Option<Tensor>>,
    oversize: Mutex<Option<(f64, String)>>,
    created: AtomicUsize,
    created_bytes: AtomicU64,
}

#[cfg(not(target_arch = "wasm32"))]
const NO_ADAPTER_HELP: &str = "no GPU adapter found: install a Vulkan, Metal or DX12 driver; \
on a CPU-only Linux machine install Mesa's lavapipe (Debian/Ubuntu: apt-get install mesa-vulkan-drivers)";

impl Gpu {
    /// Open the default adapter, honouring WGPU_BACKEND and WGPU_ADAPTER_NAME.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Gpu> {
        Self::with_backend(None)
    }

    /// Open an adapter on the named backend (`vulkan`, `metal`, `dx12`, `gl`, `auto`), or the
    /// environment's choice when `None`. GL is only used when nothing else exists.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_backend(backend: Option<&str>) -> Result<Gpu> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let explicit = match backend {
            Some(name) => Some(parse_backends(name)?),
            None => wgpu::Backends::from_env(),
        };
        desc.backends = explicit.unwrap_or(wgpu::Backends::all());
        let instance = wgpu::Instance::new(desc);
        let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        if adapters.is_empty() {
            bail!("{NO_ADAPTER_HELP}");
        }
        if let Ok(name) = std::env::var("WGPU_ADAPTER_NAME") {
            let want = name.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&want));
            if adapters.is_empty() {
                bail!("WGPU_ADAPTER_NAME='{name}' matches no adapter; run `spgnet info` to list them");
            }
        }
        // Real GPUs first, then CPU (lavapipe), and GL last.
        let rank = |a: &wgpu::Adapter| {
            let i = a.get_info();
            let backend = if i.backend == wgpu::Backend::Gl { 10 } else { 0 };
            let kind = match i.device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Cpu => 3,
                wgpu::DeviceType::Other => 4,
            };
            backend + kind
        };
        adapters.sort_by_key(rank);
        let adapter = adapters.into_iter().next().ok_or_else(|| anyhow!(NO_ADAPTER_HELP))?;
        pollster::block_on(Self::from_adapter(adapter))
    }

    /// The browser's (or the platform's default) high-performance adapter, awaited.
    pub async fn request() -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                anyhow!("no WebGPU adapter ({e}): use a browser with WebGPU enabled (Chrome, Edge, Safari 26, Firefox 141 or newer)")
            })?;
        Self::from_adapter(adapter).await
    }

    /// Adapters this machine offers, one line each.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn list_adapters() -> Vec<String> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all())).iter().map(|a| describe(&a.get_info())).collect()
    }

    /// Open the device on `adapter` with the features spgnet uses where the adapter has them.
    pub async fn from_adapter(adapter: wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let needed = STORAGE_BUFFERS_NEEDED;
        if limits.max_storage_buffers_per_shader_stage < needed {
            bail!(
                "adapter {} offers {} storage buffers per shader stage, spgnet's kernels bind up to {needed}: choose another adapter with --backend (Vulkan, Metal and DX12 offer 31 or more)",
                describe(&info),
                limits.max_storage_buffers_per_shader_stage
            );
        }
        // Subgroups where every subgroup holds a whole 8-lane workgroup (the *_sg kernels);
        // SPGNET_NO_SUBGROUPS=1 runs the plain kernels instead (for A/B runs and tests).
        let subgroups = adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size >= 8
            && std::env::var_os("SPGNET_NO_SUBGROUPS").is_none_or(|v| v.is_empty() || v == "0");
        let mut wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        if subgroups {
            wanted |= wgpu::Features::SUBGROUP;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("spgnet"),
                required_features: adapter.features() & wanted,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("could not open the device on adapter {}", describe(&info)))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let message = match e {
                wgpu::Error::OutOfMemory { .. } => "the GPU ran out of memory: use a smaller --batch (try half)".to_string(),
                e => e.to_string(),
            };
            sink.lock().unwrap().push(message);
        }));
        // Whatever fails after a device loss (a readback, a wait) reports the loss itself.
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = if message.is_empty() { format!("{reason:?}") } else { format!("{reason:?}: {message}") };
            *lost_sink.lock().unwrap() = Some(format!("the GPU device was lost ({why})"));
        });
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            subgroups,
            pipelines: Mutex::default(),
            layouts: Mutex::default(),
            errors,
            lost,
            staging: Mutex::default(),
            unused: Mutex::default(),
            oversize: Mutex::default(),
            created: Default::default(),
            created_bytes: Default::default(),
        })
    }

    pub fn describe(&self) -> String {
        describe(&self.info)
    }

    /// Whether the device was lost (every later operation fails with the loss).
    pub fn is_lost(&self) -> bool {
        self.lost.lock().unwrap().is_some()
    }

    /// Fails with the first validation error wgpu reported since the last check.
    pub fn check(&self) -> Result<()> {
        if let Some(lost) = self.lost.lock().unwrap().clone() {
            bail!("{lost}");
        }
        let mut errs = self.errors.lock().unwrap();
        if let Some(e) = errs.first().cloned() {
            errs.clear();
            let detail: Vec<&str> = e.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            bail!("GPU error: {}", detail.join(" | "));
        }
        Ok(())
    }

    /// Buffers this context has created so far (a training step after the first creates none).
    pub fn buffers_created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }

    /// Bytes of all buffers this context has created so far; none is freed while a model's
    /// graphs live, so after a step and a pass this is the peak (bench).
    pub fn bytes_created(&self) -> u64 {
        self.created_bytes.load(Ordering::Relaxed)
    }

    fn create_buffer(&self, desc: &wgpu::BufferDescriptor) -> wgpu::Buffer {
        self.created.fetch_add(1, Ordering::Relaxed);
        self.created_bytes.fetch_add(desc.size, Ordering::Relaxed);
        let max = self.limits.max_buffer_size;
        if desc.size > max {
            // Too large for the adapter: say by how much (`oversize`), and hand out a small
            // buffer, so the graph under construction fails with that, not a validation dump.
            self.note_oversize(desc.size as f64 / max as f64, &format!("the buffer '{}'", desc.label.unwrap_or("?")), max);
            return self.device.create_buffer(&wgpu::BufferDescriptor { size: 16, ..desc.clone() });
        }
        self.device.create_buffer(desc)
    }

    /// Record that something needed `ratio` times what the adapter allows (`limit` bytes).
    fn note_oversize(&self, ratio: f64, what: &str, limit: u64) {
        let mut o = self.oversize.lock().unwrap();
        if o.as_ref().is_none_or(|(r, _)| ratio > *r) {
            *o = Some((ratio, format!("{what} needs {ratio:.2}x this adapter's limit of {} MiB", limit >> 20)));
        }
    }

    /// The largest factor by which anything built since the last call exceeded the adapter's
    /// buffer limits, with what it was; the errors it caused are cleared with it.
    pub fn take_oversize(&self) -> Option<(f64, String)> {
        let o = self.oversize.lock().unwrap().take();
        if o.is_some() {
            self.errors.lock().unwrap().clear();
        }
        o
    }

    fn new_buffer(&self, bytes: u64, label: &str) -> Arc<wgpu::Buffer> {
        Arc::new(self.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).div_ceil(16) * 16,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A small tensor to bind where a kernel declares a binding that a launch does not use
    /// (WebGPU forbids one buffer in two writable bindings of a dispatch, so the used output
    /// cannot stand in).
    pub fn unused(&self) -> Tensor {
        self.unused.lock().unwrap().get_or_insert_with(|| self.zeros(&[4], "unused binding")).clone()
    }

    /// A zero-filled tensor in its own buffer.
    pub fn zeros(&self, shape: &[usize], label: &str) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor { buffer: self.new_buffer(n as u64 * 4, label), offset: 0, shape: shape.to_vec() }
    }

    pub fn upload(&self, data: &[f32], shape: &[usize], label: &str) -> Tensor {
        assert_eq!(data.len(), shape.iter().product::<usize>(), "upload: data does not fit the shape");
        let t = self.zeros(shape, label);
        self.write(&t, data);
        t
    }

    pub fn upload_u32(&self, data: &[u32], label: &str) -> Tensor {
        let t = self.zeros(&[data.len()], label);
        self.queue.write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
        t
    }

    pub fn write(&self, t: &Tensor, data: &[f32]) {
        assert_eq!(data.len(), t.len(), "write: size mismatch");
        if !data.is_empty() {
            self.queue.write_buffer(&t.buffer, t.offset, bytemuck::cast_slice(data));
        }
    }

    /// Copy a tensor back to the host once all submitted work is done (blocks; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, t: &Tensor) -> Result<Vec<f32>> {
        pollster::block_on(self.read_async(t))
    }

    /// Copy a tensor back to the host once all submitted work is done.
    pub async fn read_async(&self, t: &Tensor) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(&t.buffer, t.offset, t.bytes()).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// `bytes` bytes of `buffer` from `offset`, through a (reused) staging buffer.
    pub async fn read_bytes(&self, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let padded = bytes.div_ceil(4) * 4;
        // Staging buffers are reused: reading a step's loss allocates nothing.
        let reused = {
            let mut pool = self.staging.lock().unwrap();
            pool.iter().position(|b| b.size() >= padded).map(|i| pool.swap_remove(i))
        };
        let staging = reused.unwrap_or_else(|| {
            self.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: padded.next_power_of_two().max(256),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, padded);
        self.queue.submit([enc.finish()]);
        let slice = staging.slice(..padded);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.completion(rx, "reading results back").await?.map_err(|e| self.failure(format!("GPU readback failed: {e}")))?;
        let data = slice.get_mapped_range().map_err(|e| self.failure(format!("GPU readback failed: {e:?}")))?.to_vec();
        staging.unmap();
        self.staging.lock().unwrap().push(staging);
        self.check()?;
        Ok(data[..bytes as usize].to_vec())
    }

    fn layout(&self, bindings: &[Access]) -> Arc<Layout> {
        let mut cache = self.layouts.lock().unwrap();
        cache
            .entry(bindings.to_vec())
            .or_insert_with(|| {
                let storage = |read_only| wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                };
                let mut entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                }];
                for (i, a) in bindings.iter().enumerate() {
                    entries.push(wgpu::BindGroupLayoutEntry {
                        binding: i as u32 + 1,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: match a {
                            Access::Uniform => wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Uniform,
                                has_dynamic_offset: false,
                                min_binding_size: None,
                            },
                            _ => storage(*a == Access::Read),
                        },
                        count: None,
                    });
                }
                let bgl = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries });
                let pl = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: None,
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                Arc::new((bgl, pl))
            })
            .clone()
    }

    /// The compiled pipeline of a kernel; each (file, entry, constants) compiles once.
    pub fn pipeline(&self, spec: &KernelSpec) -> Arc<wgpu::ComputePipeline> {
        self.pipeline_with(spec, &spec.bindings)
    }

    /// The pipeline of `spec` with its bindings declared as `bindings` (see `launch`).
    fn pipeline_with(&self, spec: &KernelSpec, bindings: &[Access]) -> Arc<wgpu::ComputePipeline> {
        let key = (spec.file.to_string(), spec.entry, spec.constants.clone(), bindings.to_vec());
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return p.clone();
        }
        let layout = self.layout(bindings);
        // WebGPU wants the shader's access mode to match the layout's: declare the bindings
        // that `launch` made read-write (aliased buffers) read_write in the source as well.
        let mut source = spec.full_source();
        for (i, (&declared, &bound)) in spec.bindings.iter().zip(bindings).enumerate() {
            if declared != bound {
                let (read, read_write) =
                    (format!("@binding({}) var<storage, read>", i + 1), format!("@binding({}) var<storage, read_write>", i + 1));
                source = source.replace(&read, &read_write);
            }
        }
        for (i, _) in bindings.iter().enumerate().filter(|(_, a)| **a == Access::Uniform) {
            source = uniform_vec4_binding(&source, i + 1);
        }
        let desc = wgpu::ShaderModuleDescriptor { label: Some(spec.file), source: wgpu::ShaderSource::Wgsl(source.into()) };
        // SAFETY: every kernel clamps or masks its own indices (loads use min()/select(),
        // stores are guarded), which tests/kernels.rs proves against the CPU reference on
        // ragged shapes; without wgpu's injected bounds and loop checks lavapipe runs them
        // about 1.3x faster.
        #[cfg(not(target_arch = "wasm32"))]
        let module = unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) };
        // The browser compiles WGSL itself and keeps its own checks.
        #[cfg(target_arch = "wasm32")]
        let module = self.device.create_shader_module(desc);
        let pipeline = Arc::new(self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.entry),
            layout: Some(&layout.1),
            module: &module,
            entry_point: Some(spec.entry),
            compilation_options: Default::default(),
            cache: None,
        }));
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        pipeline
    }

    /// A small uniform buffer holding a kernel's parameters: one of the `#[repr(C)]` structs
    /// that mirror the shaders' uniform structs (ops::*), padded to 16 bytes.
    pub fn params<P: bytemuck::Pod>(&self, params: &P) -> Arc<wgpu::Buffer> {
        let bytes = bytemuck::bytes_of(params);
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().div_ceil(16).max(1) * 16, 0);
        let buf = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: padded.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buf, 0, &padded);
        Arc::new(buf)
    }

    /// Rewrite one field of a launch's parameters (at `offset`, from `std::mem::offset_of!`
    /// on its params struct) before the next submit: a step's learning rate, a dropout seed.
    pub fn write_param<T: bytemuck::Pod>(&self, params: &wgpu::Buffer, offset: usize, value: T) {
        self.queue.write_buffer(params, offset as u64, bytemuck::bytes_of(&value));
    }

    /// Whether `floats` values fit a binding read as Access::Uniform on this adapter.
    pub fn uniform_fits(&self, floats: usize) -> bool {
        floats <= UNIFORM_VEC4S * 4 && self.limits.max_uniform_buffer_binding_size as usize >= UNIFORM_VEC4S * 16
    }

    /// A zeroed tensor of `len` values whose buffer leaves a whole Access::Uniform binding of
    /// room from every offset up to `last_view` (views of it then pass `uniform_view`).
    pub fn zeros_with_uniform_room(&self, len: usize, last_view: usize, label: &str) -> Tensor {
        self.zeros(&[len.max(last_view + UNIFORM_VEC4S * 4)], label).slice(0, len)
    }

    /// Whether a kernel reading the first `floats` values of `t` can bind it as
    /// Access::Uniform: they fit, and the buffer holds a whole uniform binding from t's
    /// (suitably aligned) start (tensors allocated for it are padded to that size).
    pub fn uniform_view(&self, t: &Tensor, floats: usize) -> bool {
        let room = t.buffer.size() >= t.offset + UNIFORM_VEC4S as u64 * 16;
        self.uniform_fits(floats) && room && t.offset.is_multiple_of(self.limits.min_uniform_buffer_offset_alignment as u64)
    }

    /// Build a dispatch of `spec` over `workgroups` with its parameters and tensors.
    pub fn launch(
        &self,
        label: impl Into<String>,
        spec: &KernelSpec,
        params: &Arc<wgpu::Buffer>,
        tensors: &[&Tensor],
        workgroups: [u32; 3],
    ) -> Launch {
        assert_eq!(tensors.len(), spec.bindings.len(), "{}: wrong number of tensors", spec.entry);
        // Too large a problem for this adapter is reported by `check`, like wgpu's own errors.
        let max = self.limits.max_compute_workgroups_per_dimension;
        let mut workgroups = workgroups;
        if workgroups.iter().any(|&w| w > max) {
            self.errors.lock().unwrap().push(format!(
                "{}: a grid of {workgroups:?} workgroups exceeds this adapter's {max} per dimension; use a smaller batch",
                spec.entry
            ));
            workgroups = [0, 0, 0];
        }
        let max_binding = self.limits.max_storage_buffer_binding_size;
        if let Some(t) = tensors.iter().find(|t| t.bytes() > max_binding) {
            self.note_oversize(t.bytes() as f64 / max_binding as f64, &format!("a tensor of shape {:?}", t.shape), max_binding);
            self.errors.lock().unwrap().push(format!(
                "{}: a tensor of shape {:?} needs {} MiB, over this adapter's {} MiB per binding; use a smaller batch",
                spec.entry,
                t.shape,
                t.bytes() >> 20,
                max_binding >> 20
            ));
            return Launch {
                label: label.into(),
                pipeline: self.pipeline(spec),
                bind_group: self.empty_bind_group(spec),
                workgroups: [0, 0, 0],
                params: params.clone(),
                flops: 0.0,
                layer: String::new(),
                weight_layout: false,
            };
        }
        // A tensor read from a buffer that the same dispatch also writes (a conv reading one
        // channel slice of the concat buffer and writing another) is bound read-write as well:
        // WebGPU forbids a buffer in one dispatch as both read-only and writable storage.
        let bindings: Vec<Access> = spec
            .bindings
            .iter()
            .zip(tensors)
            .map(|(&a, t)| {
                let written_too =
                    tensors.iter().zip(&spec.bindings).any(|(u, &b)| b == Access::ReadWrite && Arc::ptr_eq(&u.buffer, &t.buffer));
                if written_too {
                    Access::ReadWrite
                } else {
                    a
                }
            })
            .collect();
        let pipeline = self.pipeline_with(spec, &bindings);
        let layout = self.layout(&bindings);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() }];
        for (i, t) in tensors.iter().enumerate() {
            let resource = if bindings[i] == Access::Uniform {
                assert!(self.uniform_view(t, 0), "{}: binding {} is not a uniform view (see Gpu::uniform_view)", spec.entry, i + 1);
                t.uniform_binding()
            } else {
                t.binding()
            };
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout.0, entries: &entries });
        Launch {
            label: label.into(),
            pipeline,
            bind_group,
            workgroups,
            params: params.clone(),
            flops: 0.0,
            layer: String::new(),
            weight_layout: false,
        }
    }

    /// A bind group that satisfies the layout with tiny buffers (for launches that never run).
    fn empty_bind_group(&self, spec: &KernelSpec) -> wgpu::BindGroup {
        let layout = self.layout(&spec.bindings);
        let dummy = self.zeros(&[4], "unused");
        let params = self.params(&[0u32; 4]);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() }];
        for i in 0..spec.bindings.len() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: dummy.binding() });
        }
        self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout.0, entries: &entries })
    }

    /// Submit launches as one command buffer (one pass) and return without waiting.
    pub fn submit(&self, launches: &[Launch]) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            record(&mut pass, launches);
        }
        self.queue.submit([enc.finish()]);
    }

    /// Submit and wait until the GPU has finished (blocks; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, launches: &[Launch]) -> Result<()> {
        self.submit(launches);
        self.wait()
    }

    /// Wait until the GPU has finished all submitted work.
    pub async fn finish(&self) -> Result<()> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.completion(rx, "finishing its work").await?;
        self.check()
    }

    /// Wait until the GPU has finished all submitted work (blocks; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        pollster::block_on(self.finish())
    }

    /// What a GPU callback sends on `rx`: natively once a poll of the device has run it, in the
    /// browser when the browser calls it.
    async fn completion<T>(&self, rx: futures_channel::oneshot::Receiver<T>, what: &str) -> Result<T> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| self.failure(format!("GPU device lost while {what}: {e}")))?;
        rx.await.map_err(|_| self.failure(format!("the GPU stopped before {what}")))
    }

    /// The error for a failed GPU operation: the device loss when that is the cause.
    fn failure(&self, what: String) -> anyhow::Error {
        anyhow!("{}", self.lost.lock().unwrap().clone().unwrap_or(what))
    }
}

fn describe(i: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?}, driver {} {})", i.name, i.backend, i.device_type, i.driver, i.driver_info)
}
