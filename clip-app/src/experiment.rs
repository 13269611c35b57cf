//! The six experiment binaries: `cargo run -p <rn50|vit-b|vit-l14> --bin
//! <constrained|unconstrained>` optimises the crate's prompts with its model and saves the images,
//! records and logs under `results/<model>/`.
//!
//! Each binary is a preset of the one engine (`run/`, as `clip generate`): its crate's constants
//! ([`Experiment`]) give the model, prompts, steps, learning rate, parameterisation, canvas and,
//! per mode, the augmentation list, TV weight and keep rule — as shipped, the seed's two scripts,
//! equal to `clip generate --preset constrained|unconstrained`. Every binary prints its model first
//! and records it: the three crates' same-named binaries overwrite each other in
//! `target/<profile>/`, so nothing may rely on which model `target/release/constrained` is. A
//! binary refuses weights of another architecture than its model.

use super::cli::{NegativeArgs, PrecisionArg};
use super::device::DeviceChoice;
use super::interrupt;
use super::request::parse::{parse_learning_rate, parse_steps, parse_tv_weight};
use super::run::{self, ModelSource, PromptResult, RunRequest};
use clap::{CommandFactory, FromArgMatches};
use clip_core::clip::model::Precision;
use clip_core::clip::released::ReleasedModel;
use clip_core::engine::augment::Augment;
use clip_core::engine::optimize::{Keep, Preset, Settings};
use clip_core::engine::param::{Canvas, Param};
use std::path::PathBuf;

/// What one mode of an experiment does besides the shared settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    /// Applied in order to each step's view.
    pub augment: &'static [Augment],
    /// Weight of the total variation in the loss.
    pub tv_weight: f64,
    pub keep: Keep,
}

/// One model's experiment: the constants each model crate holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Experiment {
    /// The released model (`released::RN50`, `VIT_B_32`, `VIT_L_14`, …).
    pub model: &'static ReleasedModel,
    pub prompts: &'static [&'static str],
    /// Negative prompts: every image is pushed away from them (none as shipped).
    pub negative_prompts: &'static [&'static str],
    /// The weight of the negatives' mean similarity in the loss.
    pub negative_weight: f64,
    pub learning_rate: f64,
    pub steps: usize,
    pub param: Param,
    /// The FFT parameterisations' decay power.
    pub decay: f64,
    /// `None`: the model's input resolution.
    pub canvas: Option<Canvas>,
    pub constrained: Recipe,
    pub unconstrained: Recipe,
}

impl Experiment {
    /// The settings of `preset`'s binary, before flags.
    pub fn settings(&self, preset: Preset) -> Settings {
        let recipe = match preset {
            Preset::Constrained => self.constrained,
            Preset::Unconstrained => self.unconstrained,
        };
        Settings {
            steps: self.steps,
            learning_rate: self.learning_rate,
            param: self.param,
            decay: self.decay,
            canvas: self.canvas,
            augment: recipe.augment.to_vec(),
            tv_weight: recipe.tv_weight,
            negative_weight: self.negative_weight,
            keep: recipe.keep,
            // What the crate's constants do not set is the preset's.
            ..preset.settings()
        }
    }
}

