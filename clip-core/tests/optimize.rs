//! The optimiser against `torch.optim.Adam`, and the optimisation loop on a tiny random model.
//!
//! Fixture: `scripts/make_augment_fixtures.py` wrote `adam.json` (torch.optim.Adam, 5 steps).

#[path = "common/tiny_model.rs"]
mod tiny_model;
use tiny_model::tiny_model;

use clip_core::clip::model::LoadedClip;
use clip_core::engine::augment::AugmentConfig;
use clip_core::engine::optimize::{
    optimize, optimize_until, similarity, Adam, Mode, Settings, StepStats,
};
use serde_json::Value;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn matrix(value: &Value) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(value.clone()).expect("a matrix");
    let n = rows.len() as i64;
    Tensor::from_slice(&rows.concat()).view([n, -1])
}

// x = torch.tensor(initial, requires_grad=True); opt = torch.optim.Adam([x], lr=0.05)
// loss = ((x - target) ** 2 * torch.arange(1.0, 7.0).view(2, 3)).sum() + torch.sin(3 * x).sum()
// loss.backward(); opt.step(); x.clamp_(0, 1)   # 5 times
#[test]
fn adam_matches_torch() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/augment/adam.json");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let target = matrix(&json["target"]);
    let weights = Tensor::arange_start(1, 7, (Kind::Float, Device::Cpu)).view([2, 3]);
    let mut x = matrix(&json["initial"]).set_requires_grad(true);
    let mut adam = Adam::new(&x, json["lr"].as_f64().expect("lr"));
    let steps: Vec<Vec<f32>> = serde_json::from_value(json["steps"].clone()).expect("steps");
    for (i, expected) in steps.iter().enumerate() {
        let loss = ((&x - &target).square() * &weights).sum(Kind::Float)
            + (&x * 3.0).sin().sum(Kind::Float);
        let grad = Tensor::run_backward(&[&loss], &[&x], false, false);
        adam.step(&mut x, &grad[0]);
        tch::no_grad(|| {
            let _ = x.clamp_(0.0, 1.0);
        });
        let ours = Vec::<f32>::try_from(x.detach().flatten(0, -1)).expect("floats");
        // torch's CPU Adam computes the bias corrections on the host in f64, ours on the device in
        // f32 (capturable form): equal to a few float32 ulps.
        for (a, b) in ours.iter().zip(expected) {
            assert!((a - b).abs() <= 1e-6, "step {}: {a} vs torch {b}", i + 1);
        }
    }
    assert_eq!(adam.step.double_value(&[]), 5.0);
}

static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// torch's generator is global and tests run in parallel threads: tests that draw hold this.
fn seeded() -> std::sync::MutexGuard<'static, ()> {
    SEEDED.lock().unwrap_or_else(|e| e.into_inner())
}

fn settings(mode: Mode, steps: usize) -> Settings {
    Settings {
        mode,
        steps,
        learning_rate: 0.05,
        tv_weight: 1e-4,
        augment: AugmentConfig::SEED,
        readback_every: 4,
        cuda_graph: true,
    }
}

fn run(
    loaded: &LoadedClip,
    text: &Tensor,
    settings: &Settings,
    seed: i64,
) -> (Vec<StepStats>, clip_core::engine::optimize::Outcome) {
    let mut stats = Vec::new();
    tch::manual_seed(seed);
    let outcome =
        optimize(&loaded.model, text, settings, &mut |chunk| stats.extend_from_slice(chunk));
    (stats, outcome)
}

#[test]
fn unconstrained_raises_similarity_and_reports_every_step() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([3, 32], (Kind::Float, Device::Cpu));
    let (stats, outcome) = run(&loaded, &text, &settings(Mode::Unconstrained, 10), 1);
    assert_eq!(stats.iter().map(|s| s.step).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert!(stats.iter().all(|s| s.similarity.len() == 3 && s.tv.len() == 3));
    assert!(outcome.best.is_none());
    assert_eq!(outcome.images.size(), [3, 3, 32, 32]);
    let (lo, hi) = (outcome.images.min().double_value(&[]), outcome.images.max().double_value(&[]));
    assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi), "clamped: [{lo}, {hi}]");
    let initial = outcome.initial.unsqueeze(0).expand([3, 3, 32, 32], false);
    let before = similarity(&loaded.model, &initial, &text);
    let after = similarity(&loaded.model, &outcome.images, &text);
    // The first step's statistics are the initial image's similarity.
    for p in 0..3 {
        assert!((stats[0].similarity[p] as f64 - before[p]).abs() < 1e-5);
        assert!(after[p] > before[p] + 0.01, "prompt {p}: {} -> {}", before[p], after[p]);
    }
}

