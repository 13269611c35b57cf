//! CLIP's hyper-parameters: the nine released configurations (named constructors; by model name in
//! `clip::released`), and inference from a checkpoint's shapes exactly as the reference
//! `build_model` does.
//!
//! Mirrors `CLIP.__init__` and `build_model` in `clip/model.py` (openai-clip 1.0.1). Head counts are
//! derived, not stored: `width / 64` for transformers, `width * 32 / 64` for the ResNet's attention pool.

use std::collections::BTreeMap;

/// The vision tower's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisionConfig {
    /// `ModifiedResNet(layers, output_dim, heads = width * 32 / 64, input_resolution, width)`.
    ResNet { layers: [i64; 4], width: i64 },
    /// `VisionTransformer(input_resolution, patch_size, width, layers, heads = width / 64, output_dim)`.
    ViT { patch_size: i64, width: i64, layers: i64 },
}

/// The arguments of the reference `CLIP(...)` constructor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipConfig {
    pub embed_dim: i64,
    pub image_resolution: i64,
    pub vision: VisionConfig,
    pub context_length: i64,
    pub vocab_size: i64,
    pub transformer_width: i64,
    pub transformer_layers: i64,
}

/// A checkpoint whose shapes do not describe a CLIP model.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("key '{0}' is missing: the checkpoint is not an OpenAI CLIP state dict")]
    MissingKey(String),
    #[error("key '{key}' has shape {shape:?}, which no CLIP model has ({why})")]
    BadShape { key: String, shape: Vec<i64>, why: &'static str },
}

const TEXT_CONTEXT: i64 = 77;
const VOCAB: i64 = 49408;

impl ClipConfig {
    const fn resnet(
        embed_dim: i64,
        resolution: i64,
        layers: [i64; 4],
        width: i64,
        text_width: i64,
    ) -> Self {
        Self {
            embed_dim,
            image_resolution: resolution,
            vision: VisionConfig::ResNet { layers, width },
            context_length: TEXT_CONTEXT,
            vocab_size: VOCAB,
            transformer_width: text_width,
            transformer_layers: 12,
        }
    }

    const fn vit(
        embed_dim: i64,
        resolution: i64,
        patch_size: i64,
        width: i64,
        layers: i64,
        text_width: i64,
    ) -> Self {
        Self {
            embed_dim,
            image_resolution: resolution,
            vision: VisionConfig::ViT { patch_size, width, layers },
            context_length: TEXT_CONTEXT,
            vocab_size: VOCAB,
            transformer_width: text_width,
            transformer_layers: 12,
        }
    }

    pub const fn rn50() -> Self {
        Self::resnet(1024, 224, [3, 4, 6, 3], 64, 512)
    }
    pub const fn rn101() -> Self {
        Self::resnet(512, 224, [3, 4, 23, 3], 64, 512)
    }
    pub const fn rn50x4() -> Self {
        Self::resnet(640, 288, [4, 6, 10, 6], 80, 640)
    }
    pub const fn rn50x16() -> Self {
        Self::resnet(768, 384, [6, 8, 18, 8], 96, 768)
    }
    pub const fn rn50x64() -> Self {
        Self::resnet(1024, 448, [3, 15, 36, 10], 128, 1024)
    }
    pub const fn vit_b_32() -> Self {
        Self::vit(512, 224, 32, 768, 12, 512)
    }
    pub const fn vit_b_16() -> Self {
        Self::vit(512, 224, 16, 768, 12, 512)
    }
    pub const fn vit_l_14() -> Self {
        Self::vit(768, 224, 14, 1024, 24, 768)
    }
    pub const fn vit_l_14_336() -> Self {
        Self::vit(768, 336, 14, 1024, 24, 768)
    }

    pub fn vision_heads(&self) -> i64 {
        match self.vision {
            VisionConfig::ResNet { width, .. } => width * 32 / 64,
            VisionConfig::ViT { width, .. } => width / 64,
        }
    }

    pub fn transformer_heads(&self) -> i64 {
        self.transformer_width / 64
    }

    /// The reference `build_model`'s inference, from each state-dict key's shape.
    pub fn from_shapes(shapes: &BTreeMap<String, Vec<i64>>) -> Result<Self, ConfigError> {
        let shape =
            |key: &str| shapes.get(key).ok_or_else(|| ConfigError::MissingKey(key.to_string()));
        let dim = |key: &str, rank: usize, axis: usize| -> Result<i64, ConfigError> {
            let s = shape(key)?;
            match s.get(axis) {
                Some(&d) if s.len() == rank && d > 0 => Ok(d),
                _ => Err(ConfigError::BadShape {
                    key: key.to_string(),
                    shape: s.clone(),
                    why: "unexpected rank",
                }),
            }
        };
        // `len(set(k.split(".")[2] for k in state_dict if k.startswith(prefix)))`
        let count_blocks = |prefix: &str| {
            let ids: std::collections::BTreeSet<&str> = shapes
                .keys()
                .filter(|k| k.starts_with(prefix))
                .filter_map(|k| k.split('.').nth(2))
                .collect();
            ids.len() as i64
        };
        let square_side = |key: &str| -> Result<i64, ConfigError> {
            let positions = dim(key, 2, 0)?;
            let side = ((positions - 1) as f64).sqrt().round() as i64;
            if side * side + 1 != positions {
                let why = "the number of positions is not a square plus one";
                return Err(ConfigError::BadShape {
                    key: key.to_string(),
                    shape: shape(key)?.clone(),
                    why,
                });
            }
            Ok(side)
        };

        let (vision, image_resolution) = if shapes.contains_key("visual.proj") {
            let width = dim("visual.conv1.weight", 4, 0)?;
            let patch_size = dim("visual.conv1.weight", 4, 3)?;
            let layers = shapes
                .keys()
                .filter(|k| k.starts_with("visual.") && k.ends_with(".attn.in_proj_weight"))
                .count() as i64;
            let grid = square_side("visual.positional_embedding")?;
            (VisionConfig::ViT { patch_size, width, layers }, patch_size * grid)
        } else {
            let layers = [1, 2, 3, 4].map(|b| count_blocks(&format!("visual.layer{b}")));
            let width = dim("visual.layer1.0.conv1.weight", 4, 0)?;
            let grid = square_side("visual.attnpool.positional_embedding")?;
            (VisionConfig::ResNet { layers, width }, grid * 32)
        };
        let config = Self {
            embed_dim: dim("text_projection", 2, 1)?,
            image_resolution,
            vision,
            context_length: dim("positional_embedding", 2, 0)?,
            vocab_size: dim("token_embedding.weight", 2, 0)?,
            transformer_width: dim("ln_final.weight", 1, 0)?,
            transformer_layers: count_blocks("transformer.resblocks"),
        };
        let width = config.transformer_width;
        if width % 64 != 0 {
            let why = "the text width must be a multiple of 64 (heads = width / 64)";
            return Err(ConfigError::BadShape {
                key: "ln_final.weight".into(),
                shape: vec![width],
                why,
            });
        }
        Ok(config)
    }
}
