//! `clip bench`: the speed of the optimisation step (`optimize.rs`) per architecture, mode and
//! number of prompts, with random weights and random text features (speed does not depend on
//! their values), against the FLOP floor of a given peak throughput.
//!
//! Mirrors the timing of `scripts/seed_loops.py`: warm-up steps first, untimed; the
//! clock read after synchronising the device. Warm-up and timed steps are one [`optimize`] run
//! with the experiment's read-back interval, as a real run does (on CUDA: eager warm-up, capture,
//! replays); the clock starts at the read-back that ends the warm-up and stops at the last one
//! (each read-back copies to the host, so waits for the device). The warm-up is rounded up to a
//! multiple of the read-back interval for that, and covers the graph's warm-up and capture.
//!
//! An ensemble (`--ensemble RN50+ViT-B/32`) is timed as one case: one image per prompt, every
//! model's forward and backward in each step ([`run_ensemble_case`]); its FLOP floor is the sum of
//! its models'.

use crate::progress::warn_eager_fallback;
use clip_core::clip::model::{Clip, Layout, LoadedClip, PatchEmbedding, VisionTower};
use clip_core::clip::released::{self, ReleasedModel};
use clip_core::engine::augment::Augment;
use clip_core::engine::draws::TorchDraws;
use clip_core::engine::executor::Execution;
use clip_core::engine::objective::Member;
use clip_core::engine::optimize::{optimize_objective_until, EngineError, Preset, READBACK_EVERY};
use clip_core::engine::param::Param;
use indicatif::ProgressBar;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The architectures `--arch all` runs: the three of the experiment.
pub const ARCHS: [ReleasedModel; 3] = clip_core::clip::released::SEED_MODELS;

/// The H100's measured bf16 matmul throughput (`docs/gpu.md`), the default peak for the floor.
pub const DEFAULT_PEAK_TFLOPS: f64 = 763.0;

/// The warm-up steps a case runs for `requested`: rounded up to a multiple of the read-back
/// interval, where the clock starts.
pub fn warmup_steps(requested: usize) -> usize {
    requested.div_ceil(READBACK_EVERY).saturating_mul(READBACK_EVERY)
}

/// FLOPs of one prompt-step (forward and gradient to the input image), in GFLOP, from the
/// released models' table; `None` for architectures it has no count for.
pub fn gflop_per_prompt_step(arch: &str) -> Option<f64> {
    released::by_name(arch).ok().and_then(|m| m.gflop_per_prompt_step)
}

/// What to time and how.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Timed steps per case.
    pub steps: usize,
    /// Untimed steps before them (rounded up to a multiple of the read-back interval).
    pub warmup: usize,
    /// The peak throughput the FLOP floor assumes, in TFLOP/s.
    pub peak_tflops: f64,
    /// `--eager`: no CUDA graph, every step op by op.
    pub eager: bool,
    /// `--param`: replaces the preset's parameterisation.
    pub param: Option<Param>,
    /// `--augment`: replaces the preset's pipeline.
    pub augment: Option<Vec<Augment>>,
}

/// The process's peak memory, as far as it can be read.
#[derive(Debug, Clone, PartialEq)]
pub struct PeakMemory {
    pub bytes: Option<u64>,
    /// What `bytes` measures, or why it is missing.
    pub source: &'static str,
}

/// Peak memory for a run on `device`: on the CPU the process's peak resident set (`VmHWM` in
/// `/proc/self/status`, since the process started); on CUDA the caching allocator's peak of
/// allocated bytes since [`reset_peak_memory`] (through the CUDA-graph shim).
pub fn peak_memory(device: Device) -> PeakMemory {
    if device.is_cuda() {
        return match clip_core::engine::cuda_graph::peak_memory(device) {
            Ok(bytes) => PeakMemory {
                bytes: Some(bytes),
                source: "peak bytes allocated by the CUDA caching allocator in the case",
            },
            Err(_) => PeakMemory {
                bytes: None,
                source: "n/a: this build has no CUDA allocator statistics (no CUDA-graph shim)",
            },
        };
    }
    let kib = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    match kib {
        Some(kib) => {
            PeakMemory { bytes: Some(kib * 1024), source: "peak RSS of the process (VmHWM)" }
        }
        None => PeakMemory { bytes: None, source: "n/a: /proc/self/status has no VmHWM" },
    }
}

/// The layout choice that matters for `model`'s vision tower: `patches: conv|matmul` for a ViT,
/// `nchw|channels-last` for a ResNet.
pub fn layout_label(model: &Clip) -> String {
    let layout = model.layout();
    match &model.visual {
        VisionTower::ViT(_) => match layout.patch_embedding {
            PatchEmbedding::Convolution => "patches: conv".into(),
            PatchEmbedding::MatMul => "patches: matmul".into(),
        },
        VisionTower::ResNet(_) if layout.channels_last => "channels-last".into(),
        VisionTower::ResNet(_) => "nchw".into(),
    }
}