#[test]
fn prompts_in_a_batch_optimise_as_separate_runs() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([2, 32], (Kind::Float, Device::Cpu));
    let (_, together) = run(&loaded, &text, &settings(Mode::Unconstrained, 5), 2);
    for p in 0..2 {
        let (_, alone) = run(&loaded, &text.narrow(0, p, 1), &settings(Mode::Unconstrained, 5), 2);
        let diff = (together.images.get(p) - alone.images.get(0)).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "prompt {p}: batched and alone differ by {diff}");
    }
}

#[test]
fn constrained_keeps_the_lowest_similarity_loss() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([3, 32], (Kind::Float, Device::Cpu));
    let (stats, outcome) = run(&loaded, &text, &settings(Mode::Constrained, 9), 3);
    assert_eq!(stats.len(), 9);
    let best = outcome.best.expect("constrained runs record the best step");
    for (p, &(step, loss)) in best.iter().enumerate() {
        // The first step with the lowest `1 - similarity` of its augmented view.
        let (want_step, want_loss) = stats
            .iter()
            .map(|s| (s.step, 1.0f32 - s.similarity[p]))
            .fold((0, f32::INFINITY), |acc, x| if x.1 < acc.1 { x } else { acc });
        assert_eq!((step, loss as f32), (want_step, want_loss), "prompt {p}");
    }
    // Different augmentation draws per prompt: the TV of the three images drifts apart.
    let tv = &stats[8].tv;
    assert!(tv[0] != tv[1] && tv[1] != tv[2], "{tv:?}");
    let (_, again) = run(&loaded, &text, &settings(Mode::Constrained, 9), 3);
    let diff = (&again.images - &outcome.images).abs().max().double_value(&[]);
    assert!(again.images.equal(&outcome.images), "a seed reproduces the run: {diff}");
}

/// A prompt whose loss is NaN (here: a NaN text-feature row, as an fp16 overflow would give) is
/// frozen with its last good image; the other prompts are optimised as if it were not there.
#[test]
fn a_non_finite_prompt_is_frozen_and_the_others_go_on() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let good = Tensor::randn([2, 32], (Kind::Float, Device::Cpu));
    let nan = Tensor::full([1, 32], f64::NAN, (Kind::Float, Device::Cpu));
    let text = Tensor::cat(&[good.narrow(0, 0, 1), nan, good.narrow(0, 1, 1)], 0);
    for mode in [Mode::Unconstrained, Mode::Constrained] {
        let (stats, outcome) = run(&loaded, &text, &settings(mode, 8), 3);
        assert_eq!(outcome.frozen_at, vec![None, Some(1), None], "{mode}");
        assert_eq!((outcome.steps_done, outcome.interrupted), (8, false));
        assert_eq!(stats.len(), 8);
        // Frozen at step 1: never updated, so still the initial image; no NaN leaked into it.
        let frozen = outcome.images.get(1);
        assert!(frozen.isfinite().all().int64_value(&[]) == 1);
        let initial_diff = (&frozen - &outcome.initial).abs().max().double_value(&[]);
        assert_eq!(initial_diff, 0.0, "{mode}: the frozen image moved");
        // The others match a run without the NaN prompt (same seed, same draws per prompt would
        // differ in constrained mode, so compare the unconstrained one exactly).
        if mode == Mode::Unconstrained {
            let (_, alone) = run(&loaded, &good, &settings(mode, 8), 3);
            for (with, without) in [(0, 0), (2, 1)] {
                let diff = (outcome.images.get(with) - alone.images.get(without))
                    .abs()
                    .max()
                    .double_value(&[]);
                assert!(diff < 1e-5, "prompt {with} differs by {diff}");
            }
        }
        assert!(stats.iter().all(|s| s.similarity[0].is_finite() && s.similarity[2].is_finite()));
    }
}

/// All prompts frozen: the loop ends at the next read-back instead of running on.
#[test]
fn the_loop_ends_when_every_prompt_is_frozen() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::full([2, 32], f64::NAN, (Kind::Float, Device::Cpu));
    let (_, outcome) = run(&loaded, &text, &settings(Mode::Constrained, 100), 3);
    assert_eq!(outcome.frozen_at, vec![Some(1), Some(1)]);
    assert_eq!(outcome.steps_done, 4, "stops at the first read-back (every 4 steps)");
}

/// `stop` is asked at each read-back; the loop ends there with the images reached.
#[test]
fn stop_ends_the_loop_at_a_read_back() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([2, 32], (Kind::Float, Device::Cpu));
    let asked = std::cell::Cell::new(0);
    let stop = || {
        asked.set(asked.get() + 1);
        asked.get() == 2
    };
    let mut seen = 0;
    tch::manual_seed(5);
    let outcome = optimize_until(
        &loaded.model,
        &text,
        &settings(Mode::Constrained, 100),
        &mut |chunk| seen += chunk.len(),
        &stop,
    );
    assert_eq!((outcome.steps_done, outcome.interrupted, seen), (8, true, 8));
    assert_eq!(outcome.images.size(), vec![2, 3, 32, 32]);
    assert!(outcome.best.unwrap().iter().all(|&(step, loss)| step >= 1 && loss.is_finite()));
}
