//! The seed's pixel optimisation: Adam on a grey-plus-noise image until CLIP's embedding of it
//! matches a text's, in two modes.
//!
//! Mirrors the seed's loops (reproduced in `shared/bench/seed_loops.py`: `seed_unconstrained`,
//! `seed_constrained`), batched over prompts as its `batched` variant:
//! - init `0.5 + N(0, 0.1)` at the model's resolution; `torch.optim.Adam([image], lr)` with default
//!   betas and eps; after each step `image.clamp_(0, 1)`;
//! - loss `1 − cosine(normalised image embedding, normalised text embedding)` of the CLIP-normalised
//!   (mean/std) image;
//! - unconstrained: no augmentation, the result is the final image. The seed averages four passes
//!   of the same deterministic forward per step; their mean has the same gradient as one pass, so
//!   one pass is done;
//! - constrained: each step's view is `RandomAffine` + `RandomHorizontalFlip` (`augment.rs`), the
//!   loss adds `TV(image) × tv_weight` of the un-augmented image, and the result is the image (after
//!   the update and clamp) of the step whose view had the lowest similarity loss, as the seed
//!   records `image` after `opt.step()` when `sim.item() < best`.
//!
//! All prompts run as one batch: each prompt has its own image, Adam state and augmentation draw,
//! and the per-prompt losses are summed, so every image gets the gradient it would get alone. The
//! step keeps its statistics and best images on the device and reads them back every
//! `readback_every` steps, so there is no host synchronisation per step; the augmentation is drawn
//! with `Tensor::rand` on the device and Adam's step count is a device tensor, so on CUDA the step
//! is captured once as a CUDA graph and replayed (`cuda_graph.rs`), eagerly elsewhere.
//!
//! Faults: a prompt whose loss or gradient stops being finite (fp16 overflow) is frozen from that
//! step on (a per-prompt "alive" mask on the device: no update, its image kept), and the others go
//! on; the loop can be stopped at any read-back (Ctrl-C), keeping the images reached so far.

use crate::clip::model::Clip;
use crate::clip::preprocess::{CLIP_MEAN, CLIP_STD};
use crate::engine::augment::AugmentConfig;
use crate::engine::cuda_graph::CudaGraph;
use crate::engine::loss::{cosine_similarity, total_variation};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// `torch.optim.Adam`'s defaults.
pub const ADAM_BETAS: (f64, f64) = (0.9, 0.999);
pub const ADAM_EPS: f64 = 1e-8;
/// The seed's initial image: grey plus Gaussian noise.
pub const INIT_MEAN: f64 = 0.5;
pub const INIT_STD: f64 = 0.1;

/// `torch.optim.Adam` for one tensor (no weight decay, no amsgrad), in the form of its
/// `capturable=True` single-tensor update: the step count is a device tensor and the bias
/// corrections are computed on the device, so nothing here reads the host. Unlike torch's
/// capturable form (float32 step), the step and bias corrections are f64 as in the default
/// (non-capturable) form, which computes them on the host: `1 - 0.999^t` in float32 loses ~1e-5
/// relative to cancellation in the first steps.
#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// The number of steps taken, an f64 scalar on the parameter's device.
    pub step: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

impl Adam {
    /// `Adam([param], lr)` with default betas and eps.
    pub fn new(param: &Tensor, lr: f64) -> Self {
        Self::with(param, lr, ADAM_BETAS, ADAM_EPS)
    }

    pub fn with(param: &Tensor, lr: f64, betas: (f64, f64), eps: f64) -> Self {
        let zeros = || param.detach().zeros_like();
        Self {
            lr,
            betas,
            eps,
            step: Tensor::zeros([], (Kind::Double, param.device())),
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
        }
    }

