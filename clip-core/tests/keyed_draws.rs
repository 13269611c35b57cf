//! Keyed draws (`engine::draws::KeyedDraws`, what `clip sweep` runs with): a run's result does not
//! depend on its batch. Its own test binary: it sets libtorch's thread count, which is global to
//! the process.

#[path = "common/tiny_model.rs"]
mod tiny_model;

use clip_core::engine::augment::Augment;
use clip_core::engine::draws::KeyedDraws;
use clip_core::engine::objective::Objective;
use clip_core::engine::optimize::{optimize, Preset, Settings};
use clip_core::engine::param::Param;
use tch::{Device, Kind, Tensor};
use tiny_model::tiny_model;

fn settings(preset: Preset, steps: usize) -> Settings {
    Settings { steps, readback_every: 4, ..preset.settings() }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Whether this CPU's kernels compute a batch's row alike whatever the other rows hold and
/// wherever it stands: the tiny model's loss gradient for each image of a batch of 3 against the
/// same image repeated 3 times. MKL's AVX2 and AVX-512 code paths do; its compatible path
/// (`MKL_CBWR=COMPATIBLE`, what it may take on a CPU it does not know) blocks rows and does not.
fn kernels_treat_rows_alike(model: &clip_core::clip::model::Clip, text: &Tensor) -> bool {
    let gradient = |images: &Tensor, text: &Tensor| {
        let images = images.copy().set_requires_grad(true);
        let eval = Objective::new(model, text, 1, 0.0).evaluate(&images, &images);
        Tensor::run_backward(&[&eval.loss], &[&images], false, false).remove(0)
    };
    let images = Tensor::rand([3, 3, 32, 32], (Kind::Float, Device::Cpu));
    let together = gradient(&images, text);
    (0..3).all(|p| {
        let idx = Tensor::from_slice(&[p, p, p]);
        let alone = gradient(&images.index_select(0, &idx), &text.index_select(0, &idx));
        together.get(p).equal(&alone.get(0))
    })
}

/// Where the kernels treat rows alike (above), bit for bit; elsewhere within their rounding
/// (`optimize.rs`'s batch-width tolerance: a tenth of an 8-bit level after 6 steps).
const ROUNDING_TOLERANCE: f64 = 4e-4;

/// With keyed draws (each prompt its own seed), a batch of fixed width and one CPU thread, a
/// prompt's run is the same bit for bit whatever its batch-mates and its place among them, on a
/// CPU whose kernels treat a batch's rows alike (see `kernels_treat_rows_alike`) — here
/// alone, padded with copies of itself to the batch's width, as `clip sweep` reruns a run alone.
/// (Batches of other widths differ in the last bits: the CPU's matrix kernels depend on it, and
/// so do split loops with more than one thread.)
#[test]
fn keyed_draws_make_a_batched_run_its_run_alone_bit_for_bit() {
    let loaded = tiny_model();
    tch::manual_seed(5);
    let text = Tensor::randn([3, 32], (Kind::Float, Device::Cpu));
    let seeds = [21u64, 7, 1_000_003];
    tch::set_num_threads(1);
    let alike = kernels_treat_rows_alike(&loaded.model, &text);
    if !alike {
        eprintln!(
            "this CPU's kernels compute a batch's rows differently: compared within rounding"
        );
    }
    let cutouts = Settings {
        param: Param::FftDecorrelated,
        augment: vec![
            Augment::Cutouts { n: 2, min_frac: 0.5, pow: 1.0 },
            Augment::Jitter { px: 4 },
            Augment::Noise { sd: 0.02 },
        ],
        ..settings(Preset::Constrained, 6)
    };
    for settings in [settings(Preset::Unconstrained, 6), settings(Preset::Constrained, 6), cutouts]
    {
        let mut draws = KeyedDraws::new(&seeds, Device::Cpu);
        let together = optimize(&loaded.model, &text, &settings, &mut draws, &mut |_| {}).unwrap();
        for p in 0..3 {
            // Alone: padded with copies of itself.
            let order: Vec<usize> = vec![p; 3];
            let padded_seeds: Vec<u64> = order.iter().map(|&i| seeds[i]).collect();
            let idx = Tensor::from_slice(&order.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let mut draws = KeyedDraws::new(&padded_seeds, Device::Cpu);
            let alone = optimize(
                &loaded.model,
                &text.index_select(0, &idx),
                &settings,
                &mut draws,
                &mut |_| {},
            )
            .unwrap();
            assert!(
                together.initial.get(p as i64).equal(&alone.initial.get(0)),
                "{:?}: prompt {p}'s initial image",
                settings.augment
            );
            let diff = max_diff(&together.images.get(p as i64), &alone.images.get(0));
            if alike {
                assert_eq!(diff, 0.0, "{:?}: prompt {p} differs", settings.augment);
            } else {
                assert!(diff <= ROUNDING_TOLERANCE, "{:?}: prompt {p}: {diff}", settings.augment);
            }
        }
    }
}
