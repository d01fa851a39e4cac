//! One model on one backend: the CPU twin or a wgpu device. Both compute the
//! same values through the same stages; the choice is `--backend auto|gpu|cpu`.

use crate::cpu::model::{CaptionEmb, ImageEmb};
use crate::error::Result;
use crate::model::params::{Mode, Params};

/// Which backend the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// A hardware GPU adapter when one exists, else the CPU backend.
    Auto,
    /// Any GPU adapter, software ones (lavapipe) included.
    Gpu,
    /// The CPU backend.
    Cpu,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "gpu" => Ok(BackendChoice::Gpu),
            "cpu" => Ok(BackendChoice::Cpu),
            _ => Err(format!("unknown backend '{s}': use auto, gpu or cpu")),
        }
    }
}

/// A resolved backend.
#[derive(Clone)]
pub enum Backend {
    Cpu,
    Gpu(std::sync::Arc<crate::gpu::GpuContext>),
}

impl Backend {
    /// Resolves a choice natively; `auto` falls back to the CPU when there is
    /// no hardware adapter. Returns the backend and a sentence saying which.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn resolve(choice: BackendChoice) -> Result<(Backend, String)> {
        match choice {
            BackendChoice::Cpu => Ok((Backend::Cpu, cpu_description())),
            BackendChoice::Gpu => {
                let ctx = crate::gpu::GpuContext::new_blocking(false)?;
                let d = format!("GPU backend: {}", ctx.describe());
                Ok((Backend::Gpu(std::sync::Arc::new(ctx)), d))
            }
            BackendChoice::Auto => match crate::gpu::GpuContext::new_blocking(true) {
                Ok(ctx) => {
                    let d = format!("GPU backend (auto): {}", ctx.describe());
                    Ok((Backend::Gpu(std::sync::Arc::new(ctx)), d))
                }
                Err(_) => Ok((
                    Backend::Cpu,
                    format!(
                        "{} (auto: no hardware GPU adapter; --backend gpu also accepts software ones such as lavapipe)",
                        cpu_description()
                    ),
                )),
            },
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn cpu_description() -> String {
    format!("CPU backend ({} threads)", rayon::current_num_threads())
}

/// A model ready to encode and score on its backend.
pub struct Model {
    params: Params,
    gpu: Option<crate::gpu::model::GpuModel>,
}

impl Model {
    pub fn new(params: Params, backend: &Backend) -> Result<Model> {
        let gpu = match backend {
            Backend::Cpu => None,
            Backend::Gpu(ctx) => Some(crate::gpu::model::GpuModel::new(ctx.clone(), &params)?),
        };
        Ok(Model { params, gpu })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn is_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// The GPU model, when this model runs on a GPU.
    pub fn gpu(&self) -> Option<&crate::gpu::model::GpuModel> {
        self.gpu.as_ref()
    }

    /// `images [n, 36, D_img]` → eval-mode image embeddings.
    pub fn encode_images(&self, images: &[f32], n: usize) -> Result<ImageEmb> {
        match &self.gpu {
            Some(g) => g.encode_images(images, n, Mode::Eval),
            None => Ok(crate::cpu::model::encode_images(&self.params, images, n, Mode::Eval).0),
        }
    }

    /// Token ids per caption → packed caption embeddings.
    pub fn encode_captions(&self, captions: &[Vec<u32>]) -> Result<CaptionEmb> {
        match &self.gpu {
            Some(g) => g.encode_captions(captions),
            None => Ok(crate::cpu::model::encode_captions(&self.params, captions)),
        }
    }

    /// Eval-mode scores of a tile: `[img.n, n_cap]`.
    pub fn score(&self, img: &ImageEmb, cap: &CaptionEmb) -> Result<Vec<f32>> {
        match &self.gpu {
            Some(g) => Ok(g.score_tile(img, cap, Mode::Eval, false)?.0),
            None => Ok(crate::cpu::model::score_tile_parallel(&self.params, img, cap)),
        }
    }

    /// [`Self::encode_images`] awaiting the GPU instead of blocking (the form the web page uses).
    pub async fn encode_images_async(&self, images: &[f32], n: usize) -> Result<ImageEmb> {
        match &self.gpu {
            Some(g) => g.encode_images_async(images, n, Mode::Eval).await,
            None => Ok(crate::cpu::model::encode_images(&self.params, images, n, Mode::Eval).0),
        }
    }

    /// [`Self::encode_captions`] awaiting the GPU instead of blocking.
    pub async fn encode_captions_async(&self, captions: &[Vec<u32>]) -> Result<CaptionEmb> {
        match &self.gpu {
            Some(g) => g.encode_captions_async(captions).await,
            None => Ok(crate::cpu::model::encode_captions(&self.params, captions)),
        }
    }

    /// [`Self::score`] awaiting the GPU instead of blocking.
    pub async fn score_async(&self, img: &ImageEmb, cap: &CaptionEmb) -> Result<Vec<f32>> {
        match &self.gpu {
            Some(g) => Ok(g.score_tile_async(img, cap, Mode::Eval, false).await?.0),
            None => Ok(crate::cpu::model::score_tile_parallel(&self.params, img, cap)),
        }
    }

    /// (images per tile, captions per tile) for scoring `n_img` images
    /// against captions of these lengths.
    pub fn tile_sizes(&self, n_img: usize, lengths: &[usize]) -> (usize, usize) {
        let e = self.params.cfg.embed;
        let mean_len = (lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64).max(1.0);
        match &self.gpu {
            Some(g) => g.tile_sizes(n_img, lengths),
            None => {
                // Per thread: ctx and (ctx − t)² buffers of [words, E]; keep them near 8 MB.
                let caps = ((2_000_000.0 / (mean_len * e as f64)) as usize).clamp(16, 512);
                (n_img.max(1), caps)
            }
        }
    }
}
