//! The optimiser against `torch.optim.Adam`, and the optimisation loop on a tiny random model:
//! batching (each prompt's gradient and result as if alone), per-prompt draws, keep rules, the
//! NaN freeze, stopping, every parameterisation and cutouts, and fp16 on the CPU.
//!
//! Fixture: `scripts/make_augment_fixtures.py` wrote `adam.json` (torch.optim.Adam, 5 steps).

#[path = "common/tiny_model.rs"]
mod tiny_model;
use tiny_model::{tiny_model, tiny_model_with};

use clip_core::clip::model::{LoadedClip, Precision};
use clip_core::engine::adam::Adam;
use clip_core::engine::augment::{apply_pipeline, Augment};
use clip_core::engine::draws::{Recorder, Replay, TorchDraws};
use clip_core::engine::executor::Execution;
use clip_core::engine::objective::Objective;
use clip_core::engine::optimize::{
    optimize, optimize_until, similarity, Keep, Outcome, Preset, Settings, StepStats,
};
use clip_core::engine::param::{Canvas, Param};
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

fn settings(preset: Preset, steps: usize) -> Settings {
    Settings { steps, readback_every: 4, ..preset.settings() }
}

fn run(
    loaded: &LoadedClip,
    text: &Tensor,
    settings: &Settings,
    seed: i64,
) -> (Vec<StepStats>, Outcome) {
    let mut stats = Vec::new();
    tch::manual_seed(seed);
    let outcome = optimize(&loaded.model, text, settings, &mut TorchDraws, &mut |chunk| {
        stats.extend_from_slice(chunk)
    })
    .expect("the optimisation runs");
    (stats, outcome)
}

/// A run whose draws are recorded, and the recorded draws.
fn recorded(
    loaded: &LoadedClip,
    text: &Tensor,
    settings: &Settings,
    seed: i64,
) -> (Outcome, Vec<Tensor>) {
    tch::manual_seed(seed);
    let mut recorder = Recorder::new(TorchDraws);
    let outcome =
        optimize(&loaded.model, text, settings, &mut recorder, &mut |_| {}).expect("runs");
    (outcome, recorder.recorded)
}

fn replayed(
    loaded: &LoadedClip,
    text: &Tensor,
    settings: &Settings,
    mut replay: Replay,
) -> Outcome {
    let outcome = optimize(&loaded.model, text, settings, &mut replay, &mut |_| {}).expect("runs");
    assert_eq!(replay.remaining(), 0, "every recorded draw was used");
    outcome
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn unconstrained_raises_similarity_and_reports_every_step() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([3, 32], (Kind::Float, Device::Cpu));
    let (stats, outcome) = run(&loaded, &text, &settings(Preset::Unconstrained, 10), 1);
    assert_eq!(stats.iter().map(|s| s.step).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert!(stats.iter().all(|s| s.similarity.len() == 3 && s.tv.len() == 3));
    assert!(outcome.best.is_none());
    assert_eq!(outcome.images.size(), [3, 3, 32, 32]);
    assert_eq!(outcome.initial.size(), [3, 3, 32, 32]);
    let (lo, hi) = (outcome.images.min().double_value(&[]), outcome.images.max().double_value(&[]));
    assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi), "clamped: [{lo}, {hi}]");
    let before = similarity(&loaded.model, &outcome.initial, &text).unwrap();
    let after = similarity(&loaded.model, &outcome.images, &text).unwrap();
    // The first step's statistics are the initial image's similarity.
    for p in 0..3 {
        assert!((stats[0].similarity[p] as f64 - before[p]).abs() < 1e-5);
        assert!(after[p] > before[p] + 0.01, "prompt {p}: {} -> {}", before[p], after[p]);
    }
    assert!(matches!(outcome.execution, Execution::Eager { .. }));
}

/// Each prompt of a batch starts from its own draw of the seed's `0.5 + N(0, 0.1)` (the seed runs
/// each prompt separately, from independent noise): different images, uncorrelated, with the
/// right statistics, and different total variation at step 1.
#[test]
fn each_prompt_starts_from_its_own_noise() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([4, 32], (Kind::Float, Device::Cpu));
    let (stats, outcome) = run(&loaded, &text, &settings(Preset::Constrained, 1), 8);
    let flat = outcome.initial.view([4, -1]);
    for i in 0..4 {
        let row = flat.get(i);
        let (mean, sd) =
            (row.mean(Kind::Double).double_value(&[]), row.std(true).double_value(&[]));
        assert!((mean - 0.5).abs() < 0.01 && (sd - 0.1).abs() < 0.01, "prompt {i}: {mean} ± {sd}");
        for j in 0..i {
            let corr = Tensor::stack(&[row.shallow_clone(), flat.get(j)], 0)
                .corrcoef()
                .double_value(&[0, 1]);
            assert!(corr.abs() < 0.05, "prompts {j} and {i} start correlated: {corr}");
        }
    }
    let tv = &stats[0].tv;
    assert!(tv.iter().enumerate().all(|(i, a)| tv[..i].iter().all(|b| a != b)), "{tv:?}");
}

