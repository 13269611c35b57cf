//! The text tower of every CLIP model: token and position embeddings, a causal transformer,
//! `ln_final`, and the projection of the end-of-text token's features.
//!
//! Mirrors `CLIP.encode_text` in `clip/model.py` (openai-clip 1.0.1). Its parameters live at the root
//! of OpenAI's state dict (`token_embedding.weight`, `positional_embedding`, `transformer.*`,
//! `ln_final.*`, `text_projection`), so this module is built on the root path.

use super::transformer::{LayerNorm, Transformer};
use tch::nn;
use tch::{Kind, Tensor};

#[derive(Debug)]
pub struct TextTransformer {
    pub token_embedding: nn::Embedding,
    pub positional_embedding: Tensor,
    pub transformer: Transformer,
    pub ln_final: LayerNorm,
    pub text_projection: Tensor,
}

impl TextTransformer {
    pub fn new(
        vs: nn::Path,
        context_length: i64,
        vocab_size: i64,
        width: i64,
        layers: i64,
        heads: i64,
        embed_dim: i64,
    ) -> Self {
        let embedding = nn::EmbeddingConfig {
            ws_init: nn::Init::Randn { mean: 0., stdev: 0.02 },
            ..Default::default()
        };
        Self {
            token_embedding: nn::embedding(&vs / "token_embedding", vocab_size, width, embedding),
            positional_embedding: vs.var(
                "positional_embedding",
                &[context_length, width],
                nn::Init::Randn { mean: 0., stdev: 0.01 },
            ),
            transformer: Transformer::new(&vs / "transformer", width, layers, heads),
            ln_final: LayerNorm::new(&vs / "ln_final", width),
            text_projection: vs.var(
                "text_projection",
                &[width, embed_dim],
                nn::Init::Randn { mean: 0., stdev: (width as f64).powf(-0.5) },
            ),
        }
    }

    /// Token ids [N, L] (Int64) → [N, embed_dim], L the context length. The features are taken at
    /// each row's highest id, `<|endoftext|>` (the first one where it occurs twice), as the
    /// reference's `argmax`.
    ///
    /// Rows may also be cut short (L < context length, as long as every row's `<|endoftext|>` is
    /// kept): the causal mask means a position never sees the ones after it, so the features at
    /// `<|endoftext|>` are those of the full rows (`clip::zeroshot` encodes its many texts so).
    pub fn forward(&self, tokens: &Tensor, kind: Kind) -> Tensor {
        let length = tokens.size().last().copied().unwrap_or(0);
        let xs = tokens.apply(&self.token_embedding).to_kind(kind)
            + self.positional_embedding.narrow(0, 0, length).to_kind(kind);
        let xs = self.transformer.forward(&xs, true).apply(&self.ln_final);
        let n = tokens.size()[0];
        let rows = Tensor::arange(n, (Kind::Int64, tokens.device()));
        let eot = tokens.argmax(-1, false);
        xs.index(&[Some(rows), Some(eot)]).matmul(&self.text_projection.to_kind(kind))
    }
}
