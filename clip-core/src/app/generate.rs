//! `clip generate`: the engine with every part exposed — a preset to start from, then the
//! parameterisation, augmentation pipeline, TV weight, keep rule and canvas — run as the
//! experiment binaries run (`run.rs`), with the same outputs.
//!
//! Presets: `unconstrained` = pixels, no augmentation, TV 0, keep last; `constrained` = pixels,
//! `affine:10,0.1,0.9,1.1` + `flip:0.3`, TV 1e-4, keep best (the default). Flags given with a
//! preset override it; `--augment` replaces its list (`--augment none` clears it).

use super::cli::{parse_augment, AugmentSpec, PrecisionArg, WeightsArgs};
use super::device::DeviceChoice;
use super::experiment::{parse_learning_rate, parse_steps, parse_tv_weight};
use super::run::{ModelSource, RunSpec};
use crate::clip::model::Precision;
use crate::clip::released;
use crate::engine::augment;
use crate::engine::optimize::{Keep, Preset};
use crate::engine::param::{Canvas, Param};
use std::path::PathBuf;

/// The seed's prompts, optimised when no `--prompt` is given.
pub const SEED_PROMPTS: [&str; 3] =
    ["A cute golden retriever", "A snow-covered mountain peak", "A bright red tomato"];

/// `clip generate`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// A prompt to optimise an image for; repeat for several (default: the seed's three).
    #[arg(long = "prompt", value_name = "TEXT", allow_hyphen_values = true)]
    pub prompts: Vec<String>,
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

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse()
}

fn parse_param(s: &str) -> Result<Param, String> {
    s.parse()
}

fn parse_keep(s: &str) -> Result<Keep, String> {
    s.parse()
}

fn parse_canvas(s: &str) -> Result<Canvas, String> {
    s.parse()
}

fn parse_decay(s: &str) -> Result<f64, String> {
    let x: f64 = s.trim().parse().map_err(|e| format!("not a number: {e}"))?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("the decay must be a finite number, not {x}"))
    }
}

/// `--name`: letters, digits, `-`, `+`, `.` and `_`, not starting with `.`, at most 64 bytes.
fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-+._".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{:?} is not a file-name token: use 1 to 64 letters, digits, '-', '+', '.' or '_', \
             not starting with '.'",
            crate::clip::excerpt::excerpt(s)
        ))
    }
}

impl GenerateArgs {
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
        let model = match (&self.weights.weights, &self.weights.model) {
            (Some(path), _) => ModelSource::Weights { path: path.clone(), expect: None },
            (None, Some(name)) => ModelSource::Released(released::by_name(name)?),
            (None, None) => anyhow::bail!("give --weights PATH or --model NAME"),
        };
        let prompts = if self.prompts.is_empty() {
            SEED_PROMPTS.iter().map(|p| p.to_string()).collect()
        } else {
            self.prompts.clone()
        };
        Ok(RunSpec {
            model,
            prompts,
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