/// The batch's loss is the sum of the prompts' losses, not their mean: the gradient each image gets
/// in a batch is the gradient it gets alone (a mean would divide it by the batch size).
#[test]
fn a_batch_gives_each_image_the_gradient_it_gets_alone() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([3, 32], (Kind::Float, Device::Cpu));
    let images = Tensor::rand([3, 3, 32, 32], (Kind::Float, Device::Cpu));
    for (pipeline, tv) in
        [(vec![], 0.0), (vec![Augment::Cutouts { n: 3, min_frac: 0.5, pow: 1.0 }], 1e-3)]
    {
        let mut recorder = Recorder::new(TorchDraws);
        let objective = Objective::new(&loaded.model, &text, 3i64.pow(pipeline.len() as u32), tv);
        let batch = images.copy().set_requires_grad(true);
        let views = apply_pipeline(&pipeline, &batch, 32, &mut recorder);
        let eval = objective.evaluate(&views, &batch);
        let together = Tensor::run_backward(&[&eval.loss], &[&batch], false, false).remove(0);
        for p in 0..3 {
            let alone_image = images.narrow(0, p, 1).copy().set_requires_grad(true);
            let mut replay = Replay::for_prompt(&recorder.recorded, 3, p);
            let views = apply_pipeline(&pipeline, &alone_image, 32, &mut replay);
            let alone_text = text.narrow(0, p, 1);
            let objective =
                Objective::new(&loaded.model, &alone_text, objective.views_per_image, tv);
            let eval = objective.evaluate(&views, &alone_image);
            let alone =
                Tensor::run_backward(&[&eval.loss], &[&alone_image], false, false).remove(0);
            let scale = alone.abs().max().double_value(&[]);
            assert!(scale > 0.0);
            let diff = max_diff(&together.narrow(0, p, 1), &alone) / scale;
            assert!(
                diff < 1e-5,
                "{pipeline:?}: prompt {p}'s gradient differs by {diff} (relative)"
            );
        }
    }
}

/// A batch of prompts gives each prompt the image a run of that prompt alone gives with the same
/// draws (its share of the batch's recorded initial noise and augmentation draws), for both
/// presets and a cutouts pipeline.
/// How far a prompt's image may end from the same run alone after 6 steps. A batch of 3 and a run
/// alone take other CPU kernels (matrix products blocked by the batch's width), which round in the
/// last bits differently, and Adam's normalised step carries that on: measured 2.9e-5 on an AMD
/// EPYC (AVX2), 1.1e-5 on an Intel Xeon (AVX-512), 2.7e-5 with MKL's AVX code path. Another
/// prompt's draws move it by 1e-1 or more. A tenth of one 8-bit level.
const BATCH_WIDTH_TOLERANCE: f64 = 4e-4;

#[test]
fn a_batch_equals_separate_runs_of_each_prompt() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([3, 32], (Kind::Float, Device::Cpu));
    let cutouts = Settings {
        param: Param::FftDecorrelated,
        augment: vec![
            Augment::Cutouts { n: 2, min_frac: 0.5, pow: 1.0 },
            Augment::Jitter { px: 4 },
        ],
        ..settings(Preset::Constrained, 6)
    };
    for settings in [settings(Preset::Unconstrained, 6), settings(Preset::Constrained, 6), cutouts]
    {
        let (together, draws) = recorded(&loaded, &text, &settings, 11);
        assert!(!draws.is_empty());
        for p in 0..3 {
            let replay = Replay::for_prompt(&draws, 3, p);
            let alone = replayed(&loaded, &text.narrow(0, p, 1), &settings, replay);
            let diff = max_diff(&together.images.get(p), &alone.images.get(0));
            assert!(
                diff <= BATCH_WIDTH_TOLERANCE,
                "{:?}: prompt {p} differs by {diff}",
                settings.augment
            );
            // The tolerance still tells draws apart: the prompt run alone on another prompt's
            // share of the draws ends far from its batched run.
            let other = Replay::for_prompt(&draws, 3, (p + 1) % 3);
            let wrong = replayed(&loaded, &text.narrow(0, p, 1), &settings, other);
            let apart = max_diff(&together.images.get(p), &wrong.images.get(0));
            assert!(apart > 100.0 * BATCH_WIDTH_TOLERANCE, "prompt {p}: other draws {apart}");
            if let (Some(a), Some(b)) = (&together.best, &alone.best) {
                assert_eq!(a[p as usize].0, b[0].0, "prompt {p}'s best step");
            }
        }
    }
}

