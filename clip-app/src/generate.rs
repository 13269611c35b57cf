//! `clip generate`: the engine with every part exposed — a preset to start from, then the
//! parameterisation, augmentation pipeline, TV weight, keep rule and canvas — run as the
//! experiment binaries run (`run.rs`), with the same outputs.
//!
//! Presets: `unconstrained` = pixels, no augmentation, TV 0, keep last; `constrained` = pixels,
//! `affine:10,0.1,0.9,1.1` + `flip:0.3`, TV 1e-4, keep best (the default). Flags given with a
//! preset override it; `--augment` replaces its list (`--augment none` clears it).
//!
//! Beyond the seed's objective: `--negative TEXT` (repeatable, weighted by `--negative-weight`),
//! several models (`--model` / `--weights` repeated, in order, weighted by `--model-weight`: an
//! ensemble) and `--init PHOTO` (start from a photo; `--epsilon E` keeps the image within E of it
//! in L∞).

use super::cli::{NegativeArgs, PrecisionArg, UsageError};
use super::device::DeviceChoice;
use super::parse::{
    parse_augment, parse_canvas, parse_decay, parse_epsilon, parse_keep, parse_learning_rate,
    parse_model_weight, parse_name, parse_param, parse_preset, parse_steps, parse_tv_weight,
    AugmentSpec,
};
use super::run::{ModelSource, RunSpec};
use clip_core::clip::model::Precision;
use clip_core::clip::preprocess;
use clip_core::clip::released;
use clip_core::engine::augment;
use clip_core::engine::optimize::{Keep, Preset, DEFAULT_NEGATIVE_WEIGHT};
use clip_core::engine::param::{Canvas, Param};
use std::path::PathBuf;

/// The seed's prompts, optimised when no `--prompt` is given.
pub const SEED_PROMPTS: [&str; 3] =
    ["A cute golden retriever", "A snow-covered mountain peak", "A bright red tomato"];

/// `clip generate`'s flags.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("models_given").args(["weights", "models"]).required(true).multiple(true)))]
pub struct GenerateArgs {
    /// A checkpoint: OpenAI's TorchScript `.pt`, a `torch.save` state dict, or safetensors with
    /// OpenAI's keys. Repeat (with --model too) for an ensemble: one image per prompt, optimised
    /// against all the models at once.
    #[arg(long = "weights", value_name = "PATH")]
    pub weights: Vec<PathBuf>,
    /// A released model by name (RN50, RN101, RN50x4, RN50x16, RN50x64, ViT-B/32, ViT-B/16,
    /// ViT-L/14, ViT-L/14@336px), downloaded once into ~/.cache/clip/. Repeat (with --weights
    /// too) for an ensemble.
    #[arg(long = "model", value_name = "NAME")]
    pub models: Vec<String>,
    /// An ensemble model's weight in the mean of the models' losses, > 0; one per model, in the
    /// order the models are given (default: all equal).
    #[arg(long = "model-weight", value_name = "W", value_parser = parse_model_weight, allow_hyphen_values = true)]
    pub model_weights: Vec<f64>,
    /// The models in command-line order: filled by [`GenerateArgs::order_models`] from the parsed
    /// matches (else `--weights` first, then `--model`).
    #[arg(skip)]
    pub model_order: Vec<ModelArg>,
    /// A prompt to optimise an image for; repeat for several (default: the seed's three).
    #[arg(long = "prompt", value_name = "TEXT", allow_hyphen_values = true)]
    pub prompts: Vec<String>,
    #[command(flatten)]
    pub negative: NegativeArgs,
    /// Start from this photo instead of noise: CLIP's resize and centre crop to the canvas, not
    /// normalised. Only with --param pixels.
    #[arg(long, value_name = "PHOTO")]
    pub init: Option<PathBuf>,
    /// With --init: after every step keep the image within E of the start in L∞ (projected
    /// gradient descent), in [0, 1] pixel units, 0 < E <= 1; a fraction such as 8/255 is accepted.
    #[arg(long, value_name = "E", value_parser = parse_epsilon, allow_hyphen_values = true)]
    pub epsilon: Option<f64>,
    /// The recipe to start from; the flags below override its parts.
    #[arg(long, value_name = "constrained|unconstrained", default_value = "constrained",
          value_parser = parse_preset)]
    pub preset: Preset,
    /// The parameterisation: pixels (the seed's), fft, decorrelated or fft-decorrelated (Lucent's).
    #[arg(long, value_name = "NAME", value_parser = parse_param)]
    pub param: Option<Param>,
    /// The FFT parameterisations' decay power (Lucent's decay_power; default 1).
    #[arg(long, value_name = "F", value_parser = parse_decay, allow_hyphen_values = true)]
    pub decay: Option<f64>,
    /// An augmentation of each step's view, in order; repeat for a pipeline (replaces the
    /// preset's; `none` clears it): affine:DEG,TRANSLATE,SMIN,SMAX, flip:P, jitter:PX,
    /// scale:MIN,MAX, rotate:DEG, pad:PX, cutouts:N,MINFRAC,POW, noise:SD.
    #[arg(long = "augment", value_name = "SPEC", value_parser = parse_augment, allow_hyphen_values = true)]
    pub augment: Vec<AugmentSpec>,
    /// Weight of the total-variation penalty, >= 0.
    #[arg(long, value_name = "W", value_parser = parse_tv_weight, allow_hyphen_values = true)]
    pub tv_weight: Option<f64>,
    /// Which image to keep: best (lowest similarity loss of a step's view) or last.
    #[arg(long, value_name = "best|last", value_parser = parse_keep)]
    pub keep: Option<Keep>,
    /// The image's size, N or WxH (16 to 4096 pixels a side; default: the model's resolution).
    /// Views are resampled to the model's resolution.
    #[arg(long, value_name = "N|WxH", value_parser = parse_canvas)]
    pub size: Option<Canvas>,
    /// Optimisation steps (default 10 000).
    #[arg(long, value_name = "N", value_parser = parse_steps, allow_hyphen_values = true)]
    pub steps: Option<u64>,
    /// Adam's learning rate, > 0 (default 0.05).
    #[arg(long, value_name = "LR", value_parser = parse_learning_rate, allow_hyphen_values = true)]
    pub learning_rate: Option<f64>,
    /// Seed for the initial images and the augmentation draws (default: a random one, recorded).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Where the model runs: cpu, cuda or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The model's precision (default: fp16 on CUDA, fp32 on the CPU, as clip.load).
    #[arg(long, value_enum, value_name = "fp16|fp32")]
    pub precision: Option<PrecisionArg>,
    /// Output root: images and records go to DIR/<model>/.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,
    /// The first part of the file names, `<name>_<model>_<prompt>.png` (default: the preset's name).
    #[arg(long, value_name = "TOKEN", value_parser = parse_name)]
    pub name: Option<String>,
    /// Print a log line every N steps (and after the last).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_every: u64,
    /// Run every step eagerly: no CUDA graph on CUDA.
    #[arg(long)]
    pub eager: bool,
}

