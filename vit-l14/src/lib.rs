//! Constants of the ViT-L/14 experiment: the seed's prompts and settings for `cargo run -p vit-l14
//! --bin constrained` and `--bin unconstrained`. All logic is in `clip_app` (`experiment`
//! runs them as presets of the engine); edit these to change the experiment — e.g. `PARAM =
//! Param::FftDecorrelated` and `CONSTRAINED_AUGMENT = &[Augment::Cutouts { n: 32, min_frac: 0.5,
//! pow: 1.0 }]` turns the constrained run into Lucent's parameterisation with 32 cutouts. As
//! shipped, each binary writes the same images as `clip generate --model ViT-L/14 --preset <mode>`.

use clip_app::experiment::{Experiment, Recipe};
use clip_core::clip::released::{self, ReleasedModel};
use clip_core::engine::augment::{affine::RandomAffine, Augment};
use clip_core::engine::optimize::Keep;
use clip_core::engine::param::{Canvas, Param};

/// The released model (`clip_core::clip::released`: RN50, VIT_B_32, VIT_L_14, …); results go to
/// `results/ViT-L-14/`.
pub const MODEL: &ReleasedModel = &released::VIT_L_14;
/// The prompts, one image each (add as many as you like; `--prompt` replaces them).
pub const TEXT_PROMPTS: &[&str] =
    &["A cute golden retriever", "A snow-covered mountain peak", "A bright red tomato"];
/// Negative prompts: every image's loss adds NEGATIVE_WEIGHT × its mean similarity with them,
/// pushing it away from them (e.g. `&["static noise", "a blurry photo"]`; none as shipped, the seed's
/// objective). `--negative` replaces them.
pub const NEGATIVE_PROMPTS: &[&str] = &[];
/// The weight of the negatives' mean similarity in the loss.
pub const NEGATIVE_WEIGHT: f64 = 0.5;
pub const LEARNING_RATE: f64 = 0.05;
pub const STEPS: usize = 10_000;
/// How the image is parameterised: `Pixels` (the seed's), `Fft`, `Decorrelated`, `FftDecorrelated`.
pub const PARAM: Param = Param::Pixels;
/// The FFT parameterisations' decay power.
pub const DECAY: f64 = 1.0;
/// The image's size: `None` is the model's input resolution; e.g. `Some(Canvas::square(448))`.
pub const CANVAS: Option<Canvas> = None;

/// The constrained run: each step's view is augmented in this order, TV-penalised, and the best
/// image kept.
pub const CONSTRAINED_AUGMENT: &[Augment] =
    &[Augment::Affine(RandomAffine::SEED), Augment::Flip { p: 0.3 }];
/// Weight of the total-variation penalty (constrained runs).
pub const TV_WEIGHT: f64 = 1e-4;
pub const CONSTRAINED_KEEP: Keep = Keep::Best;

/// The unconstrained run: no augmentation, no penalty, the final image.
pub const UNCONSTRAINED_AUGMENT: &[Augment] = &[];
pub const UNCONSTRAINED_TV_WEIGHT: f64 = 0.0;
pub const UNCONSTRAINED_KEEP: Keep = Keep::Last;

pub const EXPERIMENT: Experiment = Experiment {
    model: MODEL,
    prompts: TEXT_PROMPTS,
    negative_prompts: NEGATIVE_PROMPTS,
    negative_weight: NEGATIVE_WEIGHT,
    learning_rate: LEARNING_RATE,
    steps: STEPS,
    param: PARAM,
    decay: DECAY,
    canvas: CANVAS,
    constrained: Recipe {
        augment: CONSTRAINED_AUGMENT,
        tv_weight: TV_WEIGHT,
        keep: CONSTRAINED_KEEP,
    },
    unconstrained: Recipe {
        augment: UNCONSTRAINED_AUGMENT,
        tv_weight: UNCONSTRAINED_TV_WEIGHT,
        keep: UNCONSTRAINED_KEEP,
    },
};
