//! The experiment binaries' shared flags and run: `cargo run -p <rn50|vit-b|vit-l14> --bin
//! <constrained|unconstrained>` optimises the seed's prompts with one model and saves the images,
//! records and logs under `results/<model>/`.
//!
//! Mirrors the seed's two scripts (one per mode, per model), with all prompts in one batch
//! (`optimize.rs`). Every binary prints its model and mode first and records them in its JSON and
//! PNG metadata: the three crates' same-named binaries overwrite each other in `target/<profile>/`,
//! so nothing may rely on which model `target/release/constrained` is.

use crate::app::device::DeviceChoice;
use crate::app::interrupt;
use crate::app::output::{self, RunRecord};
use crate::clip::model::LoadedClip;
use crate::clip::preprocess;
use crate::clip::tokenizer::Tokenizer;
use crate::clip::weights::download;
use crate::engine::augment::AugmentConfig;
use crate::engine::loss::cosine_similarity;
use crate::engine::optimize::{optimize_until, similarity, Mode, Settings, StepStats};
use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind};

/// One model's experiment: the constants each model crate holds.
#[derive(Debug, Clone, Copy)]
pub struct Experiment {
    /// The released model's name, as `clip.load` takes it (RN50, ViT-B/32, ViT-L/14).
    pub model: &'static str,
    /// The model's token in result paths and file names (RN50, ViT-B, ViT-L-14), as the seed's.
    pub results_token: &'static str,
    pub prompts: &'static [&'static str],
    pub learning_rate: f64,
    pub steps: usize,
    pub tv_weight: f64,
}

