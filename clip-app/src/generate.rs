//! `clip generate`: the engine with every part exposed — a preset to start from, then the
//! parameterisation, augmentation pipeline, TV weight, keep rule and canvas — run as the
//! experiment binaries run (`run/`), with the same outputs.
//!
//! Presets: `unconstrained` = pixels, no augmentation, TV 0, keep last; `constrained` = pixels,
//! `affine:10,0.1,0.9,1.1` + `flip:0.3`, TV 1e-4, keep best (the default). Flags given with a
//! preset override it; `--augment` replaces its list (`--augment none` clears it).
//!
//! Beyond the seed's objective: `--negative TEXT` (repeatable, weighted by `--negative-weight`),
//! several models (`--model` / `--weights` repeated, in order, weighted by `--model-weight`: an
//! ensemble) and `--init PHOTO` (start from a photo; `--epsilon E` keeps the image within E of it
//! in L∞).

use super::cli::{PrecisionArg, UsageError};
use super::device::DeviceChoice;
use super::request::{ModelSource, RunRequest, RunSettings};
use clip_core::clip::model::Precision;
use clip_core::clip::released;
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
    /// The models in command-line order: filled by [`GenerateArgs::order_models`] from the parsed
    /// matches (else `--weights` first, then `--model`).
    #[arg(skip)]
    pub model_order: Vec<ModelArg>,
    /// A prompt to optimise an image for; repeat for several (default: the seed's three).
    #[arg(long = "prompt", value_name = "TEXT", allow_hyphen_values = true)]
    pub prompts: Vec<String>,
    /// The preset and the settings that override it (`clip_rs.generate`'s keywords too).
    #[command(flatten)]
    pub settings: RunSettings,
    /// Where the model runs: cpu, cuda or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The model's precision (default: fp16 on CUDA, fp32 on the CPU, as clip.load).
    #[arg(long, value_enum, value_name = "fp16|fp32")]
    pub precision: Option<PrecisionArg>,
    /// Output root: images and records go to DIR/<model>/.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,
    /// Print a log line every N steps (and after the last).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_every: u64,
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

    /// The run these flags ask for (checked when it runs: [`RunRequest::validate`]).
    pub fn request(&self) -> anyhow::Result<RunRequest> {
        let ordered = self.ordered_models();
        if ordered.is_empty() {
            anyhow::bail!(UsageError("give --weights PATH or --model NAME".to_string()));
        }
        let mut models = Vec::new();
        for m in &ordered {
            models.push(match m {
                ModelArg::Weights(path) => ModelSource::file(path.clone()),
                ModelArg::Model(name) => ModelSource::Released(released::by_name(name)?),
            });
        }
        let prompts = if self.prompts.is_empty() {
            SEED_PROMPTS.iter().map(|p| p.to_string()).collect()
        } else {
            self.prompts.clone()
        };
        let mut request = RunRequest::preset(self.settings.preset, models, prompts);
        self.settings.apply(&mut request);
        request.precision = self.precision.map(Precision::from);
        request.device = self.device;
        request.out = self.out.clone();
        request.log_every = self.log_every as usize;
        Ok(request)
    }
}