    /// One update of `param` in place with its gradient `grad`.
    pub fn step(&mut self, param: &mut Tensor, grad: &Tensor) {
        let (beta1, beta2) = self.betas;
        tch::no_grad(|| {
            let _ = self.step.g_add_scalar_(1);
            let _ = self.exp_avg.lerp_(grad, 1.0 - beta1);
            let _ = self.exp_avg_sq.g_mul_scalar_(beta2);
            let _ = self.exp_avg_sq.addcmul_(&(grad * (1.0 - beta2)), grad);
            let bias_correction1 = Tensor::pow_scalar(beta1, &self.step).neg() + 1.0;
            let bias_correction2 = Tensor::pow_scalar(beta2, &self.step).neg() + 1.0;
            let step_size_neg = -(bias_correction1.reciprocal() * self.lr);
            let denom = self.exp_avg_sq.sqrt() / (bias_correction2.sqrt() * &step_size_neg)
                + step_size_neg.reciprocal() * self.eps;
            let _ = param.addcdiv_(&self.exp_avg, &denom);
        });
    }
}

/// The seed's two scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Unconstrained,
    Constrained,
}

impl Mode {
    /// The name used in file names and records: `unconstrained` or `constrained`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unconstrained => "unconstrained",
            Self::Constrained => "constrained",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one optimisation does.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub mode: Mode,
    pub steps: usize,
    pub learning_rate: f64,
    /// Weight of the total variation in the constrained loss (ignored when unconstrained).
    pub tv_weight: f64,
    pub augment: AugmentConfig,
    /// Statistics are read back from the device every this many steps (and after the last).
    pub readback_every: usize,
    /// On CUDA, replay the step from a captured CUDA graph (see [`optimize_until`]); `false` runs
    /// every step eagerly (`--eager`).
    pub cuda_graph: bool,
}

/// The statistics of one step, one entry per prompt: the cosine similarity of the step's view
/// (augmented when constrained) before the update, and the un-weighted total variation of the
/// un-augmented image.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// 1-based: the number of updates once this step is done.
    pub step: usize,
    pub similarity: Vec<f32>,
    pub tv: Vec<f32>,
}

/// The result of one optimisation of a batch of prompts.
#[derive(Debug)]
pub struct Outcome {
    /// The initial image [3, R, R] in [0, 1]-ish (not clamped, as the seed), the same for every prompt.
    pub initial: Tensor,
    /// The result images [N, 3, R, R] on the CPU, in [0, 1]: the final ones (unconstrained) or the
    /// best ones (constrained).
    pub images: Tensor,
    /// Constrained: per prompt, the step whose view had the lowest similarity loss, and that loss.
    pub best: Option<Vec<(usize, f64)>>,
    /// Optimisation loop only (no set-up, no saving), including the read-backs.
    pub loop_seconds: f64,
    /// The steps done: `settings.steps`, or fewer when stopped early.
    pub steps_done: usize,
    /// Whether `stop` ended the loop before `settings.steps`.
    pub interrupted: bool,
    /// Per prompt: the step at which its loss or gradient was not finite, after which it was
    /// frozen (its image is the one that step started from); `None` for prompts that ran on.
    pub frozen_at: Vec<Option<usize>>,
    /// Whether the steps were replayed from a CUDA graph, or why not.
    pub execution: Execution,
}

impl Outcome {
    pub fn steps_per_second(&self, steps: usize) -> f64 {
        steps as f64 / self.loop_seconds.max(f64::MIN_POSITIVE)
    }
}

/// CLIP's mean/std normalisation over dim 1 of [N, 3, H, W] (as `preprocess::normalize`), with
/// the constants made once on the device so the step copies nothing from the host.
struct Normalize {
    mean: Tensor,
    std: Tensor,
}

impl Normalize {
    fn new(device: Device) -> Self {
        let stat = |v: &[f64; 3]| {
            Tensor::from_slice(v).to_kind(Kind::Float).to_device(device).view([1, 3, 1, 1])
        };
        Self { mean: stat(&CLIP_MEAN), std: stat(&CLIP_STD) }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        (x - &self.mean) / &self.std
    }
}

/// The cosine similarity of each image [N, 3, R, R] in [0, 1] with the matching row of
/// `text_features` [N, D] (no augmentation, no gradient): the seed's "similarity".
pub fn similarity(model: &Clip, images: &Tensor, text_features: &Tensor) -> Vec<f64> {
    let device = text_features.device();
    let normalize = Normalize::new(device);
    tch::no_grad(|| {
        let features = model.encode_image(&normalize.forward(&images.to_device(device)));
        let sim = cosine_similarity(&features, text_features).to_kind(Kind::Double);
        Vec::<f64>::try_from(sim.to_device(Device::Cpu)).unwrap_or_default()
    })
}