#[test]
fn keep_best_keeps_the_lowest_similarity_loss() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([3, 32], (Kind::Float, Device::Cpu));
    let (stats, outcome) = run(&loaded, &text, &settings(Preset::Constrained, 9), 3);
    assert_eq!(stats.len(), 9);
    let best = outcome.best.clone().expect("keep best records the best step");
    for (p, &(step, loss)) in best.iter().enumerate() {
        // The first step with the lowest `1 - similarity` of its augmented view.
        let (want_step, want_loss) = stats
            .iter()
            .map(|s| (s.step, 1.0f32 - s.similarity[p]))
            .fold((0, f32::INFINITY), |acc, x| if x.1 < acc.1 { x } else { acc });
        assert_eq!((step, loss as f32), (want_step, want_loss), "prompt {p}");
    }
    let (_, again) = run(&loaded, &text, &settings(Preset::Constrained, 9), 3);
    assert!(again.images.equal(&outcome.images), "a seed reproduces the run");
    // Keep last with the same draws: the final image, not the best one (unless the last step was
    // the best).
    let last = Settings { keep: Keep::Last, ..settings(Preset::Constrained, 9) };
    let (_, final_images) = run(&loaded, &text, &last, 3);
    for (p, &(step, _)) in best.iter().enumerate() {
        let same = final_images.images.get(p as i64).equal(&outcome.images.get(p as i64));
        assert_eq!(same, step == 9, "prompt {p}: best step {step}");
    }
}

/// A prompt whose loss is NaN (here: a NaN text-feature row, as an fp16 overflow would give) is
/// frozen with its last good image; the other prompts are optimised as if it were not there (the
/// same draws).
#[test]
fn a_non_finite_prompt_is_frozen_and_the_others_go_on() {
    let _seeded = seeded();
    for precision in [Precision::Fp32, Precision::Fp16] {
        let loaded = tiny_model_with(Device::Cpu, precision);
        let good = Tensor::randn([2, 32], (Kind::Float, Device::Cpu));
        let nan = Tensor::full([1, 32], f64::NAN, (Kind::Float, Device::Cpu));
        let text = Tensor::cat(&[good.narrow(0, 0, 1), nan, good.narrow(0, 1, 1)], 0);
        for preset in [Preset::Unconstrained, Preset::Constrained] {
            let settings = settings(preset, 8);
            let (outcome, draws) = recorded(&loaded, &text, &settings, 3);
            assert_eq!(outcome.frozen_at, vec![None, Some(1), None], "{preset} {precision}");
            assert_eq!((outcome.steps_done, outcome.interrupted), (8, false));
            // Frozen at step 1: never updated, so still its initial image; no NaN leaked into it.
            let frozen = outcome.images.get(1);
            assert!(frozen.isfinite().all().int64_value(&[]) == 1);
            assert_eq!(max_diff(&frozen, &outcome.initial.get(1)), 0.0, "{preset}: it moved");
            let alone =
                replayed(&loaded, &good, &settings, Replay::for_prompts(&draws, 3, &[0, 2]));
            for (with, without) in [(0, 0), (2, 1)] {
                let diff = max_diff(&outcome.images.get(with), &alone.images.get(without));
                assert!(diff < 1e-5, "{preset} {precision}: prompt {with} differs by {diff}");
            }
        }
    }
}

/// All prompts frozen: the loop ends at the next read-back instead of running on.
#[test]
fn the_loop_ends_when_every_prompt_is_frozen() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::full([2, 32], f64::NAN, (Kind::Float, Device::Cpu));
    let (_, outcome) = run(&loaded, &text, &settings(Preset::Constrained, 100), 3);
    assert_eq!(outcome.frozen_at, vec![Some(1), Some(1)]);
    assert_eq!(outcome.steps_done, 4, "stops at the first read-back (every 4 steps)");
}

