//! Tensors on the GPU: a storage buffer plus its shape and element type, and
//! a readback that copies several tensors into one staging buffer and maps
//! it once.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wgpu::util::DeviceExt;

use super::context::GpuContext;
use crate::error::{Result, SgrafError};

/// Element type of a [`GpuTensor`]; both are 4 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
}

/// A dense row-major tensor in one GPU buffer (`STORAGE | COPY_SRC |
/// COPY_DST`). The buffer holds at least 4 bytes even when the tensor is
/// empty, so it can always be bound. Buffers of tensors made by
/// [`GpuTensor::zeros`] and [`GpuTensor::scratch`] go back to the context's
/// [`BufferPool`] when the tensor is dropped (wgpu keeps them alive for
/// commands already recorded and orders later uses after them). A returned
/// buffer is handed out again only to the thread that returned it: another
/// thread could submit its reuse before the commands still recorded for the
/// buffer's last use are submitted.
#[derive(Debug)]
pub struct GpuTensor {
    pub buffer: wgpu::Buffer,
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// The context's pool: accounts the buffer's bytes, and takes the buffer
    /// back on drop when `pooled`.
    pool: Arc<BufferPool>,
    pooled: bool,
}

impl Drop for GpuTensor {
    fn drop(&mut self) {
        if self.pooled {
            self.pool.give(self.buffer.clone());
        } else {
            self.pool.released(self.buffer.size());
        }
    }
}

/// Free storage buffers by size, reused across tiles so that a scoring
/// loop neither allocates nor zero-fills its intermediates again. Holds at
/// most `cap` bytes; [`BufferPool::clear`] releases everything.
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<HashMap<(std::thread::ThreadId, u64), Vec<wgpu::Buffer>>>,
    /// Bytes in free buffers.
    held: AtomicU64,
    cap: u64,
    /// Bytes of the buffers owned by live tensors.
    in_use: AtomicU64,
    /// Largest `in_use` since the last [`BufferPool::reset_peak`].
    peak_in_use: AtomicU64,
    /// Largest `in_use + held` since the last [`BufferPool::reset_peak`].
    peak_live: AtomicU64,
}

impl BufferPool {
    pub fn new(cap: u64) -> Self {
        BufferPool {
            free: Mutex::new(HashMap::new()),
            held: AtomicU64::new(0),
            cap,
            in_use: AtomicU64::new(0),
            peak_in_use: AtomicU64::new(0),
            peak_live: AtomicU64::new(0),
        }
    }

    /// A tensor took `bytes` (a new buffer, or one from the free list).
    fn allocated(&self, bytes: u64) {
        let now = self.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak_in_use.fetch_max(now, Ordering::Relaxed);
        self.peak_live.fetch_max(now + self.held.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// A tensor gave up `bytes`.
    fn released(&self, bytes: u64) {
        self.in_use.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes of the buffers of all live tensors.
    pub fn in_use_bytes(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Bytes of all tensor buffers alive now (live tensors and free pooled buffers).
    pub fn live_bytes(&self) -> u64 {
        self.in_use_bytes() + self.held_bytes()
    }

    /// Largest [`BufferPool::in_use_bytes`] since the last
    /// [`BufferPool::reset_peak`]: the sum of the sizes of the tensor buffers
    /// in use at once (uniforms and readback staging buffers excluded), the
    /// memory the work needs.
    pub fn peak_bytes(&self) -> u64 {
        self.peak_in_use.load(Ordering::Relaxed)
    }

    /// Largest [`BufferPool::live_bytes`] since the last reset: the memory
    /// taken with the pool's free buffers (at most its cap more).
    pub fn peak_live_bytes(&self) -> u64 {
        self.peak_live.load(Ordering::Relaxed)
    }

    /// Starts new peak measurements from the bytes in use / alive now.
    pub fn reset_peak(&self) {
        self.peak_in_use.store(self.in_use_bytes(), Ordering::Relaxed);
        self.peak_live.store(self.live_bytes(), Ordering::Relaxed);
    }

    fn take(&self, size: u64) -> Option<wgpu::Buffer> {
        let b = self.free.lock().unwrap().get_mut(&(std::thread::current().id(), size))?.pop()?;
        self.held.fetch_sub(size, Ordering::Relaxed);
        Some(b)
    }

    fn give(&self, buffer: wgpu::Buffer) {
        let size = buffer.size();
        self.released(size);
        if self.held.load(Ordering::Relaxed) + size > self.cap {
            return;
        }
        self.held.fetch_add(size, Ordering::Relaxed);
        self.free.lock().unwrap().entry((std::thread::current().id(), size)).or_default().push(buffer);
    }

    /// Bytes held in free buffers.
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Drops every free buffer.
    pub fn clear(&self) {
        self.free.lock().unwrap().clear();
        self.held.store(0, Ordering::Relaxed);
    }
}

const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl GpuTensor {
    fn from_bytes(ctx: &GpuContext, bytes: &[u8], shape: &[usize], dtype: DType, label: &str) -> Result<Self> {
        ctx.check_binding_size(label, bytes.len() as u64)?;
        let buffer = if bytes.is_empty() {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 4,
                usage: USAGE,
                mapped_at_creation: false,
            })
        } else {
            ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: USAGE,
            })
        };
        ctx.pool().allocated(buffer.size());
        Ok(GpuTensor { buffer, shape: shape.to_vec(), dtype, pool: ctx.pool().clone(), pooled: false })
    }