/// Optimises one image per row of `text_features` ([N, D], raw or normalised, on the model's
/// device). `on_stats` receives every step's statistics, in order, a chunk at each read-back.
/// The random draws (init noise, augmentation) come from torch's generator for the device: seed
/// it with `tch::manual_seed` first.
pub fn optimize(
    model: &Clip,
    text_features: &Tensor,
    settings: &Settings,
    on_stats: &mut dyn FnMut(&[StepStats]),
) -> Outcome {
    optimize_until(model, text_features, settings, on_stats, &|| false)
}

/// Eager steps run on the side stream before the step is captured as a CUDA graph: libraries
/// choose their algorithms and allocate their workspaces there (as `torch.cuda.graph`'s examples
/// warm up for 3 iterations).
pub const GRAPH_WARMUP_STEPS: usize = 3;

/// How the steps of a run were executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// Every step ran eagerly, op by op; why no CUDA graph was used.
    Eager { reason: String },
    /// The first `warmup` steps ran eagerly, the rest were replays of one captured CUDA graph.
    Graph { warmup: usize },
}

impl std::fmt::Display for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Eager { reason } => write!(f, "eager ({reason})"),
            Self::Graph { warmup } => {
                write!(f, "CUDA graph (one replay per step after {warmup} eager warm-up steps)")
            }
        }
    }
}

/// Everything one step reads and writes. The state tensors are allocated once and updated in
/// place, and nothing in [`Step::run`] reads the host, so the step can be captured in a CUDA graph
/// and replayed.
struct Step<'a> {
    model: &'a Clip,
    settings: &'a Settings,
    normalize: Normalize,
    /// Normalised text features [N, D], fp32.
    text: Tensor,
    batch: i64,
    res: i64,
    image: Tensor,
    adam: Adam,
    best_loss: Tensor,
    best_image: Tensor,
    best_step: Tensor,
    /// [readback, 2, N]: per step since the last read-back, similarity and TV.
    stats: Tensor,
    /// The row of `stats` the next step writes: an Int64 [1] cycling through 0..readback in step
    /// with the host's count of pending rows.
    slot: Tensor,
    readback: i64,
    alive: Tensor,
    /// 0 while alive, else the step at which the prompt was frozen.
    frozen_step: Tensor,
}

impl Step<'_> {
    /// One step: the (augmented) view, the loss, its gradient, Adam, the clamp, the NaN freeze,
    /// best-image tracking and the step's statistics.
    fn run(&mut self) {
        let Self { batch, res, settings, .. } = *self;
        let constrained = settings.mode == Mode::Constrained;
        let view = if constrained {
            settings.augment.sample(batch, res, res, self.image.device()).apply(&self.image)
        } else {
            self.image.shallow_clone()
        };
        let features = self.model.encode_image(&self.normalize.forward(&view));
        let sim = cosine_similarity(&features, &self.text);
        let sim_loss = sim.neg() + 1.0;
        let tv = if constrained {
            total_variation(&self.image)
        } else {
            total_variation(&self.image.detach())
        };
        let loss = if constrained {
            sim_loss.sum(Kind::Float) + tv.sum(Kind::Float) * settings.tv_weight
        } else {
            sim_loss.sum(Kind::Float)
        };
        let grad = Tensor::run_backward(&[&loss], &[&self.image], false, false);
        let before = tch::no_grad(|| {
            // A prompt stays alive while its loss and its gradient are finite.
            let finite = sim_loss
                .isfinite()
                .logical_and(&tv.isfinite())
                .logical_and(&grad[0].isfinite().flatten(1, -1).all_dim(1, false));
            let newly_frozen = self.alive.logical_and(&finite.logical_not());
            // This step's number: Adam's count before its update, plus one.
            let this_step = (&self.adam.step + 1.0).to_kind(Kind::Float);
            self.frozen_step
                .copy_(&self.frozen_step.where_self(&newly_frozen.logical_not(), &this_step));
            let _ = self.alive.logical_and_(&finite);
            self.image.detach().copy()
        });
        let alive_image = self.alive.view([batch, 1, 1, 1]);
        let grad = tch::no_grad(|| grad[0].where_scalarother(&alive_image, 0.0));
        self.adam.step(&mut self.image, &grad);
        tch::no_grad(|| {
            let _ = self.image.clamp_(0.0, 1.0);
            // Frozen prompts get no update (Adam's momentum would still move them).
            self.image.copy_(&self.image.where_self(&alive_image, &before));
            let row = Tensor::stack(&[sim.detach(), tv.detach()], 0).unsqueeze(0);
            let _ = self.stats.index_copy_(0, &self.slot, &row);
            let _ = self.slot.g_add_scalar_(1).remainder_(self.readback);
            if constrained {
                let sim_loss = sim_loss.detach();
                let better = sim_loss.lt_tensor(&self.best_loss).logical_and(&self.alive);
                self.best_loss.copy_(&sim_loss.where_self(&better, &self.best_loss));
                let image_better = better.view([batch, 1, 1, 1]);
                self.best_image.copy_(&self.image.where_self(&image_better, &self.best_image));
                let step = self.adam.step.to_kind(Kind::Float);
                self.best_step.copy_(&step.where_self(&better, &self.best_step));
            }
        });
    }
}

