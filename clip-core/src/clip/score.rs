//! Scoring images against texts as the seed's final check does (and as `clip.load`'s users do):
//! the image file through CLIP's `preprocess`, both embeddings normalised, their cosine —
//! `image_features /= image_features.norm(dim=-1, keepdim=True)` … `(image_features *
//! text_features).sum(-1)`. Written once here for every caller: a run's re-scoring of its PNG,
//! `clip score`, `clip classify`'s image features, `clip compare` and the Python bindings.
//!
//! Texts are encoded in batches of at most [`TEXT_BATCH`], so encoding a thousand prompts or
//! negatives holds one batch's activations at a time, not a thousand's.

use super::model::Clip;
use super::preprocess::{self, PreprocessError};
use crate::engine::objective::cosine_similarity;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The most texts encoded in one forward pass.
pub const TEXT_BATCH: i64 = 64;

/// Why images or texts could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Image(#[from] PreprocessError),
    #[error("reading back the similarities: {0}")]
    ReadBack(#[from] tch::TchError),
}

/// The raw text features [K, D] of token rows [K, 77] under `model`, on `device`, encoded
/// [`TEXT_BATCH`] rows at a time (no gradient).
pub fn text_features(model: &Clip, tokens: &Tensor, device: Device) -> Tensor {
    tch::no_grad(|| {
        let parts: Vec<Tensor> = tokens
            .split(TEXT_BATCH, 0)
            .iter()
            .map(|part| model.encode_text(&part.to_device(device)))
            .collect();
        if parts.len() == 1 {
            parts.into_iter().next().unwrap_or_else(|| Tensor::empty([0], (Kind::Float, device)))
        } else {
            Tensor::cat(&parts, 0)
        }
    })
}

/// An image file as CLIP's `preprocess` gives it to `model`: [3, R, R] at its input resolution.
pub fn file_pixels(model: &Clip, path: &Path) -> Result<Tensor, PreprocessError> {
    preprocess::preprocess_path(path, model.config.image_resolution as u32)
}

/// The raw image features [N, D] of preprocessed pixels [N, 3, R, R], on `device` (no gradient).
pub fn image_features(model: &Clip, pixels: &Tensor, device: Device) -> Tensor {
    tch::no_grad(|| model.encode_image(&pixels.to_device(device)))
}

/// The cosine of each row of `images` [N, D] with the matching row of `texts` [N, D] (fp32).
pub fn paired(images: &Tensor, texts: &Tensor) -> Result<Vec<f64>, tch::TchError> {
    let sims = tch::no_grad(|| cosine_similarity(images, texts).to_kind(Kind::Double));
    Vec::<f64>::try_from(sims.to_device(Device::Cpu))
}

/// The cosine of each row of `images` [N, D] with each row of `texts` [K, D]: [N][K] (fp32).
pub fn matrix(images: &Tensor, texts: &Tensor) -> Result<Vec<Vec<f64>>, tch::TchError> {
    let (n, k) = (images.size()[0], texts.size()[0]);
    let d = images.size()[1];
    let sims = tch::no_grad(|| {
        let a = images.unsqueeze(1).expand([n, k, d], false);
        let b = texts.unsqueeze(0).expand([n, k, d], false);
        cosine_similarity(&a, &b).to_kind(Kind::Double)
    });
    let flat = Vec::<f64>::try_from(sims.to_device(Device::Cpu).flatten(0, -1))?;
    Ok(flat.chunks(k.max(1) as usize).map(<[f64]>::to_vec).collect())
}

/// The seed's final check for one image file: its similarity with each row of `texts` [K, D]
/// (raw text features, e.g. from [`text_features`]).
pub fn score_file(model: &Clip, path: &Path, texts: &Tensor) -> Result<Vec<f64>, ScoreError> {
    let pixels = file_pixels(model, path)?;
    let features = image_features(model, &pixels.unsqueeze(0), texts.device());
    Ok(matrix(&features, texts)?.into_iter().next().unwrap_or_default())
}
