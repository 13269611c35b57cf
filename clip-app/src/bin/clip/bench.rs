//! `clip bench`: times the optimisation step per architecture, mode and number of prompts with
//! random weights (`clip_app::bench`), one line (or JSON object) per case.

use anyhow::Context;
use clip_app::bench::{self, BenchOptions};
use clip_app::device::DeviceChoice;
use clip_app::request::parse::{parse_augment, parse_param, AugmentSpec};
use clip_core::clip::model::PatchEmbedding;
use clip_core::engine::augment;
use clip_core::engine::executor::Execution;
use clip_core::engine::optimize::Preset;
use clip_core::engine::param::Param;
use std::io::Write;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    Constrained,
    Unconstrained,
    Both,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchWay {
    Conv,
    Matmul,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Architectures, comma-separated: RN50, ViT-B/32, ViT-L/14 (any released name), or all (the
    /// three). Weights are random: speed does not depend on their values.
    #[arg(long, value_name = "NAME", value_delimiter = ',', default_value = "all")]
    pub arch: Vec<String>,
    /// An ensemble to time as well, its models joined by `+` (e.g. RN50+ViT-B/32): one image per
    /// prompt optimised against all of them in each step; repeat for several. Give `--arch` with
    /// its models to time them alone beside it (`--arch RN50,ViT-B/32`), or `--arch none`.
    #[arg(long = "ensemble", value_name = "A+B[+C…]", value_parser = parse_ensemble)]
    pub ensembles: Vec<Vec<String>>,
    /// Numbers of prompts (images optimised as one batch), comma-separated.
    #[arg(long, value_name = "N", value_delimiter = ',', default_value = "3",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub prompts: Vec<u64>,
    /// constrained, unconstrained or both.
    #[arg(long, value_enum, default_value_t = BenchMode::Both)]
    pub mode: BenchMode,
    /// Timed steps per case (on the CPU use a few: ViT-L/14 takes ~10 s a step with 3 prompts).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub steps: u64,
    /// Untimed warm-up steps before them, rounded up to a multiple of 10 (the read-back interval,
    /// where the clock starts); on CUDA they include the graph's warm-up and capture.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub warmup: u64,
    /// The parameterisation to time instead of the preset's (pixels): pixels, fft, decorrelated,
    /// fft-decorrelated.
    #[arg(long, value_name = "NAME", value_parser = parse_param)]
    pub param: Option<Param>,
    /// An augmentation to time instead of the preset's pipeline; repeat for a pipeline (`none`
    /// clears it), e.g. --augment cutouts:32,0.5,1. Specs as `clip generate --augment`.
    #[arg(long = "augment", value_name = "SPEC", value_parser = parse_augment, allow_hyphen_values = true)]
    pub augment: Vec<AugmentSpec>,
    /// Where the model runs: cpu (fp32), cuda (fp16, as clip.load) or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Peak throughput (TFLOP/s) for the FLOP floor, prompt-steps × FLOPs per prompt-step / peak;
    /// the default is the H100's measured 763. On the CPU the ratio is against that GPU floor and
    /// only informative.
    #[arg(long, value_name = "TFLOPS", default_value_t = bench::DEFAULT_PEAK_TFLOPS,
          value_parser = parse_peak)]
    pub peak_tflops: f64,
    /// Run every step eagerly: no CUDA graph (on the CPU steps always run eagerly).
    #[arg(long)]
    pub eager: bool,
    /// ViTs: time the patch embedding as the reference's convolution (conv), as a matrix product
    /// (matmul), or both (conv,matmul); default: the model's own (matmul).
    #[arg(long, value_enum, value_name = "WAY", value_delimiter = ',')]
    pub patch_embedding: Vec<PatchWay>,
    /// ResNets: time NCHW (off), channels-last (on), or both (off,on); default: the model's own.
    #[arg(long, value_enum, value_name = "ON|OFF", value_delimiter = ',')]
    pub channels_last: Vec<OnOff>,
    /// Print one JSON object per case, one per line, instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn parse_ensemble(s: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = s.split('+').map(|n| n.trim().to_string()).collect();
    if names.len() < 2 || names.iter().any(String::is_empty) {
        return Err(format!("expected two or more model names joined by '+', got {s:?}"));
    }
    for (i, name) in names.iter().enumerate() {
        clip_core::clip::released::by_name(name).map_err(|e| e.to_string())?;
        if names[..i].contains(name) {
            return Err(format!("{name} is twice in the ensemble {s:?}"));
        }
    }
    Ok(names)
}

