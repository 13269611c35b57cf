//! `VisionTransformer`, the vision tower of CLIP's ViT-B/32, ViT-B/16, ViT-L/14 and ViT-L/14@336px.
//!
//! Mirrors `clip/model.py` (openai-clip 1.0.1): `VisionTransformer`. Patch embedding by a strided
//! convolution without bias (`conv1`), a class token (`class_embedding`), learned positions,
//! `ln_pre`, the transformer, `ln_post` on the class token and the projection `proj`.

use super::transformer::{LayerNorm, Transformer};
use tch::nn::{self, Module};
use tch::Tensor;

#[derive(Debug)]
pub struct VisionTransformer {
    pub conv1: nn::Conv2D,
    pub class_embedding: Tensor,
    pub positional_embedding: Tensor,
    pub ln_pre: LayerNorm,
    pub transformer: Transformer,
    pub ln_post: LayerNorm,
    pub proj: Tensor,
}

impl VisionTransformer {
    pub fn new(
        vs: nn::Path,
        resolution: i64,
        patch_size: i64,
        width: i64,
        layers: i64,
        heads: i64,
        output_dim: i64,
    ) -> Self {
        let config = nn::ConvConfig { stride: patch_size, bias: false, ..Default::default() };
        let scale = (width as f64).powf(-0.5);
        let randn = nn::Init::Randn { mean: 0., stdev: scale };
        let grid = resolution / patch_size;
        Self {
            conv1: nn::conv2d(&vs / "conv1", 3, width, patch_size, config),
            class_embedding: vs.var("class_embedding", &[width], randn),
            positional_embedding: vs.var("positional_embedding", &[grid * grid + 1, width], randn),
            ln_pre: LayerNorm::new(&vs / "ln_pre", width),
            transformer: Transformer::new(&vs / "transformer", width, layers, heads),
            ln_post: LayerNorm::new(&vs / "ln_post", width),
            proj: vs.var("proj", &[width, output_dim], randn),
        }
    }
}

impl Module for VisionTransformer {
    /// [N, 3, R, R] → [N, output_dim].
    fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = xs.to_kind(self.conv1.ws.kind()).apply(&self.conv1); // [N, width, grid, grid]
        let (n, width, _, _) = xs.size4().expect("patch embedding is [N, C, H, W]");
        let xs = xs.reshape([n, width, -1]).permute([0, 2, 1]); // [N, grid², width]
        let kind = xs.kind();
        let class =
            self.class_embedding.to_kind(kind).view([1, 1, width]).expand([n, 1, width], false);
        let xs = Tensor::cat(&[class, xs], 1) + self.positional_embedding.to_kind(kind);
        let xs = self.transformer.forward(&xs.apply(&self.ln_pre), false);
        xs.select(1, 0).apply(&self.ln_post).matmul(&self.proj)
    }
}
