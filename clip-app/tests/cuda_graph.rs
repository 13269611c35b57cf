//! CUDA-graph replay against eager execution of the optimisation step.
//!
//! Where CUDA is present: RN50 and ViT-B/32 with random fp16 weights (as `clip.load` gives on
//! CUDA) and the tiny random ViT, both presets and a Lucent pipeline (fft-decorrelated, pad,
//! jitter, scale, rotate, noise, cutouts, on a 320×256 canvas), 3 prompts, one seed, 20 steps: the
//! run whose steps
//! are replayed from one captured graph must give the images of the run whose steps ran op by op,
//! within fp16 rounding — no further from them than a second eager run is (CUDA kernels such as
//! `grid_sampler_2d`'s backward add with atomics, so eager runs need not be bit-identical) plus
//! 1e-3, and with the same best steps. Without CUDA these tests print that they were skipped and
//! check only the CPU side: every step eager, with the reason.

#[path = "../../clip-core/tests/common/tiny_model.rs"]
mod tiny_model;

use clip_app::bench::random_model;
use clip_core::clip::model::Clip;
use clip_core::engine::augment::Augment;
use clip_core::engine::draws::TorchDraws;
use clip_core::engine::executor::{Execution, GRAPH_WARMUP_STEPS};
use clip_core::engine::objective::Member;
use clip_core::engine::optimize::{optimize, optimize_objective_until, Outcome, Preset, Settings};
use clip_core::engine::param::{Canvas, Param};
use std::io::Write;
use tch::{Device, Kind, Tensor};

const STEPS: usize = 20;
const SEED: i64 = 1234;

/// The cases: the two presets, and every other part of the engine at once.
fn cases() -> Vec<(&'static str, Settings)> {
    let lucent = Settings {
        param: Param::FftDecorrelated,
        canvas: Some(Canvas { width: 320, height: 256 }),
        augment: vec![
            Augment::Pad { px: 8 },
            Augment::Jitter { px: 8 },
            Augment::Scale { min: 0.9, max: 1.1 },
            Augment::Rotate { degrees: 10.0 },
            Augment::Noise { sd: 0.02 },
            Augment::Cutouts { n: 8, min_frac: 0.5, pow: 1.0 },
            Augment::Flip { p: 0.5 },
        ],
        ..Preset::Constrained.settings()
    };
    vec![
        ("unconstrained", Preset::Unconstrained.settings()),
        ("constrained", Preset::Constrained.settings()),
        ("lucent + cutouts", lucent),
    ]
}

fn run(model: &Clip, text: &Tensor, settings: &Settings, cuda_graph: bool) -> Outcome {
    tch::manual_seed(SEED);
    let settings = Settings { steps: STEPS, readback_every: 10, cuda_graph, ..settings.clone() };
    optimize(model, text, &settings, &mut TorchDraws, &mut |_| {}).expect("the run")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().to_kind(Kind::Double).double_value(&[])
}

static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cuda() -> Option<Device> {
    if tch::Cuda::is_available() {
        Some(Device::Cuda(0))
    } else {
        // Written to stderr directly, past the test harness's capture, so that the skip shows.
        let _ = writeln!(
            std::io::stderr().lock(),
            "cuda_graph: skipped, no CUDA device (graph replay is checked only where CUDA is present)"
        );
        None
    }
}

