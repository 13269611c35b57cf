//! [`RunSettings`]: the settings a front end gives on top of a preset — `clip generate`'s flags
//! (clap) and the Python module's keyword arguments (serde, the same names in `snake_case`), one
//! type for both, so a setting added here is a flag and a keyword at once. [`RunSettings::apply`]
//! writes them into a [`RunRequest`].

use super::parse::{
    parse_augment, parse_canvas, parse_decay, parse_epsilon, parse_keep, parse_learning_rate,
    parse_model_weight, parse_name, parse_negative_weight, parse_param, parse_preset, parse_steps,
    parse_tv_weight, AugmentSpec,
};
use super::RunRequest;
use clip_core::engine::augment;
use clip_core::engine::optimize::{Keep, Preset};
use clip_core::engine::param::{Canvas, Param};
use serde::Deserialize;
use std::path::PathBuf;

/// The settings of a run beyond its models, prompts and output: a preset, then the flags that
/// override its parts, the objective's extras (negatives, model weights, a start photo) and the
/// seed. Every field is a flag of `clip generate` and a keyword of `clip_rs.generate`.
#[derive(clap::Args, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// An ensemble model's weight in the mean of the models' losses, > 0; one per model, in the
    /// order the models are given (default: all equal).
    #[arg(long = "model-weight", value_name = "W", value_parser = parse_model_weight, allow_hyphen_values = true)]
    #[serde(rename = "model_weight", default)]
    pub model_weights: Vec<f64>,
    /// A negative prompt: the loss adds --negative-weight × the image's mean similarity with the
    /// negatives, pushing it away from them; repeat for several.
    #[arg(long = "negative", value_name = "TEXT", allow_hyphen_values = true)]
    #[serde(rename = "negative", default)]
    pub negatives: Vec<String>,
    /// The weight of the negatives' mean similarity in the loss, >= 0 (default 0.5).
    #[arg(long, value_name = "W", value_parser = parse_negative_weight, allow_hyphen_values = true)]
    #[serde(default)]
    pub negative_weight: Option<f64>,
    /// Start from this photo instead of noise: CLIP's resize and centre crop to the canvas, not
    /// normalised. Only with --param pixels.
    #[arg(long, value_name = "PHOTO")]
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// With --init: after every step keep the image within E of the start in L∞ (projected
    /// gradient descent), in [0, 1] pixel units, 0 < E <= 1; a fraction such as 8/255 is accepted.
    #[arg(long, value_name = "E", value_parser = parse_epsilon, allow_hyphen_values = true)]
    #[serde(default, deserialize_with = "epsilon")]
    pub epsilon: Option<f64>,
    /// The recipe to start from; the flags below override its parts.
    #[arg(long, value_name = "constrained|unconstrained", default_value = "constrained",
          value_parser = parse_preset)]
    #[serde(default = "constrained")]
    pub preset: Preset,
    /// The parameterisation: pixels (the seed's), fft, decorrelated or fft-decorrelated (Lucent's).
    #[arg(long, value_name = "NAME", value_parser = parse_param)]
    #[serde(default)]
    pub param: Option<Param>,
    /// The FFT parameterisations' decay power (Lucent's decay_power; default 1; -8 to 8).
    #[arg(long, value_name = "F", value_parser = parse_decay, allow_hyphen_values = true)]
    #[serde(default)]
    pub decay: Option<f64>,
    /// An augmentation of each step's view, in order; repeat for a pipeline (replaces the
    /// preset's; `none` clears it): affine:DEG,TRANSLATE,SMIN,SMAX, flip:P, jitter:PX,
    /// scale:MIN,MAX, rotate:DEG, pad:PX, cutouts:N,MINFRAC,POW, noise:SD.
    #[arg(long = "augment", value_name = "SPEC", value_parser = parse_augment, allow_hyphen_values = true)]
    #[serde(default)]
    pub augment: Vec<AugmentSpec>,
    /// Weight of the total-variation penalty, 0 to 1e6.
    #[arg(long, value_name = "W", value_parser = parse_tv_weight, allow_hyphen_values = true)]
    #[serde(default)]
    pub tv_weight: Option<f64>,
    /// Which image to keep: best (lowest similarity loss of a step's view) or last.
    #[arg(long, value_name = "best|last", value_parser = parse_keep)]
    #[serde(default)]
    pub keep: Option<Keep>,
    /// The image's size, N or WxH (16 to 4096 pixels a side; default: the model's resolution).
    /// Views are resampled to the model's resolution.
    #[arg(long, value_name = "N|WxH", value_parser = parse_canvas)]
    #[serde(default)]
    pub size: Option<Canvas>,
    /// Optimisation steps (default 10 000).
    #[arg(long, value_name = "N", value_parser = parse_steps, allow_hyphen_values = true)]
    #[serde(default)]
    pub steps: Option<u64>,
    /// Adam's learning rate, in (0, 100] (default 0.05).
    #[arg(long, value_name = "LR", value_parser = parse_learning_rate, allow_hyphen_values = true)]
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Seed for the initial images and the augmentation draws (default: a random one, recorded).
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub seed: Option<u64>,
    /// The first part of the file names, `<name>_<model>_<prompt>.png` (default: the preset's name).
    #[arg(long, value_name = "TOKEN", value_parser = parse_name)]
    #[serde(default)]
    pub name: Option<String>,
    /// Run every step eagerly: no CUDA graph on CUDA.
    #[arg(long)]
    #[serde(default)]
    pub eager: bool,
}

