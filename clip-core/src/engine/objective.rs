//! What the optimisation minimises: for each prompt's image, `1 − cosine(image, prompt)` averaged
//! over the image's views, plus `tv_weight ×` its total variation — and, beyond the seed, negative
//! prompts and ensembles of models.
//!
//! Mirrors the seed's `image_features / image_features.norm(dim=-1, keepdim=True)` (likewise for the
//! text) followed by the row-wise dot product; the loss is `1 − cosine`; and its TV penalty. The
//! batch's loss is the *sum* of the prompts' losses, so every image gets the gradient it would get
//! alone.
//!
//! Each model of the objective (a [`Member`]) scores the views resampled to its own input
//! resolution, and has its own loss: `(1 − cos(view, prompt)) + negative_weight × mean over the
//! negatives of cos(view, negative)` (each averaged over the image's views). An image's similarity
//! loss is the weighted mean of its members' losses (with one member, that member's loss as it
//! is, not multiplied by 1); the TV is added once. Without negatives and with one model this is
//! the seed's objective, operation for operation.

use super::augment;
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

/// One model of the objective: its prompts' and negative prompts' text features and its weight.
#[derive(Debug, Clone, Copy)]
pub struct Member<'m, 't> {
    pub model: &'m Clip,
    /// The prompts' text features [N, D] under this model, raw or normalised, on its device.
    pub text: &'t Tensor,
    /// The negative prompts' text features [K, D] under this model; `None`: no negatives.
    pub negatives: Option<&'t Tensor>,
    /// The member's weight in the ensemble's weighted mean (> 0; normalised to sum to 1).
    pub weight: f64,
}

/// A member's part of the objective, ready for the step.
#[derive(Debug)]
struct Term<'a> {
    model: &'a Clip,
    /// Normalised prompt features [N, D], fp32.
    text: Tensor,
    /// Normalised negative features, transposed: [D, K], fp32.
    negatives_t: Option<Tensor>,
    /// The weight divided by the sum of weights.
    weight: f64,
    resolution: i64,
}

/// The objective: the prompts under each model, the negatives, and how the views of an image and
/// its TV enter the loss.
#[derive(Debug)]
pub struct Objective<'a> {
    terms: Vec<Term<'a>>,
    /// Views per image (cutouts): a prompt's similarity is the mean over its views.
    pub views_per_image: i64,
    pub tv_weight: f64,
    /// The weight of the negatives' mean similarity in each member's loss.
    pub negative_weight: f64,
    normalize: Normalize,
}

/// One evaluation of the objective, per prompt ([N] each).
#[derive(Debug)]
pub struct Evaluation {
    /// The (weighted mean over the models of the) mean cosine similarity of the prompt's views
    /// with its text.
    pub similarity: Tensor,
    /// With several models: each one's similarity, in the members' order; empty with one.
    pub per_member: Vec<Tensor>,
    /// With negatives: the (weighted mean over the models of the) mean similarity of the views
    /// with the negatives.
    pub negative: Option<Tensor>,
    /// The loss without the TV: `1 − similarity + negative_weight × negative` (per member, then
    /// their weighted mean); `1 − similarity` for the seed's objective.
    pub similarity_loss: Tensor,
    /// The un-weighted total variation of the image.
    pub tv: Tensor,
    /// The scalar to minimise: `Σ similarity_loss + tv_weight · Σ tv`.
    pub loss: Tensor,
}

/// Normalised rows, fp32, without gradient.
fn normalized(features: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let t = features.to_kind(Kind::Float);
        &t / t.norm_scalaropt_dim(2, [-1], true)
    })
}

impl<'a> Objective<'a> {
    /// The seed's objective: one model, `text_features` [N, D] raw or normalised on its device.
    pub fn new(
        model: &'a Clip,
        text_features: &Tensor,
        views_per_image: i64,
        tv_weight: f64,
    ) -> Self {
        let member = Member { model, text: text_features, negatives: None, weight: 1.0 };
        Self::ensemble(&[member], views_per_image, tv_weight, 0.0)
    }

