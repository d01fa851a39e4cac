//! The GPU context: adapter choice (honouring `WGPU_BACKEND`,
//! `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`), device limits, and the cache of
//! compute pipelines keyed by (shader, entry point).
//!
//! Every kernel binds its parameters as a uniform struct at `@binding(0)` and
//! its tensors as storage buffers at `@binding(1..)`, all in `@group(0)`.
//! [`GpuContext::dispatch`] records one compute pass into an encoder the
//! caller owns; nothing is submitted or read back per op.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::tensor::BufferPool;
use crate::error::{Result, SgrafError};

/// A WGSL source file and the name it is cached under.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File stem, e.g. `"linear"` for `shaders/linear.wgsl`.
    pub name: &'static str,
    /// The WGSL text (`include_str!`).
    pub source: &'static str,
    /// Compile without wgpu's injected runtime checks (index clamping, loop
    /// bounding, division guards). Only for shaders whose every access is
    /// guarded in WGSL and whose wrapper checks every extent on the host
    /// (the linear kernel, where the checks sit in the innermost loop).
    /// `SGRAF_GPU_CHECKED=1` turns the checks back on for every shader.
    pub trusted: bool,
}

/// How a storage binding is accessed by a kernel (binding 1, 2, … in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
}

/// A cached compute pipeline with its bind-group layout.
#[derive(Debug)]
pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// Storage bindings after the uniform, in binding order.
    pub storage: Vec<Access>,
    pub label: String,
}

/// Device, queue, adapter description, the limits actually granted, and the
/// pipeline cache.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    /// Limits of the created device (WebGPU defaults, except buffer sizes and
    /// workgroups per dimension which are the adapter's own).
    pub limits: wgpu::Limits,
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    kernels: Mutex<HashMap<(&'static str, &'static str), Arc<Kernel>>>,
    /// 16-byte buffer bound where a kernel's optional input is absent.
    dummy: wgpu::Buffer,
    pool: Arc<BufferPool>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext").field("adapter", &self.describe()).finish()
    }
}

const NO_GPU_HINT: &str = "no usable GPU adapter was found. HINT: on headless Linux install \
     a software Vulkan driver with `apt-get install mesa-vulkan-drivers libvulkan1` (lavapipe), \
     or select a backend with WGPU_BACKEND=vulkan|metal|dx12|gl; otherwise use the CPU backend";

fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "Vulkan",
        wgpu::Backend::Metal => "Metal",
        wgpu::Backend::Dx12 => "DirectX 12",
        wgpu::Backend::Gl => "OpenGL",
        wgpu::Backend::BrowserWebGpu => "WebGPU",
        _ => "no backend",
    }
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::Cpu => "software",
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Other => "unknown device type",
    }
}