/// Where the loop is in running its steps.
enum Runner {
    Eager,
    /// Eager steps on the graph's side stream, then capture.
    WarmUp(CudaGraph),
    Replay(CudaGraph),
}

/// [`optimize`], asking `stop` at every read-back whether to end the loop there (as after its last
/// step). The loop also ends when every prompt is frozen.
///
/// On CUDA with `settings.cuda_graph`, the first [`GRAPH_WARMUP_STEPS`] steps run eagerly on a side
/// stream, the next is captured as a CUDA graph and every step from then on is one replay of it
/// (the same operations, so the same numbers). Where that is not possible the steps run eagerly:
/// [`Outcome::execution`] says which and why, and a capture that fails is reported on stderr.
pub fn optimize_until(
    model: &Clip,
    text_features: &Tensor,
    settings: &Settings,
    on_stats: &mut dyn FnMut(&[StepStats]),
    stop: &dyn Fn() -> bool,
) -> Outcome {
    let device = text_features.device();
    let batch = text_features.size()[0];
    let res = model.config.image_resolution;
    let constrained = settings.mode == Mode::Constrained;
    let text = tch::no_grad(|| {
        let t = text_features.to_kind(Kind::Float);
        &t / t.norm_scalaropt_dim(2, [-1], true)
    });

    // One draw, shared by every prompt: the prompts start from the same picture, as separate runs
    // with the same seed would.
    let initial = Tensor::randn([1, 3, res, res], (Kind::Float, device)) * INIT_STD + INIT_MEAN;
    let image = initial.expand([batch, 3, res, res], false).contiguous().set_requires_grad(true);
    let readback = settings.readback_every.max(1);
    let mut state = Step {
        model,
        settings,
        normalize: Normalize::new(device),
        text,
        batch,
        res,
        adam: Adam::new(&image, settings.learning_rate),
        best_loss: Tensor::full([batch], f64::INFINITY, (Kind::Float, device)),
        best_image: image.detach().copy(),
        best_step: Tensor::zeros([batch], (Kind::Float, device)),
        stats: Tensor::zeros([readback as i64, 2, batch], (Kind::Float, device)),
        slot: Tensor::zeros([1], (Kind::Int64, device)),
        readback: readback as i64,
        alive: Tensor::ones([batch], (Kind::Bool, device)),
        frozen_step: Tensor::zeros([batch], (Kind::Float, device)),
        image,
    };

    let planned = if !settings.cuda_graph {
        Err("CUDA graphs turned off by --eager".to_string())
    } else if !device.is_cuda() {
        Err(format!("the device is {}, not CUDA", format!("{device:?}").to_lowercase()))
    } else if settings.steps <= GRAPH_WARMUP_STEPS {
        Err(format!(
            "{} steps: no more than the {GRAPH_WARMUP_STEPS} warm-up steps",
            settings.steps
        ))
    } else {
        CudaGraph::new(device).map_err(|e| e.to_string())
    };
    let (mut runner, mut execution) = match planned {
        Ok(graph) => (Runner::WarmUp(graph), Execution::Graph { warmup: GRAPH_WARMUP_STEPS }),
        Err(reason) => (Runner::Eager, Execution::Eager { reason }),
    };

    let mut frozen_at = vec![None; batch as usize];
    let mut steps_done = 0;
    let mut interrupted = false;
    let start = Instant::now();
    let mut pending = 0usize;
    for step in 1..=settings.steps {
        runner = match runner {
            Runner::Eager => {
                state.run();
                Runner::Eager
            }
            Runner::WarmUp(mut graph) if step <= GRAPH_WARMUP_STEPS => {
                match graph.on_side_stream(|| state.run()) {
                    Ok(()) => Runner::WarmUp(graph),
                    Err(e) => {
                        execution = fall_back(format!("entering the side stream failed: {e}"));
                        state.run();
                        Runner::Eager
                    }
                }
            }
            Runner::WarmUp(mut graph) => match graph.capture(|| state.run()) {
                // Capturing ran nothing: the replay does this step.
                Ok(()) => {
                    replay(&graph);
                    Runner::Replay(graph)
                }
                Err(e) => {
                    execution = fall_back(format!("capturing the step failed: {e}"));
                    state.run();
                    Runner::Eager
                }
            },
            Runner::Replay(graph) => {
                replay(&graph);
                Runner::Replay(graph)
            }
        };
        pending += 1;
        steps_done = step;
        if pending == readback || step == settings.steps {
            on_stats(&read_stats(&state.stats, pending, step));
            pending = 0;
            let steps =
                Vec::<f32>::try_from(state.frozen_step.to_device(Device::Cpu)).unwrap_or_default();
            for (slot, &s) in frozen_at.iter_mut().zip(&steps) {
                if slot.is_none() && s > 0.0 {
                    *slot = Some(s as usize);
                }
            }
            if frozen_at.iter().all(Option::is_some) {
                break;
            }
            if step < settings.steps && stop() {
                interrupted = true;
                break;
            }
        }
    }
    // `runner` (with the graph and its memory pool) lives to the end, after the copies below have
    // waited for the last replay.
    let result = if constrained { state.best_image } else { state.image.detach() };
    let images = result.to_device(Device::Cpu);
    let loop_seconds = start.elapsed().as_secs_f64();

    let best = constrained.then(|| {
        let steps =
            Vec::<f32>::try_from(state.best_step.to_device(Device::Cpu)).unwrap_or_default();
        let losses =
            Vec::<f32>::try_from(state.best_loss.to_device(Device::Cpu)).unwrap_or_default();
        steps.iter().zip(&losses).map(|(&s, &l)| (s as usize, l as f64)).collect()
    });
    Outcome {
        initial: initial.squeeze_dim(0).to_device(Device::Cpu),
        images,
        best,
        loop_seconds,
        steps_done,
        interrupted,
        frozen_at,
        execution,
    }
}

/// Reports on stderr that the run goes on eagerly, and why.
fn fall_back(reason: String) -> Execution {
    eprintln!("warning: no CUDA graph, every further step runs eagerly: {reason}");
    Execution::Eager { reason }
}

/// One replay. A failure here means the device itself failed (the same work ran when captured),
/// so it ends the run as a libtorch error does.
fn replay(graph: &CudaGraph) {
    if let Err(e) = graph.replay() {
        panic!("replaying the CUDA graph of the step failed: {e}");
    }
}

/// Copies the first `count` rows of the device buffer to the host; the last of them is `last_step`.
fn read_stats(buffer: &Tensor, count: usize, last_step: usize) -> Vec<StepStats> {
    let host = buffer.narrow(0, 0, count as i64).to_device(Device::Cpu);
    let batch = host.size()[2] as usize;
    let flat = Vec::<f32>::try_from(host.flatten(0, -1)).unwrap_or_default();
    (0..count)
        .map(|i| {
            let row = &flat[i * 2 * batch..(i + 1) * 2 * batch];
            StepStats {
                step: last_step + 1 + i - count,
                similarity: row[..batch].to_vec(),
                tv: row[batch..].to_vec(),
            }
        })
        .collect()
}
