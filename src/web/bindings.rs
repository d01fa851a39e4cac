//! The JavaScript interface of the page (`web/app.js`): a [`Device`] (WebGPU
//! or the CPU backend), a [`DemoBuilder`] that takes the files (checked as
//! they arrive) and an [`Engine`] that answers the page's questions. Results
//! cross as JSON strings; every error is a JS `Error` with a message the page
//! shows as it is.

use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use super::engine::Demo;
use crate::backend::Backend;
use crate::data::{parse_captions, NpyF32, Split, Vocab};
use crate::error::SgrafError;
use crate::model::params::Params;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(s: &str);
}

#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| console_error(&format!("sgraf panicked: {info}"))));
}

fn js_err(e: SgrafError) -> JsValue {
    JsError::new(&e.to_string()).into()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<JsValue, JsValue> {
    serde_json::to_string(v).map(JsValue::from).map_err(|e| JsError::new(&format!("JSON: {e}")).into())
}

/// The backend the page computes on.
#[wasm_bindgen]
pub struct Device {
    backend: Backend,
    kind: &'static str,
    note: String,
}

#[wasm_bindgen]
impl Device {
    /// Resolves to a WebGPU device when `want_gpu` and the browser gives a
    /// WebGPU adapter, else to the CPU backend (compiled to wasm); `note`
    /// says which and why. `reason` is what the page already knows about
    /// WebGPU (e.g. "navigator.gpu is undefined"), used in the note.
    // wgpu's types are not Send/Sync on wasm (one thread); `Backend` holds an Arc for native's sake.
    #[allow(clippy::arc_with_non_send_sync)]
    pub fn create(want_gpu: bool, reason: String) -> Promise {
        future_to_promise(async move {
            let cpu = |why: String| Device { backend: Backend::Cpu, kind: "cpu", note: why };
            if !want_gpu {
                return Ok(JsValue::from(cpu(format!("CPU backend (WebAssembly, one thread): {reason}"))));
            }
            let d = match crate::gpu::GpuContext::new(false).await {
                Ok(ctx) if ctx.adapter_info.backend == wgpu::Backend::BrowserWebGpu => {
                    let i = &ctx.adapter_info;
                    let kind = if ctx.is_software() { "software adapter" } else { "GPU adapter" };
                    let note = match i.name.trim() {
                        "" => format!("WebGPU ({kind})"),
                        name => format!("WebGPU: {name} ({kind})"),
                    };
                    Device { backend: Backend::Gpu(std::sync::Arc::new(ctx)), kind: "webgpu", note }
                }
                Ok(ctx) => cpu(format!(
                    "CPU backend (WebAssembly, one thread): the browser offered {} instead of WebGPU",
                    ctx.describe()
                )),
                Err(e) => cpu(format!("CPU backend (WebAssembly, one thread): no WebGPU device ({e})")),
            };
            Ok(JsValue::from(d))
        })
    }

    /// "webgpu" or "cpu".
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        self.kind.to_string()
    }

    /// A sentence saying which backend runs and why.
    #[wasm_bindgen(getter)]
    pub fn note(&self) -> String {
        self.note.clone()
    }
}

/// Collects and checks the files of a demo; [`DemoBuilder::build`] encodes the gallery.
#[wasm_bindgen]
#[derive(Default)]
pub struct DemoBuilder {
    checkpoints: Vec<Params>,
    vocab: Option<Vocab>,
    gallery: Option<Split>,
}

#[wasm_bindgen]
impl DemoBuilder {
    #[wasm_bindgen(constructor)]
    pub fn new() -> DemoBuilder {
        DemoBuilder::default()
    }

    /// Adds a checkpoint (safetensors with the official keys, or the
    /// authors' `.pth.tar`); returns its module, "SGR" or "SAF". A second
    /// checkpoint of the same module replaces the first.
    pub fn add_checkpoint(&mut self, name: &str, bytes: &[u8]) -> Result<String, JsValue> {
        let p = match crate::pth::detect(bytes) {
            Some(_) => crate::pth::load_params(bytes, name),
            None => Params::from_safetensors_bytes(bytes, name),
        }
        .map_err(js_err)?;
        let module = p.cfg.module.name();
        self.checkpoints.retain(|q| q.cfg.module.name() != module);
        self.checkpoints.push(p);
        Ok(module.to_string())
    }

    /// Sets the vocabulary (the official JSON layout).
    pub fn set_vocab(&mut self, name: &str, text: &str) -> Result<usize, JsValue> {
        let v = Vocab::from_json_named(text, name).map_err(js_err)?;
        let n = v.len();
        self.vocab = Some(v);
        Ok(n)
    }

    /// Sets the gallery: `*_ims.npy` (`[N, 36, D]` float32) and `*_caps.txt`.
    /// Returns the number of images.
    pub fn set_gallery(
        &mut self,
        npy_name: &str,
        npy: Vec<u8>,
        caps_name: &str,
        caps: &[u8],
    ) -> Result<usize, JsValue> {
        let images = NpyF32::from_bytes_named(npy, npy_name).map_err(js_err)?;
        let captions = parse_captions(caps, caps_name).map_err(js_err)?;
        let split = Split::from_parts(images, captions).map_err(js_err)?;
        let n = split.n_images;
        self.gallery = Some(split);
        Ok(n)
    }