impl GpuContext {
    /// Pick an adapter and create the device.
    ///
    /// `require_hardware`: refuse a software (`DeviceType::Cpu`) adapter such
    /// as lavapipe/llvmpipe and report [`SgrafError::NoGpu`] instead (used by
    /// `--backend auto`, which then falls back to the CPU backend).
    // On wasm, wgpu's types are not Send/Sync (one thread); the Arc is shared code with native.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub async fn new(require_hardware: bool) -> Result<GpuContext> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pick_adapter(&instance, require_hardware).await?;
        let info = adapter.get_info();
        if require_hardware && info.device_type == wgpu::DeviceType::Cpu {
            return Err(SgrafError::NoGpu(format!(
                "only a software adapter is available ({} via {}); {NO_GPU_HINT}",
                info.name,
                backend_name(info.backend)
            )));
        }
        let adapter_limits = adapter.limits();
        let mut limits = wgpu::Limits::default().or_worse_values_from(&adapter_limits);
        limits.max_storage_buffer_binding_size = adapter_limits.max_storage_buffer_binding_size;
        limits.max_buffer_size = adapter_limits.max_buffer_size;
        limits.max_compute_workgroups_per_dimension = adapter_limits.max_compute_workgroups_per_dimension;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("sgraf"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| {
                SgrafError::NoGpu(format!(
                    "adapter {} via {} refused a device: {e}; {NO_GPU_HINT}",
                    info.name,
                    backend_name(info.backend)
                ))
            })?;
        let limits = device.limits();
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let pool_cap: u64 = if info.device_type == wgpu::DeviceType::Cpu { 256 << 20 } else { 4 << 30 };
        Ok(GpuContext {
            device,
            queue,
            adapter_info: info,
            limits,
            modules: Mutex::new(HashMap::new()),
            kernels: Mutex::new(HashMap::new()),
            dummy,
            pool: Arc::new(BufferPool::new(pool_cap)),
        })
    }

    /// [`GpuContext::new`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(require_hardware: bool) -> Result<GpuContext> {
        pollster::block_on(Self::new(require_hardware))
    }

    /// e.g. `"llvmpipe (LLVM 15.0.7, 256 bits) via Vulkan (software)"`.
    pub fn describe(&self) -> String {
        format!(
            "{} via {} ({})",
            self.adapter_info.name,
            backend_name(self.adapter_info.backend),
            device_type_name(self.adapter_info.device_type)
        )
    }

    /// True for a software rasteriser adapter (lavapipe, WARP, …).
    pub fn is_software(&self) -> bool {
        self.adapter_info.device_type == wgpu::DeviceType::Cpu
    }

    /// Largest number of workgroups per grid dimension.
    pub fn max_groups(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// The pipeline for `shader`/`entry`, created on first use. `storage`
    /// lists the storage bindings (binding 1, 2, …) after the uniform at
    /// binding 0; it must be the same on every call for one entry point.
    pub fn kernel(&self, shader: &Shader, entry: &'static str, storage: &[Access]) -> Arc<Kernel> {
        let key = (shader.name, entry);
        if let Some(k) = self.kernels.lock().unwrap().get(&key) {
            debug_assert_eq!(k.storage, storage, "{}::{entry} bound differently", shader.name);
            return k.clone();
        }
        let module = self.module(shader);
        let label = format!("{}::{entry}", shader.name);
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
        for (i, a) in storage.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *a == Access::Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let k = Arc::new(Kernel { pipeline, layout, storage: storage.to_vec(), label });
        self.kernels.lock().unwrap().insert(key, k.clone());
        k
    }

    fn module(&self, shader: &Shader) -> Arc<wgpu::ShaderModule> {
        let mut modules = self.modules.lock().unwrap();
        modules
            .entry(shader.name)
            .or_insert_with(|| {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                };
                let checked = std::env::var("SGRAF_GPU_CHECKED").is_ok_and(|v| v != "0");
                Arc::new(if shader.trusted && !checked {
                    // SAFETY: see `Shader::trusted`: every storage and
                    // workgroup access of a trusted shader is in bounds by
                    // construction, its loops terminate and its divisors are
                    // non-zero (checked by the wrapper before dispatch).
                    unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
                } else {
                    self.device.create_shader_module(desc)
                })
            })
            .clone()
    }

    /// The pool of free intermediate buffers (see [`BufferPool`]).
    pub fn pool(&self) -> &Arc<BufferPool> {
        &self.pool
    }

    /// A buffer to bind where a kernel's optional input is absent.
    pub fn dummy(&self) -> &wgpu::Buffer {
        &self.dummy
    }

    /// Record one dispatch of `kernel` into `encoder`: `params` (a `Pod`
    /// uniform struct) at binding 0, `buffers` at bindings 1… .
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        assert_eq!(buffers.len(), kernel.storage.len(), "{}: wrong number of buffers", kernel.label);
        if groups.contains(&0) {
            return;
        }
        let max = self.max_groups();
        assert!(groups.iter().all(|&g| g <= max), "{}: grid {groups:?} over the limit {max}", kernel.label);
        let mut bytes = bytemuck::bytes_of(params).to_vec();
        bytes.resize(bytes.len().div_ceil(16).max(1) * 16, 0);
        let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(&kernel.label),
            contents: &bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel.label),
            layout: &kernel.layout,
            entries: &entries,
        });
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(&kernel.label), timestamp_writes: None });
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }

    /// A 2-D grid covering `n` workgroups when `n` may exceed the
    /// per-dimension limit; kernels recover the index as
    /// `wid.x + wid.y * nwg.x` and return when it is `>= n`.
    pub fn grid_1d(&self, n: u64) -> [u32; 3] {
        let max = self.max_groups() as u64;
        if n <= max {
            [n as u32, 1, 1]
        } else {
            let y = n.div_ceil(max);
            [n.div_ceil(y) as u32, y as u32, 1]
        }
    }

    /// A new command encoder.
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Submit an encoder's commands.
    pub fn submit(&self, encoder: wgpu::CommandEncoder) -> wgpu::SubmissionIndex {
        self.queue.submit(Some(encoder.finish()))
    }

    /// Fail with [`SgrafError::Input`] when a buffer of `bytes` bytes cannot
    /// be bound as one storage binding on this device.
    pub fn check_binding_size(&self, what: &str, bytes: u64) -> Result<()> {
        let max = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if bytes > max {
            return Err(SgrafError::Input(format!(
                "{what} needs {bytes} bytes in one GPU buffer but this device allows {max}; \
                 HINT: score fewer images or captions per tile"
            )));
        }
        Ok(())
    }
}

async fn pick_adapter(instance: &wgpu::Instance, require_hardware: bool) -> Result<wgpu::Adapter> {
    #[cfg(target_arch = "wasm32")]
    let _ = require_hardware; // the browser picks; a software adapter is refused by the caller
    #[cfg(not(target_arch = "wasm32"))]
    {
        let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
        if let Ok(want) = std::env::var("WGPU_ADAPTER_NAME") {
            let want = want.to_lowercase();
            return adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&want)).ok_or_else(|| {
                SgrafError::NoGpu(format!("WGPU_ADAPTER_NAME={want} matches no adapter; {NO_GPU_HINT}"))
            });
        }
        if require_hardware {
            // Prefer a discrete, then an integrated GPU, over anything else.
            let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Other => 3,
                wgpu::DeviceType::Cpu => 4,
            };
            if let Some(a) =
                adapters.into_iter().filter(|a| a.get_info().device_type != wgpu::DeviceType::Cpu).min_by_key(rank)
            {
                return Ok(a);
            }
        }
    }
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance),
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        })
        .await
        .map_err(|e| SgrafError::NoGpu(format!("{e}; {NO_GPU_HINT}")))
}