fn parse_peak(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) => Err(format!("must be a positive finite number, not {x}")),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

/// The rows as they come (a table or JSON lines), and the reasons steps ran eagerly.
struct Rows {
    json: bool,
    out: std::io::StdoutLock<'static>,
    eager_reasons: Vec<String>,
}

impl Rows {
    fn row(&mut self, r: &bench::BenchResult) -> anyhow::Result<()> {
        if let Execution::Eager { reason } = &r.execution {
            if !self.eager_reasons.contains(reason) {
                self.eager_reasons.push(reason.clone());
            }
        }
        let line = if self.json { r.to_json().to_string() } else { bench::table_row(r) };
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if !self.json {
            for reason in &self.eager_reasons {
                writeln!(self.out, "eager steps: {reason}")?;
            }
        }
        Ok(())
    }
}

impl BenchArgs {
    fn archs(&self) -> Vec<&str> {
        if self.arch.iter().any(|a| a == "all") {
            bench::ARCHS.iter().map(|m| m.name).collect()
        } else {
            self.arch.iter().map(String::as_str).filter(|a| *a != "none").collect()
        }
    }

    fn modes(&self) -> &'static [Preset] {
        match self.mode {
            BenchMode::Constrained => &[Preset::Constrained],
            BenchMode::Unconstrained => &[Preset::Unconstrained],
            BenchMode::Both => &[Preset::Unconstrained, Preset::Constrained],
        }
    }

    fn options(&self) -> BenchOptions {
        let augment = if self.augment.is_empty() {
            None
        } else {
            Some(augment::pipeline(self.augment.iter().map(|a| a.0)))
        };
        BenchOptions {
            steps: self.steps as usize,
            warmup: self.warmup as usize,
            peak_tflops: self.peak_tflops,
            eager: self.eager,
            param: self.param,
            augment,
        }
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    // Each mode with each prompt count, in that order.
    let cases: Vec<(Preset, usize)> = args
        .modes()
        .iter()
        .flat_map(|&m| args.prompts.iter().map(move |&p| (m, p as usize)))
        .collect();
    let device = args.device.resolve()?;
    let options = args.options();
    if !args.json {
        println!(
            "device {device:?}, {} timed steps after {} warm-up; floor at {} TFLOP/s{}",
            options.steps,
            bench::warmup_steps(options.warmup),
            options.peak_tflops,
            if device.is_cuda() { "" } else { " (a GPU figure: on the CPU only informative)" }
        );
        println!("peak memory: {}", bench::peak_memory(device).source.trim_start_matches("n/a: "));
        println!("{}", bench::TABLE_HEADER);
    }
    let mut rows =
        Rows { json: args.json, out: std::io::stdout().lock(), eager_reasons: Vec::new() };
    let patch_embeddings: Vec<PatchEmbedding> = args
        .patch_embedding
        .iter()
        .map(|w| match w {
            PatchWay::Conv => PatchEmbedding::Convolution,
            PatchWay::Matmul => PatchEmbedding::MatMul,
        })
        .collect();
    let channels_last: Vec<bool> = args.channels_last.iter().map(|&o| o == OnOff::On).collect();
    for arch in args.archs() {
        let mut loaded =
            bench::random_model(arch, device).with_context(|| format!("--arch {arch}"))?;
        for layout in bench::layouts_to_time(&loaded.model, &patch_embeddings, &channels_last) {
            loaded.model.set_layout(layout);
            for &(mode, prompts) in &cases {
                let r = bench::run_case(&loaded.model, arch, device, mode, prompts, &options)
                    .with_context(|| format!("--arch {arch}"))?;
                rows.row(&r)?;
            }
        }
    }
    for names in &args.ensembles {
        let loaded = names
            .iter()
            .map(|name| {
                bench::random_model(name, device).with_context(|| format!("--ensemble {name}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let models: Vec<_> =
            loaded.iter().zip(names).map(|(l, n)| (&l.model, n.as_str())).collect();
        for &(mode, prompts) in &cases {
            let r = bench::run_ensemble_case(&models, device, mode, prompts, &options)
                .with_context(|| format!("--ensemble {}", names.join("+")))?;
            rows.row(&r)?;
        }
    }
    rows.finish()
}