/// The layouts worth timing for `model`: the given patch embeddings for a ViT, the given
/// channels-last settings for a ResNet; the model's own when none is given.
pub fn layouts_to_time(
    model: &Clip,
    patch_embeddings: &[PatchEmbedding],
    channels_last: &[bool],
) -> Vec<Layout> {
    let own = model.layout();
    match &model.visual {
        VisionTower::ViT(_) if !patch_embeddings.is_empty() => patch_embeddings
            .iter()
            .map(|&patch_embedding| Layout { patch_embedding, ..own })
            .collect(),
        VisionTower::ResNet(_) if !channels_last.is_empty() => {
            channels_last.iter().map(|&on| Layout { channels_last: on, ..own }).collect()
        }
        _ => vec![own],
    }
}

/// Starts the CUDA peak anew for the next case (the CPU's peak RSS cannot be reset).
pub fn reset_peak_memory(device: Device) {
    if device.is_cuda() {
        let _ = clip_core::engine::cuda_graph::reset_peak_memory(device);
    }
}

/// One timed case.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub arch: String,
    pub mode: Preset,
    pub param: Param,
    /// The pipeline's spec strings.
    pub augment: Vec<String>,
    pub prompts: usize,
    /// Images CLIP sees per step: prompts × views per image (cutouts).
    pub views_per_step: usize,
    pub steps: usize,
    pub warmup: usize,
    pub device: Device,
    /// The kind the vision tower computes in (fp32 on the CPU, fp16 on CUDA).
    pub dtype: Kind,
    pub ms_per_step: f64,
    pub prompt_steps_per_s: f64,
    pub ms_per_view: f64,
    pub peak_memory: PeakMemory,
    pub gflop_per_prompt_step: Option<f64>,
    pub peak_tflops: f64,
    /// The step time if every FLOP ran at `peak_tflops` (every view counts one prompt-step).
    pub floor_ms_per_step: Option<f64>,
    /// `ms_per_step / floor_ms_per_step`: how many times the floor the step takes.
    pub floor_ratio: Option<f64>,
    pub eager: bool,
    /// Whether the steps were replayed from a CUDA graph, or why not.
    pub execution: Execution,
    /// The model's layout choice in the case ([`layout_label`]).
    pub layout: String,
}

impl BenchResult {
    /// One JSON object (printed one per line by `clip bench --json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "arch": self.arch,
            "mode": self.mode.as_str(),
            "param": self.param.as_str(),
            "augment": self.augment,
            "prompts": self.prompts,
            "views_per_step": self.views_per_step,
            "ms_per_view": self.ms_per_view,
            "steps": self.steps,
            "warmup": self.warmup,
            "device": format!("{:?}", self.device),
            "dtype": format!("{:?}", self.dtype),
            "ms_per_step": self.ms_per_step,
            "ms_per_prompt_step": self.ms_per_step / self.prompts as f64,
            "prompt_steps_per_s": self.prompt_steps_per_s,
            "peak_memory_bytes": self.peak_memory.bytes,
            "peak_memory_source": self.peak_memory.source,
            "gflop_per_prompt_step": self.gflop_per_prompt_step,
            "peak_tflops": self.peak_tflops,
            "floor_ms_per_step": self.floor_ms_per_step,
            "floor_ratio": self.floor_ratio,
            "eager": self.eager,
            "graph": matches!(self.execution, Execution::Graph { .. }),
            "graph_reason": match &self.execution {
                Execution::Eager { reason } => Some(reason.as_str()),
                Execution::Graph { .. } => None,
            },
            "execution": self.execution.to_string(),
            "layout": self.layout,
        })
    }
}

/// Builds a random-weight model of a released architecture (fp16 on CUDA, as `clip.load`).
pub fn random_model(arch: &str, device: Device) -> Result<LoadedClip, released::UnknownModel> {
    Ok(LoadedClip::random(&released::by_name(arch)?.config, device))
}

fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// Times `options.steps` steps of [`optimize`] for `prompts` random text features on `device`
/// (the model's), after the warm-up (see the module's header), with `mode`'s preset and the
/// options' parameterisation and pipeline. `arch` labels the result and picks the FLOP count
/// ([`gflop_per_prompt_step`]; none for other configurations).
pub fn run_case(
    model: &Clip,
    arch: &str,
    device: Device,
    mode: Preset,
    prompts: usize,
    options: &BenchOptions,
) -> Result<BenchResult, EngineError> {
    run_ensemble_case(&[(model, arch)], device, mode, prompts, options)
}