fn constrained() -> Preset {
    Preset::Constrained
}

/// `epsilon`: a number, or a fraction as text (`"8/255"`), as the flag takes it.
fn epsilon<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    struct Budget;
    impl serde::de::Visitor<'_> for Budget {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number in (0, 1] or a fraction such as \"8/255\"")
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_epsilon(v).map(Some).map_err(E::custom)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Budget)
}

impl<'de> Deserialize<'de> for AugmentSpec {
    /// A spec as `--augment` takes it (`none` clears the pipeline).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Spec;
        impl serde::de::Visitor<'_> for Spec {
            type Value = AugmentSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an augmentation spec such as \"cutouts:32,0.5,1\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AugmentSpec, E> {
                parse_augment(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Spec)
    }
}

impl RunSettings {
    /// The settings of a run that gives none: the constrained preset's.
    pub fn preset(preset: Preset) -> Self {
        Self {
            model_weights: Vec::new(),
            negatives: Vec::new(),
            negative_weight: None,
            init: None,
            epsilon: None,
            preset,
            param: None,
            decay: None,
            augment: Vec::new(),
            tv_weight: None,
            keep: None,
            size: None,
            steps: None,
            learning_rate: None,
            seed: None,
            name: None,
            eager: false,
        }
    }

    /// Writes these settings into `request`: its settings become the preset's, then each given
    /// part overrides it (`augment` replaces the preset's list; `none` in it clears what came
    /// before). The request's models, prompts, device, precision and output stay.
    pub fn apply(&self, request: &mut RunRequest) {
        let mut s = self.preset.settings();
        if let Some(param) = self.param {
            s.param = param;
        }
        if let Some(decay) = self.decay {
            s.decay = decay;
        }
        if !self.augment.is_empty() {
            s.augment = augment::pipeline(self.augment.iter().map(|a| a.0));
        }
        if let Some(tv) = self.tv_weight {
            s.tv_weight = tv;
        }
        if let Some(keep) = self.keep {
            s.keep = keep;
        }
        if let Some(size) = self.size {
            s.canvas = Some(size);
        }
        if let Some(steps) = self.steps {
            s.steps = usize::try_from(steps).unwrap_or(usize::MAX);
        }
        if let Some(lr) = self.learning_rate {
            s.learning_rate = lr;
        }
        if let Some(w) = self.negative_weight {
            s.negative_weight = w;
        }
        s.epsilon = self.epsilon;
        s.cuda_graph = !self.eager;
        request.settings = s;
        request.preset = Some(self.preset);
        request.name = self.name.clone().unwrap_or_else(|| self.preset.to_string());
        request.model_weights = self.model_weights.clone();
        request.negatives = self.negatives.clone();
        request.init = self.init.clone();
        request.seed = self.seed;
    }
}
