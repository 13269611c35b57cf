//! The transformer blocks shared by the vision and text towers: `LayerNorm` (computed in fp32),
//! `QuickGELU`, multi-head self-attention, `ResidualAttentionBlock` and `Transformer`.
//!
//! Mirrors `clip/model.py` (openai-clip 1.0.1): `LayerNorm`, `QuickGELU`, `ResidualAttentionBlock`,
//! `Transformer`, with `nn.MultiheadAttention`'s parameters (`attn.in_proj_weight`, `attn.in_proj_bias`,
//! `attn.out_proj.{weight,bias}`). The reference runs the blocks sequence-first (LND); here they run
//! batch-first (NLD), which is the same function, and attention goes through
//! `scaled_dot_product_attention` (fused kernels on CUDA). The text tower's causal mask is built
//! by the attention kernel (`is_causal`), never loaded: it is in no state dict.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// `clip.model.LayerNorm`: torch's LayerNorm evaluated in fp32, result cast back to the input's kind.
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    width: i64,
}

impl LayerNorm {
    pub fn new(vs: nn::Path, width: i64) -> Self {
        let weight = vs.var("weight", &[width], nn::Init::Const(1.));
        let bias = vs.var("bias", &[width], nn::Init::Const(0.));
        Self { weight, bias, width }
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let kind = xs.kind();
        xs.to_kind(Kind::Float)
            .layer_norm([self.width], Some(&self.weight), Some(&self.bias), 1e-5, true)
            .to_kind(kind)
    }
}

/// `clip.model.QuickGELU`: `x * sigmoid(1.702 x)`.
pub fn quick_gelu(xs: &Tensor) -> Tensor {
    xs * (xs * 1.702).sigmoid()
}

/// `nn.MultiheadAttention(d_model, n_head)` used as self-attention, optionally causal.
#[derive(Debug)]
pub struct MultiheadAttention {
    pub in_proj_weight: Tensor,
    pub in_proj_bias: Tensor,
    pub out_proj: nn::Linear,
    heads: i64,
}

impl MultiheadAttention {
    pub fn new(vs: nn::Path, width: i64, heads: i64) -> Self {
        let bound = (6.0 / (2 * width) as f64).sqrt(); // xavier_uniform_, as torch initialises in_proj_weight
        let in_proj_weight = vs.var(
            "in_proj_weight",
            &[3 * width, width],
            nn::Init::Uniform { lo: -bound, up: bound },
        );
        let in_proj_bias = vs.var("in_proj_bias", &[3 * width], nn::Init::Const(0.));
        let out_proj = nn::linear(&vs / "out_proj", width, width, Default::default());
        Self { in_proj_weight, in_proj_bias, out_proj, heads }
    }

    /// Self-attention over `xs` of shape [N, L, E].
    pub fn forward(&self, xs: &Tensor, causal: bool) -> Tensor {
        let (n, l, e) = xs.size3().expect("attention input is [N, L, E]");
        let head_dim = e / self.heads;
        let qkv = xs
            .linear(&self.in_proj_weight, Some(&self.in_proj_bias))
            .view([n, l, 3, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]); // [3, N, H, L, Dh]
        let attn = Tensor::scaled_dot_product_attention(
            &qkv.get(0),
            &qkv.get(1),
            &qkv.get(2),
            None::<Tensor>,
            0.0,
            causal,
            None,
            false,
        );
        attn.transpose(1, 2).reshape([n, l, e]).apply(&self.out_proj)
    }
}

/// `clip.model.ResidualAttentionBlock`: pre-norm attention and a 4× QuickGELU MLP (`mlp.c_fc`, `mlp.c_proj`).
#[derive(Debug)]
pub struct ResidualAttentionBlock {
    pub attn: MultiheadAttention,
    pub ln_1: LayerNorm,
    pub c_fc: nn::Linear,
    pub c_proj: nn::Linear,
    pub ln_2: LayerNorm,
}

impl ResidualAttentionBlock {
    pub fn new(vs: nn::Path, width: i64, heads: i64) -> Self {
        let mlp = &vs / "mlp";
        Self {
            attn: MultiheadAttention::new(&vs / "attn", width, heads),
            ln_1: LayerNorm::new(&vs / "ln_1", width),
            c_fc: nn::linear(&mlp / "c_fc", width, 4 * width, Default::default()),
            c_proj: nn::linear(&mlp / "c_proj", 4 * width, width, Default::default()),
            ln_2: LayerNorm::new(&vs / "ln_2", width),
        }
    }

    pub fn forward(&self, xs: &Tensor, causal: bool) -> Tensor {
        let xs = xs + self.attn.forward(&xs.apply(&self.ln_1), causal);
        let mlp = quick_gelu(&xs.apply(&self.ln_2).apply(&self.c_fc)).apply(&self.c_proj);
        xs + mlp
    }
}

/// `clip.model.Transformer`: `resblocks.0 … resblocks.{layers-1}`.
#[derive(Debug)]
pub struct Transformer {
    pub resblocks: Vec<ResidualAttentionBlock>,
}

impl Transformer {
    pub fn new(vs: nn::Path, width: i64, layers: i64, heads: i64) -> Self {
        let blocks = &vs / "resblocks";
        let resblocks =
            (0..layers).map(|i| ResidualAttentionBlock::new(&blocks / i, width, heads)).collect();
        Self { resblocks }
    }

    /// `xs`: [N, L, E] (batch first).
    pub fn forward(&self, xs: &Tensor, causal: bool) -> Tensor {
        self.resblocks.iter().fold(xs.shallow_clone(), |xs, block| block.forward(&xs, causal))
    }
}
