//! CLIP: a vision tower (`ModifiedResNet` or `VisionTransformer`) and a text tower, embedding images
//! and texts into one space.
//!
//! Mirrors `CLIP`, `convert_weights` and `build_model` in `clip/model.py` and the model set-up of
//! `clip.load` in `clip/clip.py` (openai-clip 1.0.1, `jit=False`): the architecture is inferred from
//! the checkpoint's shapes, the weights are loaded strictly, and the model runs in fp32 on the CPU
//! and in the reference's mixed fp16 on CUDA or on request (`Precision`; convolution, linear and attention weights and the two
//! projections in fp16; LayerNorm, BatchNorm and the embeddings in fp32, as `convert_weights` leaves
//! them). Variable paths are OpenAI's state-dict keys.

pub mod config;
pub mod resnet;
pub mod text;
pub mod transformer;
pub mod vit;

pub use config::{ClipConfig, ConfigError, VisionConfig};
pub use vit::PatchEmbedding;

use crate::clip::weights::{StateDict, WeightsError};
use std::collections::BTreeMap;
use std::path::Path;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Keys that OpenAI's JIT checkpoints carry beside the weights; the reference's `build_model` deletes them.
pub const METADATA_KEYS: [&str; 3] = ["input_resolution", "context_length", "vocab_size"];

#[derive(Debug)]
pub enum VisionTower {
    ResNet(Box<resnet::ModifiedResNet>),
    ViT(Box<vit::VisionTransformer>),
}

impl Module for VisionTower {
    fn forward(&self, xs: &Tensor) -> Tensor {
        match self {
            Self::ResNet(m) => m.forward(xs),
            Self::ViT(m) => m.forward(xs),
        }
    }
}

/// `clip.model.CLIP`.
#[derive(Debug)]
pub struct Clip {
    pub config: ClipConfig,
    pub visual: VisionTower,
    pub text: text::TextTransformer,
    pub logit_scale: Tensor,
}

impl Clip {
    /// Builds the model under `vs` (normally the root), randomly initialised.
    pub fn new(vs: &nn::Path, config: &ClipConfig) -> Self {
        let c = config;
        let visual = match c.vision {
            VisionConfig::ResNet { layers, width } => {
                VisionTower::ResNet(Box::new(resnet::ModifiedResNet::new(
                    vs / "visual",
                    layers,
                    c.embed_dim,
                    c.vision_heads(),
                    c.image_resolution,
                    width,
                )))
            }
            VisionConfig::ViT { patch_size, width, layers } => {
                VisionTower::ViT(Box::new(vit::VisionTransformer::new(
                    vs / "visual",
                    c.image_resolution,
                    patch_size,
                    width,
                    layers,
                    c.vision_heads(),
                    c.embed_dim,
                )))
            }
        };
        let text = text::TextTransformer::new(
            vs.clone(),
            c.context_length,
            c.vocab_size,
            c.transformer_width,
            c.transformer_layers,
            c.transformer_heads(),
            c.embed_dim,
        );
        let logit_scale = vs.var("logit_scale", &[], nn::Init::Const((1.0f64 / 0.07).ln()));
        Self { config: *config, visual, text, logit_scale }
    }

    /// The kind images and activations are computed in: that of the first convolution's weight
    /// (the reference's `CLIP.dtype`).
    pub fn dtype(&self) -> Kind {
        match &self.visual {
            VisionTower::ResNet(m) => m.conv1.ws.kind(),
            VisionTower::ViT(m) => m.conv1.ws.kind(),
        }
    }

    /// `encode_image`: CLIP-normalised pixels [N, 3, R, R] → raw (unnormalised) embeddings [N, embed_dim].
    pub fn encode_image(&self, images: &Tensor) -> Tensor {
        self.visual.forward(&images.to_kind(self.dtype()))
    }

    /// The speed choices in effect.
    pub fn layout(&self) -> Layout {
        match &self.visual {
            VisionTower::ResNet(m) => {
                Layout { channels_last: m.is_channels_last(), ..Layout::REFERENCE }
            }
            VisionTower::ViT(m) => {
                Layout { patch_embedding: m.patch_embedding, ..Layout::REFERENCE }
            }
        }
    }

    /// Applies the speed choices (in place; after loading): the function stays the same.
    pub fn set_layout(&mut self, layout: Layout) {
        match &mut self.visual {
            VisionTower::ResNet(m) => m.set_channels_last(layout.channels_last),
            VisionTower::ViT(m) => m.patch_embedding = layout.patch_embedding,
        }
    }

    /// `encode_text`: token ids [N, context_length] → raw (unnormalised) embeddings [N, embed_dim].
    pub fn encode_text(&self, tokens: &Tensor) -> Tensor {
        self.text.forward(tokens, self.dtype())
    }
}

/// Whether `convert_weights` turns this state-dict entry to fp16: the weights and biases of
/// convolutions, linear layers and attention, and the two projections. LayerNorm (`ln_*`),
/// BatchNorm (`bn*`, `downsample.1`), the token embedding, positional and class embeddings and
/// `logit_scale` stay fp32.
pub fn converted_to_fp16(key: &str) -> bool {
    let mut parts = key.rsplit('.');
    let (leaf, module) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match leaf {
        "text_projection" | "in_proj_weight" | "in_proj_bias" => true,
        "proj" => key == "visual.proj",
        "weight" | "bias" => {
            let batch_norm = module.starts_with("bn") || key.contains(".downsample.1.");
            !(module.starts_with("ln_") || batch_norm || module == "token_embedding")
        }
        _ => false,
    }
}

