//! `VisionTransformer`, the vision tower of CLIP's ViT-B/32, ViT-B/16, ViT-L/14 and ViT-L/14@336px.
//!
//! Mirrors `clip/model.py` (openai-clip 1.0.1): `VisionTransformer`. Patch embedding by a strided
//! convolution without bias (`conv1`), a class token (`class_embedding`), learned positions,
//! `ln_pre`, the transformer, `ln_post` on the class token and the projection `proj`.
//!
//! The patch embedding can also run as what that convolution is — each 3×P×P patch times the
//! kernel — through a reshape and one matrix product with `conv1.weight` viewed as
//! [width, 3·P·P] ([`PatchEmbedding::MatMul`], the default): the same function with another
//! summation order. cuDNN picks a pathological algorithm for ViT-L/14's 14×14, stride-14
//! convolution at small batches (70–480 ms per forward + input gradient on an H100 for 1–8 images,
//! against 0.3–0.8 ms as a matrix product: `docs/gpu.md`).

use super::transformer::{LayerNorm, Transformer};
use tch::nn::{self, Module};
use tch::Tensor;

/// How the patch embedding is computed (the weights are `conv1.weight` either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatchEmbedding {
    /// `conv1` as a strided convolution, as the reference.
    Convolution,
    /// The image cut into patches by a reshape, times the kernel as one matrix.
    #[default]
    MatMul,
}

#[derive(Debug)]
pub struct VisionTransformer {
    pub conv1: nn::Conv2D,
    pub class_embedding: Tensor,
    pub positional_embedding: Tensor,
    pub ln_pre: LayerNorm,
    pub transformer: Transformer,
    pub ln_post: LayerNorm,
    pub proj: Tensor,
    pub patch_embedding: PatchEmbedding,
    patch_size: i64,
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
            patch_embedding: PatchEmbedding::default(),
            patch_size,
        }
    }
}

impl VisionTransformer {
    /// [N, 3, H, W] → the patches' embeddings [N, (H/P)·(W/P), width], row-major over the grid as
    /// the reference's `conv1(x).reshape(N, width, -1).permute(0, 2, 1)`.
    pub fn embed_patches(&self, xs: &Tensor) -> Tensor {
        let xs = xs.to_kind(self.conv1.ws.kind());
        match self.patch_embedding {
            PatchEmbedding::Convolution => {
                let xs = xs.apply(&self.conv1); // [N, width, grid, grid]
                let (n, width, _, _) = xs.size4().expect("patch embedding is [N, C, H, W]");
                xs.reshape([n, width, -1]).permute([0, 2, 1])
            }
            PatchEmbedding::MatMul => {
                let (n, c, h, w) = xs.size4().expect("images are [N, C, H, W]");
                let p = self.patch_size;
                let (gh, gw) = (h / p, w / p);
                // A stride-P convolution without padding ignores a remainder of rows or columns.
                let xs = xs.narrow(2, 0, gh * p).narrow(3, 0, gw * p);
                let patches = xs
                    .reshape([n, c, gh, p, gw, p])
                    .permute([0, 2, 4, 1, 3, 5]) // [N, gh, gw, C, P, P]
                    .reshape([n, gh * gw, c * p * p]);
                let kernel = self.conv1.ws.reshape([-1, c * p * p]); // [width, C·P·P]
                patches.matmul(&kernel.tr())
            }
        }
    }
}

impl Module for VisionTransformer {
    /// [N, 3, R, R] → [N, output_dim].
    fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = self.embed_patches(xs); // [N, grid², width]
        let (n, width) = (xs.size()[0], xs.size()[2]);
        let kind = xs.kind();
        let class =
            self.class_embedding.to_kind(kind).view([1, 1, width]).expand([n, 1, width], false);
        let xs = Tensor::cat(&[class, xs], 1) + self.positional_embedding.to_kind(kind);
        let xs = self.transformer.forward(&xs.apply(&self.ln_pre), false);
        xs.select(1, 0).apply(&self.ln_post).matmul(&self.proj)
    }
}
