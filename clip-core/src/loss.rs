//! The seed's objective: cosine similarity of normalised CLIP embeddings.
//!
//! Mirrors the seed's `image_features / image_features.norm(dim=-1, keepdim=True)` (likewise for the
//! text) followed by the row-wise dot product; the loss is `1 − cosine`.

use tch::{Kind, Tensor};

/// Row-wise cosine similarity of `a` and `b` ([N, D] each, or broadcastable), computed in fp32.
pub fn cosine_similarity(a: &Tensor, b: &Tensor) -> Tensor {
    let a = a.to_kind(Kind::Float);
    let b = b.to_kind(Kind::Float);
    let a = &a / a.norm_scalaropt_dim(2, [-1], true);
    let b = &b / b.norm_scalaropt_dim(2, [-1], true);
    (a * b).sum_dim_intlist(&[-1i64][..], false, Kind::Float)
}
