//! TEMPORARY stub (replaced by the preprocess branch): exact-size images only.
use std::path::Path;
use tch::{Kind, Tensor};
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PreprocessError(String);
pub fn preprocess_path(path: &Path, n: u32) -> Result<Tensor, PreprocessError> {
    let img = image::open(path).map_err(|e| PreprocessError(e.to_string()))?.to_rgb8();
    assert_eq!(img.width(), n);
    let t = Tensor::from_slice(img.as_raw())
        .view([n as i64, n as i64, 3])
        .permute([2, 0, 1])
        .to_kind(Kind::Float)
        / 255.0;
    let mean = Tensor::from_slice(&CLIP_MEAN).to_kind(Kind::Float).view([3, 1, 1]);
    let std = Tensor::from_slice(&CLIP_STD).to_kind(Kind::Float).view([3, 1, 1]);
    Ok((t - mean) / std)
}