#[test]
fn graph_replay_gives_the_eager_images() {
    let _guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(device) = cuda() else { return };
    let models = [
        ("tiny ViT", tiny_model::tiny_model_on(device)),
        ("RN50", random_model("RN50", device).expect("RN50")),
        ("ViT-B/32", random_model("ViT-B/32", device).expect("ViT-B/32")),
    ];
    for (name, loaded) in &models {
        let model = &loaded.model;
        assert_eq!(model.dtype(), Kind::Half, "{name}: fp16 on CUDA, as clip.load");
        tch::manual_seed(99);
        let text = Tensor::randn([3, model.config.embed_dim], (Kind::Float, device));
        for (mode, settings) in cases() {
            let eager = run(model, &text, &settings, false);
            let eager_again = run(model, &text, &settings, false);
            let graph = run(model, &text, &settings, true);
            assert!(
                matches!(eager.execution, Execution::Eager { .. }),
                "{name} {mode}: {:?}",
                eager.execution
            );
            assert_eq!(
                graph.execution,
                Execution::Graph { warmup: GRAPH_WARMUP_STEPS },
                "{name} {mode}: the step was not captured"
            );
            let noise = max_abs_diff(&eager.images, &eager_again.images);
            let diff = max_abs_diff(&eager.images, &graph.images);
            eprintln!(
                "{name} {mode}: max |graph - eager| = {diff:e}, max |eager - eager| = {noise:e}"
            );
            assert!(
                diff <= noise + 1e-3,
                "{name} {mode}: graph differs by {diff} (eager by {noise})"
            );
            assert_eq!(graph.steps_done, STEPS);
            assert_eq!(graph.frozen_at, eager.frozen_at, "{name} {mode}");
            if graph.best.is_some() && noise == 0.0 {
                assert_eq!(graph.best, eager.best, "{name} {mode}: best steps");
            }
        }
    }
}

/// The new objectives in one captured step: an ensemble of RN50 (224 px) and the tiny ViT (32 px,
/// the views resampled to it inside the graph), negatives, and a start image with an L∞ budget
/// (the projection's bounds allocated before capture).
#[test]
fn graph_replay_gives_the_eager_images_for_an_ensemble_with_negatives_from_a_start() {
    let _guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(device) = cuda() else { return };
    let rn50 = random_model("RN50", device).expect("RN50");
    let tiny = tiny_model::tiny_model_on(device);
    tch::manual_seed(7);
    let texts: Vec<Tensor> = [&rn50, &tiny]
        .iter()
        .map(|m| Tensor::randn([3, m.model.config.embed_dim], (Kind::Float, device)))
        .collect();
    let negatives: Vec<Tensor> = [&rn50, &tiny]
        .iter()
        .map(|m| Tensor::randn([2, m.model.config.embed_dim], (Kind::Float, device)))
        .collect();
    let members = [
        Member { model: &rn50.model, text: &texts[0], negatives: Some(&negatives[0]), weight: 1.0 },
        Member { model: &tiny.model, text: &texts[1], negatives: Some(&negatives[1]), weight: 2.0 },
    ];
    let start = Tensor::rand([1, 3, 224, 224], (Kind::Float, device));
    let run = |cuda_graph: bool| {
        tch::manual_seed(SEED);
        let settings = Settings {
            steps: STEPS,
            readback_every: 10,
            cuda_graph,
            epsilon: Some(8.0 / 255.0),
            ..Preset::Constrained.settings()
        };
        optimize_objective_until(
            &members,
            Some(&start),
            &settings,
            &mut TorchDraws,
            &mut |_| {},
            &|| false,
        )
        .expect("the run")
    };
    let (eager, eager_again, graph) = (run(false), run(false), run(true));
    assert_eq!(graph.execution, Execution::Graph { warmup: GRAPH_WARMUP_STEPS });
    let noise = max_abs_diff(&eager.images, &eager_again.images);
    let diff = max_abs_diff(&eager.images, &graph.images);
    eprintln!("ensemble + negatives + start: max |graph - eager| = {diff:e}, eager {noise:e}");
    assert!(diff <= noise + 1e-3, "graph differs by {diff} (eager by {noise})");
    let moved =
        max_abs_diff(&graph.images, &start.to_device(Device::Cpu).expand([3, 3, 224, 224], false));
    assert!(moved <= 8.0 / 255.0 + 1e-6, "past the budget: {moved}");
}

#[test]
fn without_cuda_every_step_runs_eagerly_and_says_why() {
    let _guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let loaded = tiny_model::tiny_model();
    let text = Tensor::randn([2, loaded.model.config.embed_dim], (Kind::Float, Device::Cpu));
    let constrained = Preset::Constrained.settings();
    let outcome = run(&loaded.model, &text, &constrained, true);
    match &outcome.execution {
        Execution::Eager { reason } => assert!(reason.contains("cpu"), "{reason}"),
        other => panic!("a CPU run replayed a graph: {other:?}"),
    }
    let outcome = run(&loaded.model, &text, &constrained, false);
    assert_eq!(
        outcome.execution,
        Execution::Eager { reason: "CUDA graphs turned off by --eager".into() }
    );
}