    /// The objective of several models (at least one), each with its own text features, and
    /// negatives weighted by `negative_weight`.
    pub fn ensemble(
        members: &[Member<'a, '_>],
        views_per_image: i64,
        tv_weight: f64,
        negative_weight: f64,
    ) -> Self {
        let total: f64 = members.iter().map(|m| m.weight).sum();
        let terms = members
            .iter()
            .map(|m| Term {
                model: m.model,
                text: normalized(m.text),
                negatives_t: m.negatives.map(|n| normalized(n).transpose(0, 1).contiguous()),
                weight: m.weight / total,
                resolution: m.model.config.image_resolution,
            })
            .collect::<Vec<_>>();
        let device = terms.first().map_or(tch::Device::Cpu, |t| t.text.device());
        Self {
            terms,
            views_per_image,
            tv_weight,
            negative_weight,
            normalize: Normalize::new(device),
        }
    }

    /// The input resolution the views are made at: the largest of the models'.
    pub fn view_resolution(&self) -> i64 {
        self.terms.iter().map(|t| t.resolution).max().unwrap_or(0)
    }

    /// Prompts in the batch.
    pub fn batch(&self) -> i64 {
        self.terms.first().map_or(0, |t| t.text.size()[0])
    }

    /// Models in the objective.
    pub fn members(&self) -> usize {
        self.terms.len()
    }

    /// Whether negatives enter the loss.
    pub fn has_negatives(&self) -> bool {
        self.terms.iter().any(|t| t.negatives_t.is_some())
    }

    /// One model's image features of the views, the views resampled to its resolution.
    fn features(&self, term: &Term, views: &Tensor) -> Tensor {
        let views = if views.size()[3] == term.resolution && views.size()[2] == term.resolution {
            views.shallow_clone()
        } else {
            augment::resample(views, term.resolution)
        };
        term.model.encode_image(&self.normalize.forward(&views))
    }

    /// The mean over each image's views of a per-view quantity [N · views_per_image].
    fn per_image(&self, per_view: Tensor) -> Tensor {
        per_view.view([self.batch(), self.views_per_image]).mean_dim(1, false, Kind::Float)
    }

    /// The prompts' mean similarity [N] over the views [N · views_per_image, 3, R, R] in [0, 1]
    /// under the first model.
    pub fn similarity(&self, views: &Tensor) -> Tensor {
        let term = &self.terms[0];
        self.prompt_similarity(term, &self.features(term, views))
    }

    fn prompt_similarity(&self, term: &Term, features: &Tensor) -> Tensor {
        let text = if self.views_per_image == 1 {
            term.text.shallow_clone()
        } else {
            term.text.repeat_interleave_self_int(self.views_per_image, 0, None)
        };
        self.per_image(cosine_similarity(features, &text))
    }

    /// The objective for `views` of `image` [N, 3, H, W]. The TV enters the graph only when it is
    /// weighted; it is always measured.
    pub fn evaluate(&self, views: &Tensor, image: &Tensor) -> Evaluation {
        let several = self.terms.len() > 1;
        let mut similarity: Option<Tensor> = None;
        let mut negative: Option<Tensor> = None;
        let mut similarity_loss: Option<Tensor> = None;
        let mut per_member = Vec::new();
        let weighted = |t: Tensor, w: f64| if several { t * w } else { t };
        let accumulate = |acc: &mut Option<Tensor>, t: Tensor| {
            *acc = Some(match acc.take() {
                Some(a) => a + t,
                None => t,
            });
        };
        for term in &self.terms {
            let features = self.features(term, views);
            let sim = self.prompt_similarity(term, &features);
            let mut loss = sim.neg() + 1.0;
            if let Some(negatives_t) = &term.negatives_t {
                let f = features.to_kind(Kind::Float);
                let f = &f / f.norm_scalaropt_dim(2, [-1], true);
                let neg = self.per_image(f.matmul(negatives_t).mean_dim(1, false, Kind::Float));
                loss += &neg * self.negative_weight;
                accumulate(&mut negative, weighted(neg, term.weight));
            }
            accumulate(&mut similarity_loss, weighted(loss, term.weight));
            if several {
                per_member.push(sim.shallow_clone());
            }
            accumulate(&mut similarity, weighted(sim, term.weight));
        }
        let similarity = similarity.expect("an objective has at least one model");
        let similarity_loss = similarity_loss.expect("an objective has at least one model");
        let tv = if self.tv_weight > 0.0 {
            total_variation(image)
        } else {
            total_variation(&image.detach())
        };
        let mut loss = similarity_loss.sum(Kind::Float);
        if self.tv_weight > 0.0 {
            loss += tv.sum(Kind::Float) * self.tv_weight;
        }
        Evaluation { similarity, per_member, negative, similarity_loss, tv, loss }
    }
}