/// How the vision tower computes what the reference computes: choices of speed, not of result.
/// `bench::run_case` measures them (`clip bench --patch-embedding … --channels-last …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// ViTs: the patch embedding as the reference's strided convolution or as a matrix product.
    pub patch_embedding: PatchEmbedding,
    /// ResNets: channels-last (NHWC) activations and convolution weights.
    pub channels_last: bool,
}

impl Layout {
    /// The reference's own way: a convolution for the patches, NCHW everywhere.
    pub const REFERENCE: Self =
        Self { patch_embedding: PatchEmbedding::Convolution, channels_last: false };

    /// What models use unless told otherwise (BENCHMARKS.md has the figures): the patch
    /// embedding as a matrix product (on the CPU 3–15 % faster than the convolution with ViT-B/32;
    /// on CUDA it avoids cuDNN's pathological ViT-L/14 convolution at small batches), and the
    /// ResNet channels-last (on the CPU ~6 % faster with the experiment's 3 prompts; on CUDA fp16
    /// convolutions run on tensor cores in NHWC natively — not yet measured here).
    pub fn for_device(_device: Device) -> Self {
        Self { patch_embedding: PatchEmbedding::MatMul, channels_last: true }
    }
}

/// The precision a model computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// `convert_weights`' mixed fp16: convolution, linear and attention weights and the two
    /// projections in fp16; LayerNorm (computed in fp32), BatchNorm and embeddings in fp32.
    Fp16,
    /// Everything in fp32 (`clip.load` on the CPU calls `model.float()`).
    Fp32,
}

impl Precision {
    /// `clip.load`'s choice: fp16 on CUDA, fp32 on the CPU.
    pub fn for_device(device: Device) -> Self {
        if device.is_cuda() {
            Self::Fp16
        } else {
            Self::Fp32
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp16 => "fp16",
            Self::Fp32 => "fp32",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Self::Fp16, Self::Fp32]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown precision {s:?}; valid: fp16, fp32"))
    }
}

/// Everything that can go wrong when loading a model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{path}: {source}")]
    Config { path: std::path::PathBuf, source: ConfigError },
}

/// A model ready to use: its variables (frozen) and its modules.
pub struct LoadedClip {
    pub vs: nn::VarStore,
    pub model: Clip,
}

impl LoadedClip {
    /// `clip.load(path, device, jit=False)`: reads any supported checkpoint format, infers the
    /// architecture, loads every weight strictly, and sets the precision for the device (fp16 on
    /// CUDA, fp32 on the CPU).
    pub fn load(path: &Path, device: Device) -> Result<Self, LoadError> {
        Self::load_with(path, device, Precision::for_device(device), &|| false)
    }

    /// [`load`](Self::load) in the given precision, asking `stop` between tensors whether to give
    /// up (`WeightsError::Interrupted`).
    pub fn load_with(
        path: &Path,
        device: Device,
        precision: Precision,
        stop: &dyn Fn() -> bool,
    ) -> Result<Self, LoadError> {
        let state_dict = StateDict::load_with(path, stop)?;
        Self::from_state_dict_with(&state_dict, device, precision, stop)
    }

    pub fn from_state_dict(state_dict: &StateDict, device: Device) -> Result<Self, LoadError> {
        Self::from_state_dict_with(state_dict, device, Precision::for_device(device), &|| false)
    }

    fn from_state_dict_with(
        state_dict: &StateDict,
        device: Device,
        precision: Precision,
        stop: &dyn Fn() -> bool,
    ) -> Result<Self, LoadError> {
        let shapes: BTreeMap<String, Vec<i64>> =
            state_dict.keys().filter_map(|k| Some((k.to_string(), state_dict.shape(k)?))).collect();
        let config = ClipConfig::from_shapes(&shapes)
            .map_err(|source| LoadError::Config { path: state_dict.path.clone(), source })?;
        let mut vs = nn::VarStore::new(device);
        let mut model = tch::no_grad(|| Clip::new(&vs.root(), &config));
        state_dict.load_into_with(&vs, &METADATA_KEYS, stop)?;
        if precision == Precision::Fp16 {
            convert_weights(&vs);
        }
        vs.freeze();
        model.set_layout(Layout::for_device(device));
        Ok(Self { vs, model })
    }

    /// A randomly initialised model of a given configuration (benchmarks, tests), in the
    /// device's default precision.
    pub fn random(config: &ClipConfig, device: Device) -> Self {
        Self::random_with(config, device, Precision::for_device(device))
    }

    /// [`random`](Self::random) in the given precision.
    pub fn random_with(config: &ClipConfig, device: Device, precision: Precision) -> Self {
        let mut vs = nn::VarStore::new(device);
        let mut model = tch::no_grad(|| Clip::new(&vs.root(), config));
        if precision == Precision::Fp16 {
            convert_weights(&vs);
        }
        vs.freeze();
        model.set_layout(Layout::for_device(device));
        Self { vs, model }
    }
}

/// `convert_weights`: the reference's fp16 conversion, applied in place.
pub fn convert_weights(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (key, mut var) in vs.variables() {
            if converted_to_fp16(&key) && var.is_floating_point() {
                var.set_data(&var.to_kind(Kind::Half));
            }
        }
    });
}