/// Flags of the six experiment binaries; each overrides one of the crate's constants.
#[derive(clap::Parser, Debug, Clone)]
pub struct ExperimentArgs {
    /// A checkpoint to use instead of the released model (default: downloaded once into
    /// ~/.cache/clip/ and verified by its SHA-256). OpenAI's .pt, a torch.save state dict or safetensors.
    #[arg(long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
    /// Optimisation steps (default: the crate's STEPS, 10 000).
    #[arg(long, value_name = "N", value_parser = parse_steps, allow_hyphen_values = true)]
    pub steps: Option<u64>,
    /// Adam's learning rate, > 0 (default: the crate's LEARNING_RATE).
    #[arg(long, value_name = "LR", value_parser = parse_learning_rate, allow_hyphen_values = true)]
    pub learning_rate: Option<f64>,
    /// Weight of the total-variation penalty in constrained runs, >= 0 (default: the crate's
    /// TV_WEIGHT).
    #[arg(long, value_name = "W", value_parser = parse_tv_weight, allow_hyphen_values = true)]
    pub tv_weight: Option<f64>,
    /// A prompt to optimise for; repeat for several. Replaces the crate's TEXT_PROMPTS.
    #[arg(long = "prompt", value_name = "TEXT", allow_hyphen_values = true)]
    pub prompts: Vec<String>,
    /// Where the model runs: cpu (fp32), cuda (fp16, as clip.load) or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Seed for the initial noise and the augmentation draws (default: a random one, printed and
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

fn parse_steps(text: &str) -> Result<u64, String> {
    match text.trim().parse::<i128>() {
        Ok(n) if n >= 1 => u64::try_from(n).map_err(|_| format!("{n} steps is too many")),
        Ok(n) => Err(format!("the number of steps must be at least 1, not {n}")),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

fn parse_number(text: &str) -> Result<f64, String> {
    let x: f64 = text.trim().parse().map_err(|e| format!("not a number: {e}"))?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("must be a finite number, not {x}"))
    }
}

fn parse_learning_rate(text: &str) -> Result<f64, String> {
    let x = parse_number(text)?;
    if x > 0.0 {
        Ok(x)
    } else {
        Err(format!("the learning rate must be greater than 0, not {x}"))
    }
}

fn parse_tv_weight(text: &str) -> Result<f64, String> {
    let x = parse_number(text)?;
    if x >= 0.0 {
        Ok(x)
    } else {
        Err(format!("the TV weight must be 0 or more, not {x}"))
    }
}

/// Statistics are read back from the device this often; log lines and the progress bar follow.
pub const READBACK_EVERY: usize = 10;

/// What a run produced for one prompt.
#[derive(Debug, Clone)]
pub struct PromptResult {
    pub png: PathBuf,
    pub json: PathBuf,
    pub csv: PathBuf,
    pub record: RunRecord,
}

/// The binaries' `main`: parses the flags (with the model and mode in the help) and runs.
/// Errors (libtorch's included) are printed as one `error: …` line (with their causes) and give
/// exit status 1; a run stopped by Ctrl-C or SIGTERM saves its images and gives status 130.
pub fn main(experiment: &Experiment, mode: Mode) -> std::process::ExitCode {
    let about = format!(
        "CLIP-guided image optimisation, {mode}, with {}: the seed's {mode} run",
        experiment.model
    );
    let matches = ExperimentArgs::command().name(mode.as_str()).about(about).get_matches();
    interrupt::run_main(|| {
        let args = ExperimentArgs::from_arg_matches(&matches)?;
        interrupt::install();
        let results = run(experiment, mode, &args)?;
        if results.iter().any(|r| r.record.interrupted) {
            return Ok(std::process::ExitCode::from(interrupt::INTERRUPTED_EXIT));
        }
        Ok(std::process::ExitCode::SUCCESS)
    })
}

/// Runs every prompt of the experiment (or `--prompt`s) in one batch and writes their outputs.
pub fn run(
    experiment: &Experiment,
    mode: Mode,
    args: &ExperimentArgs,
) -> anyhow::Result<Vec<PromptResult>> {
    let started = Instant::now();
    let prompts: Vec<String> = if args.prompts.is_empty() {
        experiment.prompts.iter().map(|p| p.to_string()).collect()
    } else {
        args.prompts.clone()
    };
    let steps = args.steps.map_or(experiment.steps, |s| s as usize);
    let learning_rate = args.learning_rate.unwrap_or(experiment.learning_rate);
    let tv_weight = args.tv_weight.unwrap_or(experiment.tv_weight);
    let stems = output::file_stems(mode, experiment.results_token, &prompts)?;
    let out_dir = args.out.join(experiment.results_token);
    // Before the (possibly hours-long) run, not after it. Removed again if the run fails while
    // they are empty.
    let new_dirs = output::create_writable_dir(&out_dir)?;
    let seed = args.seed.unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let tokens = Tokenizer::new()?.tokenize(&prompts, false).context("tokenizing the prompts")?;

    let device = args.device.resolve()?;
    let weights = match &args.weights {
        Some(path) => path.clone(),
        None => download::resolve_model_with(experiment.model, None, &interrupt::requested)
            .with_context(|| format!("getting the released {} weights", experiment.model))?,
    };
    println!(
        "{} {mode}: {} prompt(s), {steps} steps, lr {}, tv weight {}, seed {seed}, device {}, weights {}",
        experiment.model,
        prompts.len(),
        learning_rate,
        tv_weight,
        device_name(device),
        weights.display()
    );
    // Loaded first: its errors say what is wrong with a missing or broken file.
    let loaded = LoadedClip::load_with(&weights, device, &interrupt::requested)
        .with_context(|| format!("loading the CLIP model from {}", weights.display()))?;
    let weights_sha256 = download::sha256_file_with(&weights, &interrupt::requested)?;
    interrupt::check("before the optimisation")?;
    let model = &loaded.model;
    let resolution = model.config.image_resolution;
    let text = tch::no_grad(|| model.encode_text(&tokens.to_device(device)));

    let settings = Settings {
        mode,
        steps,
        learning_rate,
        tv_weight,
        augment: AugmentConfig::SEED,
        readback_every: READBACK_EVERY,
        cuda_graph: !args.eager,
    };
    let mut progress = Progress::new(&prompts, &settings, args.log_every as usize);
    tch::manual_seed(seed as i64);
    let outcome = optimize_until(
        model,
        &text,
        &settings,
        &mut |chunk| progress.update(chunk),
        &interrupt::requested,
    );
    progress.finish();
    for (prompt, step) in prompts.iter().zip(&outcome.frozen_at) {
        if let Some(step) = step {
            progress.announce_frozen(prompt, *step);
        }
    }
    let done = outcome.steps_done;
    let steps_per_second = outcome.steps_per_second(done);
    println!(
        "{done} steps in {:.1} s ({steps_per_second:.2} steps/s); steps: {}",
        outcome.loop_seconds, outcome.execution
    );
    if outcome.interrupted {
        println!("interrupted at step {done} of {steps}: saving the images reached");
    }

    let batch = prompts.len() as i64;
    let initial = outcome.initial.unsqueeze(0).expand([batch, 3, resolution, resolution], false);
    let initial_similarity = similarity(model, &initial, &text);
    let unquantized = similarity(model, &outcome.images, &text);
    // Again: the directory may have gone during the run.
    output::ensure_writable_dir(&out_dir)?;

    let mut results = Vec::new();
    for (i, (prompt, stem)) in prompts.iter().zip(&stems).enumerate() {
        let best = outcome.best.as_ref().and_then(|b| b.get(i).copied());
        let png = out_dir.join(format!("{stem}.png"));
        let metadata = [
            ("Title", prompt.clone()),
            ("Software", "clip-rs".to_string()),
            ("prompt", prompt.clone()),
            ("model", experiment.model.to_string()),
            ("mode", mode.to_string()),
            ("steps", steps.to_string()),
            ("steps_done", done.to_string()),
            ("learning_rate", learning_rate.to_string()),
            ("tv_weight", tv_weight.to_string()),
            ("seed", seed.to_string()),
            ("weights_sha256", weights_sha256.clone()),
        ];
        let (rgb, width, height) = output::to_rgb8(&outcome.images.get(i as i64));
        output::write_atomic(&png, &output::png_bytes(&rgb, width, height, &metadata, &png)?)?;

        // As the seed verifies: the saved file, through CLIP's preprocessing, against the prompt.
        let pixels = preprocess::preprocess_path(&png, resolution as u32)
            .with_context(|| format!("re-reading {}", png.display()))?;
        let final_similarity = tch::no_grad(|| {
            let features = model.encode_image(&pixels.unsqueeze(0).to_device(device));
            cosine_similarity(&features, &text.narrow(0, i as i64, 1))
                .to_kind(Kind::Double)
                .double_value(&[0])
        });

        let record = RunRecord {
            prompt: prompt.clone(),
            model: experiment.model.to_string(),
            mode: mode.to_string(),
            image: format!("{stem}.png"),
            weights: weights.display().to_string(),
            weights_sha256: weights_sha256.clone(),
            steps,
            steps_done: done,
            interrupted: outcome.interrupted,
            frozen_at_step: outcome.frozen_at.get(i).copied().flatten(),
            learning_rate,
            tv_weight,
            seed,
            device: device_name(device),
            resolution,
            batch_size: prompts.len(),
            initial_similarity: initial_similarity[i],
            final_similarity,
            final_similarity_unquantized: unquantized[i],
            best_step: best.map(|b| b.0),
            best_similarity_loss: best.map(|b| b.1),
            steps_per_second,
            loop_seconds: outcome.loop_seconds,
            execution: outcome.execution.to_string(),
            wall_seconds: started.elapsed().as_secs_f64(),
        };
        let json = out_dir.join(format!("{stem}.json"));
        let csv = out_dir.join(format!("{stem}.csv"));
        output::write_atomic(&json, &output::json_bytes(&record))?;
        output::write_atomic(&csv, &output::csv_bytes(&progress.history, i))?;
        println!("Final Similarity: {final_similarity:.4}  ({prompt:?} -> {})", png.display());
        results.push(PromptResult { png, json, csv, record });
    }
    new_dirs.keep();
    Ok(results)
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The progress bar (only on a terminal), the seed's log lines, and every step's statistics.
struct Progress<'a> {
    prompts: &'a [String],
    constrained: bool,
    tv_weight: f64,
    steps: usize,
    log_every: usize,
    bar: ProgressBar,
    history: Vec<StepStats>,
    /// Prompts already reported as stopped by a non-finite loss.
    frozen: Vec<bool>,
}

impl<'a> Progress<'a> {
    fn new(prompts: &'a [String], settings: &Settings, log_every: usize) -> Self {
        let bar = if std::io::stdout().is_terminal() {
            let style = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  similarity {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(settings.steps as u64).with_style(style)
        } else {
            ProgressBar::hidden()
        };
        Self {
            prompts,
            constrained: settings.mode == Mode::Constrained,
            tv_weight: settings.tv_weight,
            steps: settings.steps,
            log_every: log_every.max(1),
            bar,
            history: Vec::with_capacity(settings.steps),
            frozen: vec![false; prompts.len()],
        }
    }

    fn update(&mut self, chunk: &[StepStats]) {
        for stats in chunk {
            for (i, sim) in stats.similarity.iter().enumerate() {
                if !sim.is_finite() && i < self.prompts.len() {
                    self.announce_frozen(&self.prompts[i], stats.step);
                }
            }
            if stats.step % self.log_every == 0 || stats.step == self.steps {
                for (i, prompt) in self.prompts.iter().enumerate() {
                    let mut line = format!(
                        "Step {} | Sim Loss {:.4}",
                        stats.step,
                        1.0 - stats.similarity[i] as f64
                    );
                    if self.constrained {
                        line.push_str(&format!(
                            " | TV Loss {:.4}",
                            stats.tv[i] as f64 * self.tv_weight
                        ));
                    }
                    line.push_str(&format!(" | {prompt}"));
                    self.println(&line);
                }
            }
        }
        if let Some(last) = chunk.last() {
            let sims: Vec<String> = last.similarity.iter().map(|s| format!("{s:.4}")).collect();
            self.bar.set_message(sims.join(" "));
            self.bar.set_position(last.step as u64);
        }
        self.history.extend_from_slice(chunk);
    }

    /// Says once per prompt that it stopped at `step` (a non-finite loss or gradient).
    fn announce_frozen(&mut self, prompt: &str, step: usize) {
        let Some(i) = self.prompts.iter().position(|p| p == prompt) else { return };
        if std::mem::replace(&mut self.frozen[i], true) {
            return;
        }
        self.println(&format!(
            "warning: prompt {prompt:?} stopped at step {step}: its loss or gradient is not \
             finite (NaN/Inf, e.g. fp16 overflow); it keeps its last good image, the others go on"
        ));
    }

    fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