    /// Upload `data` (row-major, `shape.product()` values).
    pub fn upload_f32(ctx: &GpuContext, data: &[f32], shape: &[usize]) -> Result<Self> {
        check_len("upload_f32", data.len(), shape)?;
        Self::from_bytes(ctx, bytemuck::cast_slice(data), shape, DType::F32, "f32 tensor")
    }

    /// Upload `data` (row-major, `shape.product()` values).
    pub fn upload_u32(ctx: &GpuContext, data: &[u32], shape: &[usize]) -> Result<Self> {
        check_len("upload_u32", data.len(), shape)?;
        Self::from_bytes(ctx, bytemuck::cast_slice(data), shape, DType::U32, "u32 tensor")
    }

    /// A zero-filled tensor in a new buffer (wgpu zero-initialises new
    /// buffers); the buffer joins the pool when the tensor is dropped.
    pub fn zeros(ctx: &GpuContext, shape: &[usize], dtype: DType) -> Result<Self> {
        let bytes = numel(shape) as u64 * 4;
        ctx.check_binding_size("zeros", bytes)?;
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tensor"),
            size: bytes.max(4),
            usage: USAGE,
            mapped_at_creation: false,
        });
        ctx.pool().allocated(buffer.size());
        Ok(GpuTensor { buffer, shape: shape.to_vec(), dtype, pool: ctx.pool().clone(), pooled: true })
    }

    /// A tensor with unspecified contents, from the pool when a free buffer
    /// of the same size exists: for outputs a kernel writes completely.
    pub fn scratch(ctx: &GpuContext, shape: &[usize], dtype: DType) -> Result<Self> {
        let bytes = (numel(shape) as u64 * 4).max(4);
        match ctx.pool().take(bytes) {
            Some(buffer) => {
                ctx.pool().allocated(buffer.size());
                Ok(GpuTensor { buffer, shape: shape.to_vec(), dtype, pool: ctx.pool().clone(), pooled: true })
            }
            None => Self::zeros(ctx, shape, dtype),
        }
    }

    /// A pooled tensor cleared to zero by a command recorded into `encoder`.
    pub fn zeros_in(
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Self> {
        let t = Self::scratch(ctx, shape, dtype)?;
        encoder.clear_buffer(&t.buffer, 0, None);
        Ok(t)
    }

    /// Overwrite the whole tensor from the host (queued; takes effect at the
    /// next submit, before its commands).
    pub fn write_f32(&self, ctx: &GpuContext, data: &[f32]) -> Result<()> {
        check_len("write_f32", data.len(), &self.shape)?;
        if !data.is_empty() {
            ctx.queue.write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Size of the data in bytes (the buffer may be larger).
    pub fn size_bytes(&self) -> u64 {
        self.numel() as u64 * 4
    }

    /// Fail with [`SgrafError::Input`] unless the shape is `want`.
    pub fn expect_shape(&self, what: &str, want: &[usize]) -> Result<()> {
        if self.shape != want {
            return Err(SgrafError::Input(format!("{what}: GPU tensor has shape {:?}, expected {want:?}", self.shape)));
        }
        Ok(())
    }

    /// Fail with [`SgrafError::Input`] unless the element type is `want`.
    pub fn expect_dtype(&self, what: &str, want: DType) -> Result<()> {
        if self.dtype != want {
            return Err(SgrafError::Input(format!("{what}: GPU tensor is {:?}, expected {want:?}", self.dtype)));
        }
        Ok(())
    }
}

fn check_len(what: &str, len: usize, shape: &[usize]) -> Result<()> {
    if len != numel(shape) {
        return Err(SgrafError::Input(format!("{what}: {len} values for shape {shape:?}")));
    }
    Ok(())
}

/// Copy every tensor into one staging buffer, submit, map once and return
/// their values (as `f32`; read `u32` tensors with [`read_u32_many`]).
pub async fn read_f32_many(ctx: &GpuContext, tensors: &[&GpuTensor]) -> Result<Vec<Vec<f32>>> {
    let raw = read_raw_many(ctx, tensors).await?;
    Ok(raw.into_iter().map(|b| bytemuck::pod_collect_to_vec(&b)).collect())
}

/// Like [`read_f32_many`] for `u32` tensors.
pub async fn read_u32_many(ctx: &GpuContext, tensors: &[&GpuTensor]) -> Result<Vec<Vec<u32>>> {
    let raw = read_raw_many(ctx, tensors).await?;
    Ok(raw.into_iter().map(|b| bytemuck::pod_collect_to_vec(&b)).collect())
}

/// [`read_f32_many`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_f32_many_blocking(ctx: &GpuContext, tensors: &[&GpuTensor]) -> Result<Vec<Vec<f32>>> {
    pollster::block_on(read_f32_many(ctx, tensors))
}

/// [`read_u32_many`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_u32_many_blocking(ctx: &GpuContext, tensors: &[&GpuTensor]) -> Result<Vec<Vec<u32>>> {
    pollster::block_on(read_u32_many(ctx, tensors))
}