    /// Checks that everything fits together without encoding anything.
    pub fn check(&self) -> Result<(), JsValue> {
        let (vocab, gallery) = self.parts()?;
        super::engine::check_inputs(&self.checkpoints, vocab, gallery).map_err(js_err)
    }

    fn parts(&self) -> Result<(&Vocab, &Split), JsValue> {
        let vocab = self.vocab.as_ref().ok_or_else(|| JsValue::from(JsError::new("no vocabulary JSON was given")))?;
        let gallery = self
            .gallery
            .as_ref()
            .ok_or_else(|| JsValue::from(JsError::new("no gallery (*_ims.npy and *_caps.txt) was given")))?;
        Ok((vocab, gallery))
    }

    /// Resolves to an [`Engine`] once every model has encoded the gallery
    /// images; `progress(what, done, total)` is called between chunks (it may
    /// return a promise, awaited before the next chunk).
    pub fn build(self, device: &Device, progress: Function) -> Promise {
        let backend = device.backend.clone();
        future_to_promise(async move {
            let DemoBuilder { checkpoints, vocab, gallery } = self;
            let vocab = vocab.ok_or_else(|| JsValue::from(JsError::new("no vocabulary JSON was given")))?;
            let gallery = gallery
                .ok_or_else(|| JsValue::from(JsError::new("no gallery (*_ims.npy and *_caps.txt) was given")))?;
            let mut report =
                |what: &str, done: usize, total: usize| -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
                    let r = progress.call3(&JsValue::NULL, &what.into(), &(done as u32).into(), &(total as u32).into());
                    Box::pin(async move {
                        if let Ok(v) = r {
                            if let Ok(p) = v.dyn_into::<Promise>() {
                                let _ = JsFuture::from(p).await;
                            }
                        }
                    })
                };
            let demo = Demo::new(&backend, checkpoints, vocab, gallery, &mut report).await.map_err(js_err)?;
            Ok(JsValue::from(Engine { demo: Rc::new(demo) }))
        })
    }
}

/// A loaded demo. Every query method returns a promise of a JSON string.
#[wasm_bindgen]
pub struct Engine {
    demo: Rc<Demo>,
}

#[wasm_bindgen]
impl Engine {
    /// `{"modules": [...], "images": N, "captions": [...], "captions_per_image": k, "sizes": {...}}`.
    pub fn info(&self) -> Result<String, JsValue> {
        let d = &self.demo;
        let sizes: Vec<_> = d
            .models
            .iter()
            .map(|m| {
                let c = &m.model.params().cfg;
                serde_json::json!({"module": m.module, "img_dim": c.img_dim, "embed": c.embed,
                    "sim_dim": c.sim_dim, "word_dim": c.word_dim, "vocab": c.vocab})
            })
            .collect();
        let v = serde_json::json!({
            "modules": d.models.iter().map(|m| m.module).collect::<Vec<_>>(),
            "images": d.gallery.n_images,
            "captions": d.gallery.captions,
            "captions_per_image": d.gallery.im_div,
            "sgr_steps": d.models.iter().find_map(|m| match m.model.params().cfg.module {
                crate::model::params::Module::Sgr { steps } => Some(steps),
                crate::model::params::Module::Saf => None,
            }),
            "sizes": sizes,
        });
        Ok(v.to_string())
    }

    /// Sentence → images: a [`super::engine::Ranking`] as JSON.
    pub fn rank_images(&self, query: String) -> Promise {
        let demo = self.demo.clone();
        future_to_promise(async move {
            let r = demo.rank_images(&query).await.map_err(js_err)?;
            to_json(&r)
        })
    }

    /// Image → sentences: a [`super::engine::Ranking`] as JSON.
    pub fn rank_captions(&self, image: u32) -> Promise {
        let demo = self.demo.clone();
        future_to_promise(async move {
            let r = demo.rank_captions(image as usize).await.map_err(js_err)?;
            to_json(&r)
        })
    }

    /// Per-word explanations (`[model][caption]`, JSON) of the captions
    /// (a JSON list of strings) against gallery image `image`.
    pub fn explain(&self, image: u32, captions_json: &str) -> Result<String, JsValue> {
        let captions: Vec<String> = serde_json::from_str(captions_json).map_err(|e| {
            JsValue::from(JsError::new(&format!("explain: captions must be a JSON list of strings ({e})")))
        })?;
        let ex = self.demo.explain(image as usize, &captions).map_err(js_err)?;
        let tagged: Vec<_> =
            self.demo.models.iter().zip(ex).map(|(m, e)| serde_json::json!({"module": m.module, "pairs": e})).collect();
        serde_json::to_string(&tagged).map_err(|e| JsError::new(&format!("JSON: {e}")).into())
    }
}