/// `stop` is asked after every step; the loop ends there with the images reached, their
/// statistics read back first.
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
        &settings(Preset::Constrained, 100),
        &mut TorchDraws,
        &mut |chunk| seen += chunk.len(),
        &stop,
    )
    .unwrap();
    assert_eq!((outcome.steps_done, outcome.interrupted, seen), (2, true, 2));
    assert_eq!(outcome.images.size(), vec![2, 3, 32, 32]);
}

/// Every parameterisation, alone and with a cutouts pipeline, on a canvas larger than and of
/// another aspect than the model's input: 20 steps raise every prompt's similarity.
#[test]
fn every_parameterisation_and_cutouts_raise_the_similarity() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([2, 32], (Kind::Float, Device::Cpu));
    for param in Param::ALL {
        for (augment, canvas) in [
            (vec![], None),
            (
                vec![Augment::Cutouts { n: 4, min_frac: 0.5, pow: 1.0 }],
                Some(Canvas { width: 48, height: 40 }),
            ),
            (
                vec![
                    Augment::Pad { px: 4 },
                    Augment::Jitter { px: 4 },
                    Augment::Scale { min: 0.9, max: 1.1 },
                    Augment::Rotate { degrees: 10.0 },
                    Augment::Noise { sd: 0.02 },
                ],
                None,
            ),
        ] {
            let settings = Settings {
                param,
                augment: augment.clone(),
                canvas,
                ..settings(Preset::Unconstrained, 20)
            };
            let (_, outcome) = run(&loaded, &text, &settings, 12);
            let canvas = canvas.unwrap_or(Canvas::square(32));
            assert_eq!(outcome.images.size(), [2, 3, canvas.height, canvas.width]);
            let before = similarity(&loaded.model, &outcome.initial, &text).unwrap();
            let after = similarity(&loaded.model, &outcome.images, &text).unwrap();
            for p in 0..2 {
                assert!(
                    after[p] > before[p] + 0.01,
                    "{param} {augment:?} prompt {p}: {} -> {}",
                    before[p],
                    after[p]
                );
            }
        }
    }
}

/// The model in fp16 on the CPU (as `convert_weights` leaves it): a few steps of each preset stay
/// finite and the unconstrained one raises the similarity; the augmentations stay in fp32.
#[test]
fn fp16_on_the_cpu_optimises() {
    let _seeded = seeded();
    let loaded = tiny_model_with(Device::Cpu, Precision::Fp16);
    assert_eq!(loaded.model.dtype(), Kind::Half);
    let text = Tensor::randn([2, 32], (Kind::Float, Device::Cpu));
    for preset in [Preset::Unconstrained, Preset::Constrained] {
        let (stats, outcome) = run(&loaded, &text, &settings(preset, 12), 4);
        assert_eq!(outcome.frozen_at, vec![None, None], "{preset}");
        assert_eq!(outcome.images.kind(), Kind::Float);
        assert!(outcome.images.isfinite().all().int64_value(&[]) == 1);
        assert!(stats.iter().all(|s| s.similarity.iter().all(|x| x.is_finite())));
        if preset == Preset::Unconstrained {
            let before = similarity(&loaded.model, &outcome.initial, &text).unwrap();
            let after = similarity(&loaded.model, &outcome.images, &text).unwrap();
            assert!(after.iter().zip(&before).all(|(a, b)| a > b), "{before:?} -> {after:?}");
        }
    }
}

#[test]
fn invalid_settings_are_refused_before_any_step() {
    let _seeded = seeded();
    let loaded = tiny_model();
    let text = Tensor::randn([1, 32], (Kind::Float, Device::Cpu));
    for bad in [
        Settings { learning_rate: f64::NAN, ..settings(Preset::Unconstrained, 1) },
        Settings { canvas: Some(Canvas::square(8)), ..settings(Preset::Unconstrained, 1) },
        Settings { decay: f64::INFINITY, ..settings(Preset::Unconstrained, 1) },
        Settings {
            augment: vec![Augment::Pad { px: 1024 }; 4],
            ..settings(Preset::Unconstrained, 1)
        },
    ] {
        let mut seen = 0;
        let err = optimize(&loaded.model, &text, &bad, &mut TorchDraws, &mut |c| seen += c.len())
            .expect_err("refused");
        assert!(err.to_string().starts_with("invalid settings"), "{err}");
        assert_eq!(seen, 0);
    }
}