/// One model of the run, as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelArg {
    Model(String),
    Weights(PathBuf),
}

impl GenerateArgs {
    /// Records the order of `--model` and `--weights` from the matches these flags were parsed
    /// from (`matches` of the `generate` subcommand).
    pub fn order_models(&mut self, matches: &clap::ArgMatches) {
        let mut order: Vec<(usize, ModelArg)> = Vec::new();
        if let Some(indices) = matches.indices_of("weights") {
            order
                .extend(indices.zip(&self.weights).map(|(i, w)| (i, ModelArg::Weights(w.clone()))));
        }
        if let Some(indices) = matches.indices_of("models") {
            order.extend(indices.zip(&self.models).map(|(i, m)| (i, ModelArg::Model(m.clone()))));
        }
        order.sort_by_key(|(i, _)| *i);
        self.model_order = order.into_iter().map(|(_, m)| m).collect();
    }

    /// The models in the order given.
    pub fn ordered_models(&self) -> Vec<ModelArg> {
        if self.model_order.len() == self.weights.len() + self.models.len() {
            return self.model_order.clone();
        }
        let weights = self.weights.iter().cloned().map(ModelArg::Weights);
        weights.chain(self.models.iter().cloned().map(ModelArg::Model)).collect()
    }

    /// What the flags ask for that clap cannot check alone, beyond what the run checks before
    /// any work (one weight per model, no model twice: `run::resolve`): a readable start photo
    /// with the pixels parameterisation, a budget only with a photo.
    fn check(&self, param: Param) -> Result<(), UsageError> {
        let usage = |m: String| Err(UsageError(m));
        match &self.init {
            Some(photo) => {
                if param != Param::Pixels {
                    return usage(format!(
                        "--init needs --param pixels, not {param}: a photo is a start for the pixels \
                         themselves; the other parameterisations start from their own noise in \
                         another space"
                    ));
                }
                if let Err(e) = preprocess::load_rgb(photo) {
                    return usage(format!("--init {}: {e}", photo.display()));
                }
            }
            None if self.epsilon.is_some() => {
                return usage(
                    "--epsilon needs --init PHOTO: the budget is around the start photo"
                        .to_string(),
                );
            }
            None => {}
        }
        Ok(())
    }

    /// The run these flags ask for.
    pub fn spec(&self) -> anyhow::Result<RunSpec> {
        let mut settings = self.preset.settings();
        if let Some(param) = self.param {
            settings.param = param;
        }
        if let Some(decay) = self.decay {
            settings.decay = decay;
        }
        if !self.augment.is_empty() {
            settings.augment = augment::pipeline(self.augment.iter().map(|a| a.0));
        }
        if let Some(tv) = self.tv_weight {
            settings.tv_weight = tv;
        }
        if let Some(keep) = self.keep {
            settings.keep = keep;
        }
        if let Some(size) = self.size {
            settings.canvas = Some(size);
        }
        if let Some(steps) = self.steps {
            settings.steps = steps as usize;
        }
        if let Some(lr) = self.learning_rate {
            settings.learning_rate = lr;
        }
        settings.cuda_graph = !self.eager;
        settings.negative_weight = self.negative.negative_weight.unwrap_or(DEFAULT_NEGATIVE_WEIGHT);
        settings.epsilon = self.epsilon;
        let ordered = self.ordered_models();
        if ordered.is_empty() {
            anyhow::bail!(UsageError("give --weights PATH or --model NAME".to_string()));
        }
        self.check(settings.param)?;
        let mut models = Vec::new();
        for m in &ordered {
            models.push(match m {
                ModelArg::Weights(path) => {
                    ModelSource::Weights { path: path.clone(), expect: None }
                }
                ModelArg::Model(name) => ModelSource::Released(released::by_name(name)?),
            });
        }
        let prompts = if self.prompts.is_empty() {
            SEED_PROMPTS.iter().map(|p| p.to_string()).collect()
        } else {
            self.prompts.clone()
        };
        Ok(RunSpec {
            models,
            model_weights: self.model_weights.clone(),
            prompts,
            negatives: self.negative.negatives.clone(),
            init: self.init.clone(),
            name: self.name.clone().unwrap_or_else(|| self.preset.to_string()),
            preset: Some(self.preset),
            settings,
            precision: self.precision.map(Precision::from),
            device: self.device,
            seed: self.seed,
            out: self.out.clone(),
            log_every: self.log_every as usize,
        })
    }
}
