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

/// The seed's total variation of each image of [N, C, H, W]: the sum of squared differences of
/// vertical and horizontal neighbours, `(x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).sum() +
/// (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).sum()`, per image ([N], fp32). The seed optimises one
/// image, so its whole-batch sum is this per-image sum; summing these over a batch gives every
/// image the gradient it would get alone.
pub fn total_variation(x: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Float);
    let (h, w) = (x.size()[2], x.size()[3]);
    let dy = x.narrow(2, 1, h - 1) - x.narrow(2, 0, h - 1);
    let dx = x.narrow(3, 1, w - 1) - x.narrow(3, 0, w - 1);
    let per_image = |d: Tensor| d.square().sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Float);
    per_image(dy) + per_image(dx)
}