/// Flags of the six experiment binaries; each overrides one of the crate's constants.
#[derive(clap::Parser, Debug, Clone)]
pub struct ExperimentArgs {
    /// A checkpoint of this binary's model to use instead of the released file (default:
    /// downloaded once into ~/.cache/clip/ and verified by its SHA-256). OpenAI's .pt, a
    /// torch.save state dict or safetensors; another architecture's weights are refused.
    #[arg(long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
    /// Optimisation steps (default: the crate's STEPS, 10 000).
    #[arg(long, value_name = "N", value_parser = parse_steps, allow_hyphen_values = true)]
    pub steps: Option<u64>,
    /// Adam's learning rate, > 0 (default: the crate's LEARNING_RATE).
    #[arg(long, value_name = "LR", value_parser = parse_learning_rate, allow_hyphen_values = true)]
    pub learning_rate: Option<f64>,
    /// Weight of the total-variation penalty, >= 0 (default: the crate's, TV_WEIGHT in constrained
    /// runs and 0 in unconstrained ones).
    #[arg(long, value_name = "W", value_parser = parse_tv_weight, allow_hyphen_values = true)]
    pub tv_weight: Option<f64>,
    /// A prompt to optimise for; repeat for several. Replaces the crate's TEXT_PROMPTS.
    #[arg(long = "prompt", value_name = "TEXT", allow_hyphen_values = true)]
    pub prompts: Vec<String>,
    #[command(flatten)]
    pub negative: NegativeArgs,
    /// Where the model runs: cpu, cuda or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The model's precision (default: fp16 on CUDA, fp32 on the CPU, as clip.load).
    #[arg(long, value_enum, value_name = "fp16|fp32")]
    pub precision: Option<PrecisionArg>,
    /// Seed for the initial images and the augmentation draws (default: a random one, printed and
    /// recorded). Runs repeat exactly with the same seed on the same device.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Output root: images and records go to DIR/<model>/.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,
    /// Print a log line every N steps (and after the last).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_every: u64,
    /// Run every step eagerly: no CUDA graph on CUDA (the same numbers, slower; for comparison
    /// and as a way around a driver problem).
    #[arg(long)]
    pub eager: bool,
}

impl Experiment {
    /// The run that `preset`'s binary does with these flags: the crate's constants, each flag
    /// given overriding its constant (checked when it runs: [`RunRequest::validate`]).
    pub fn request(&self, preset: Preset, args: &ExperimentArgs) -> RunRequest {
        let model = match &args.weights {
            Some(path) => {
                ModelSource::Weights { path: path.clone(), expect: Some(self.model), name: None }
            }
            None => ModelSource::Released(self.model),
        };
        let texts = |given: &[String], constants: &[&str]| -> Vec<String> {
            if given.is_empty() {
                constants.iter().map(|p| p.to_string()).collect()
            } else {
                given.to_vec()
            }
        };
        let mut request =
            RunRequest::preset(preset, vec![model], texts(&args.prompts, self.prompts));
        let s = &mut request.settings;
        *s = self.settings(preset);
        s.steps = args.steps.map_or(s.steps, |n| n as usize);
        s.learning_rate = args.learning_rate.unwrap_or(s.learning_rate);
        s.tv_weight = args.tv_weight.unwrap_or(s.tv_weight);
        s.negative_weight = args.negative.negative_weight.unwrap_or(s.negative_weight);
        s.cuda_graph = !args.eager;
        request.negatives = texts(&args.negative.negatives, self.negative_prompts);
        request.precision = args.precision.map(Precision::from);
        request.device = args.device;
        request.seed = args.seed;
        request.out = args.out.clone();
        request.log_every = args.log_every as usize;
        request
    }
}

/// Runs `preset` of `experiment` with these flags.
pub fn run(
    experiment: &Experiment,
    preset: Preset,
    args: &ExperimentArgs,
) -> anyhow::Result<Vec<PromptResult>> {
    run::run(&experiment.request(preset, args))
}

/// The binaries' `main`: parses the flags (with the model and mode in the help) and runs.
/// Errors (libtorch's included) are printed as one `error: …` line (with their causes) and give
/// exit status 1; a run stopped by Ctrl-C or SIGTERM saves its images and gives status 130.
pub fn main(experiment: &Experiment, preset: Preset) -> std::process::ExitCode {
    let about = format!(
        "CLIP-guided image optimisation, {preset}, with {}: the seed's {preset} run",
        experiment.model.name
    );
    let matches = ExperimentArgs::command()
        .name(preset.as_str())
        .about(about)
        // `--version` names the model too: the three crates' binaries share a path in target/.
        .version(&*Box::leak(
            format!("{} ({})", env!("CARGO_PKG_VERSION"), experiment.model.name).into_boxed_str(),
        ))
        .get_matches();
    interrupt::run_main(|| {
        let args = ExperimentArgs::from_arg_matches(&matches)?;
        interrupt::install();
        let results = run(experiment, preset, &args)?;
        if results.iter().any(|r| r.record.interrupted) {
            return Ok(std::process::ExitCode::from(interrupt::INTERRUPTED_EXIT));
        }
        Ok(std::process::ExitCode::SUCCESS)
    })
}