async fn read_raw_many(ctx: &GpuContext, tensors: &[&GpuTensor]) -> Result<Vec<Vec<u8>>> {
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut total = 0u64;
    for t in tensors {
        offsets.push(total);
        // Copy offsets must be multiples of 4 (COPY_BUFFER_ALIGNMENT); ours are.
        total += t.size_bytes();
    }
    if total == 0 {
        return Ok(tensors.iter().map(|_| Vec::new()).collect());
    }
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: total,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.encoder("readback");
    for (t, &off) in tensors.iter().zip(&offsets) {
        if t.size_bytes() > 0 {
            encoder.copy_buffer_to_buffer(&t.buffer, 0, &staging, off, t.size_bytes());
        }
    }
    ctx.submit(encoder);
    let slot = Arc::new(Mutex::new(MapSlot { result: None, waker: None }));
    let cb_slot = slot.clone();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let mut s = cb_slot.lock().unwrap();
        s.result = Some(r.map_err(|e| e.to_string()));
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    });
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| SgrafError::Gpu(format!("waiting for the GPU: {e}")))?;
    MapFuture { slot }.await.map_err(|e| SgrafError::Gpu(format!("mapping the readback buffer: {e}")))?;
    let out = {
        let view =
            staging.get_mapped_range(..).map_err(|e| SgrafError::Gpu(format!("reading the mapped buffer: {e}")))?;
        tensors
            .iter()
            .zip(&offsets)
            .map(|(t, &off)| view[off as usize..(off + t.size_bytes()) as usize].to_vec())
            .collect()
    };
    staging.unmap();
    Ok(out)
}

struct MapSlot {
    result: Option<std::result::Result<(), String>>,
    waker: Option<Waker>,
}

struct MapFuture {
    slot: Arc<Mutex<MapSlot>>,
}

impl Future for MapFuture {
    type Output = std::result::Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.lock().unwrap();
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
