//! Constants of the ViT-B/32 experiment: the seed's prompts and settings for `cargo run -p vit-b
//! --bin constrained` and `--bin unconstrained`. All logic is in `clip_core::app::experiment`.

use clip_core::app::experiment::Experiment;

/// The released model, as `clip.load` names it.
pub const MODEL_NAME: &str = "ViT-B/32";
/// The model's token in result paths and file names: `results/ViT-B/<mode>_ViT-B_<prompt>.png`.
pub const RESULTS_TOKEN: &str = "ViT-B";
pub const TEXT_PROMPTS: [&str; 3] =
    ["A cute golden retriever", "A snow-covered mountain peak", "A bright red tomato"];
pub const LEARNING_RATE: f64 = 0.05;
pub const STEPS: usize = 10_000;
/// Weight of the total-variation penalty (constrained runs only).
pub const TV_WEIGHT: f64 = 1e-4;

pub const EXPERIMENT: Experiment = Experiment {
    model: MODEL_NAME,
    results_token: RESULTS_TOKEN,
    prompts: &TEXT_PROMPTS,
    learning_rate: LEARNING_RATE,
    steps: STEPS,
    tv_weight: TV_WEIGHT,
};