/// [`run_case`] for an ensemble of `models` (each with its architecture's name), equally
/// weighted: one image per prompt against all of them. The result's `arch` is the names joined by
/// `+`, its FLOP count the sum of theirs.
pub fn run_ensemble_case(
    models: &[(&Clip, &str)],
    device: Device,
    mode: Preset,
    prompts: usize,
    options: &BenchOptions,
) -> Result<BenchResult, EngineError> {
    tch::manual_seed(0);
    let texts: Vec<Tensor> = models
        .iter()
        .map(|(m, _)| Tensor::randn([prompts as i64, m.config.embed_dim], (Kind::Float, device)))
        .collect();
    let members: Vec<Member> = models
        .iter()
        .zip(&texts)
        .map(|((model, _), text)| Member { model, text, negatives: None, weight: 1.0 })
        .collect();
    let arch = models.iter().map(|(_, a)| *a).collect::<Vec<_>>().join("+");
    let warmup = warmup_steps(options.warmup);
    let steps = options.steps.max(1);
    let mut settings = mode.settings();
    if let Some(param) = options.param {
        settings.param = param;
    }
    if let Some(augment) = &options.augment {
        settings.augment = augment.clone();
    }
    settings.steps = warmup + steps;
    settings.readback_every = READBACK_EVERY;
    settings.cuda_graph = !options.eager;
    let views = prompts * settings.views_per_image() as usize;
    synchronize(device);
    reset_peak_memory(device);
    let mut start = Instant::now();
    let mut end = start;
    let outcome = optimize_objective_until(
        &members,
        None,
        &settings,
        &mut TorchDraws,
        &mut |chunk| {
            if let Some(reason) = chunk.last().and_then(|s| s.eager_fallback.as_deref()) {
                warn_eager_fallback(&ProgressBar::hidden(), reason);
            }
            match chunk.last().map(|s| s.step) {
                Some(step) if step == warmup => start = Instant::now(),
                Some(step) if step == warmup + steps => end = Instant::now(),
                _ => {}
            }
        },
        &|| false,
    )?;
    let ms_per_step = end.duration_since(start).as_secs_f64() * 1e3 / steps as f64;
    let gflop: Option<f64> = models.iter().map(|(_, a)| gflop_per_prompt_step(a)).sum();
    let floor = gflop.map(|g| views as f64 * g * 1e9 / (options.peak_tflops * 1e12) * 1e3);
    Ok(BenchResult {
        arch,
        mode,
        param: settings.param,
        augment: settings.augment.iter().map(|a| a.to_string()).collect(),
        prompts,
        views_per_step: views,
        steps: outcome.steps_done - warmup,
        warmup,
        device,
        dtype: models[0].0.dtype(),
        ms_per_step,
        prompt_steps_per_s: prompts as f64 * 1e3 / ms_per_step,
        ms_per_view: ms_per_step / views as f64,
        peak_memory: peak_memory(device),
        gflop_per_prompt_step: gflop,
        peak_tflops: options.peak_tflops,
        floor_ms_per_step: floor,
        floor_ratio: floor.map(|f| ms_per_step / f),
        eager: options.eager,
        execution: outcome.execution,
        layout: models.iter().map(|(m, _)| layout_label(m)).collect::<Vec<_>>().join(" + "),
    })
}

/// The header of [`table_row`]'s table.
pub const TABLE_HEADER: &str =
    "arch     | mode          | param            | augment                         | prompts | views | layout          | graph | ms/step  | ms/view  | prompt-steps/s | peak memory | floor ratio";

/// One human-readable line per case.
pub fn table_row(r: &BenchResult) -> String {
    let memory = match r.peak_memory.bytes {
        Some(b) => format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0)),
        None => "n/a".to_string(),
    };
    let ratio = r.floor_ratio.map_or("n/a".to_string(), |x| format!("{x:.1}×"));
    let graph = match r.execution {
        Execution::Graph { .. } => "yes",
        Execution::Eager { .. } => "no",
    };
    let augment = if r.augment.is_empty() { "none".to_string() } else { r.augment.join(" ") };
    format!(
        "{:8} | {:13} | {:16} | {:31} | {:7} | {:5} | {:15} | {:5} | {:8.2} | {:8.3} | {:14.2} | {:>11} | {}",
        r.arch,
        r.mode.as_str(),
        r.param.as_str(),
        augment,
        r.prompts,
        r.views_per_step,
        r.layout,
        graph,
        r.ms_per_step,
        r.ms_per_view,
        r.prompt_steps_per_s,
        memory,
        ratio
    )
}
