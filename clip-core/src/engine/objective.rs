//! What the optimisation minimises: for each prompt's image, `1 − cosine(image, prompt)` averaged
//! over the image's views, plus `tv_weight ×` its total variation.
//!
//! Mirrors the seed's `image_features / image_features.norm(dim=-1, keepdim=True)` (likewise for the
//! text) followed by the row-wise dot product; the loss is `1 − cosine`; and its TV penalty. The
//! batch's loss is the *sum* of the prompts' losses, so every image gets the gradient it would get
//! alone.

use crate::clip::model::Clip;
use crate::clip::preprocess::{CLIP_MEAN, CLIP_STD};
use tch::{Device, Kind, Tensor};

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

/// CLIP's mean/std normalisation over dim 1 of [N, 3, H, W] (as `preprocess::normalize`), with
/// the constants made once on the device so the step copies nothing from the host.
#[derive(Debug)]
pub struct Normalize {
    mean: Tensor,
    std: Tensor,
}

impl Normalize {
    pub fn new(device: Device) -> Self {
        let stat = |v: &[f64; 3]| {
            Tensor::from_slice(v).to_kind(Kind::Float).to_device(device).view([1, 3, 1, 1])
        };
        Self { mean: stat(&CLIP_MEAN), std: stat(&CLIP_STD) }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        (x - &self.mean) / &self.std
    }
}

/// The prompts' side of the objective: their normalised text features, and how the views of an
/// image and its TV enter the loss.
#[derive(Debug)]
pub struct Objective {
    /// Normalised text features [N, D], fp32, on the model's device.
    pub text: Tensor,
    /// Views per image (cutouts): a prompt's similarity is the mean over its views.
    pub views_per_image: i64,
    pub tv_weight: f64,
    normalize: Normalize,
}

/// One evaluation of the objective, per prompt ([N] each).
#[derive(Debug)]
pub struct Evaluation {
    /// Mean cosine similarity of the prompt's views with its text.
    pub similarity: Tensor,
    /// `1 − similarity`.
    pub similarity_loss: Tensor,
    /// The un-weighted total variation of the image.
    pub tv: Tensor,
    /// The scalar to minimise: `Σ similarity_loss + tv_weight · Σ tv`.
    pub loss: Tensor,
}

impl Objective {
    /// `text_features` [N, D], raw or normalised, on the model's device.
    pub fn new(text_features: &Tensor, views_per_image: i64, tv_weight: f64) -> Self {
        let text = tch::no_grad(|| {
            let t = text_features.to_kind(Kind::Float);
            &t / t.norm_scalaropt_dim(2, [-1], true)
        });
        let normalize = Normalize::new(text.device());
        Self { text, views_per_image, tv_weight, normalize }
    }

    /// The prompts' mean similarity [N] over the views [N · views_per_image, 3, R, R] in [0, 1].
    pub fn similarity(&self, model: &Clip, views: &Tensor) -> Tensor {
        let features = model.encode_image(&self.normalize.forward(views));
        let batch = self.text.size()[0];
        let text = if self.views_per_image == 1 {
            self.text.shallow_clone()
        } else {
            self.text.repeat_interleave_self_int(self.views_per_image, 0, None)
        };
        cosine_similarity(&features, &text).view([batch, self.views_per_image]).mean_dim(
            1,
            false,
            Kind::Float,
        )
    }

    /// The objective for `views` of `image` [N, 3, H, W]. The TV enters the graph only when it is
    /// weighted; it is always measured.
    pub fn evaluate(&self, model: &Clip, views: &Tensor, image: &Tensor) -> Evaluation {
        let similarity = self.similarity(model, views);
        let similarity_loss = similarity.neg() + 1.0;
        let tv = if self.tv_weight > 0.0 {
            total_variation(image)
        } else {
            total_variation(&image.detach())
        };
        let mut loss = similarity_loss.sum(Kind::Float);
        if self.tv_weight > 0.0 {
            loss += tv.sum(Kind::Float) * self.tv_weight;
        }
        Evaluation { similarity, similarity_loss, tv, loss }
    }
}
