//! The augmentations against their references: torchvision's RandomAffine and flip exactly on fixed
//! parameters; every augmentation's draws over many samples against the reference's
//! distribution; each image of a batch drawing independently; the TV penalty by hand.
//!
//! Fixtures: `scripts/make_augment_fixtures.py` wrote a 1×3×40×48 test image (`image.bin`) and, for
//! fixed parameters (`affine.json`), torchvision's outputs (`affine.bin`). Lucent's transforms and
//! the cutouts on fixed draws are in `lucent.rs`.

use clip_core::engine::augment::affine::{self, AffineParams, RandomAffine};
use clip_core::engine::augment::{apply_pipeline, cutouts, lucent, Augment, SEED_CONSTRAINED};
use clip_core::engine::draws::{Recorder, TorchDraws};
use clip_core::engine::objective::total_variation;
use serde_json::Value;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/augment")
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures().join(name)).expect("fixture present");
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

struct Case {
    angle: f64,
    translate: (i64, i64),
    scale: f64,
    flip: bool,
}

fn cases() -> (Vec<i64>, Vec<Case>) {
    let text = std::fs::read_to_string(fixtures().join("affine.json")).expect("fixture present");
    let json: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let shape: Vec<i64> = serde_json::from_value(json["shape"].clone()).expect("shape");
    let cases = json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            angle: c["angle"].as_f64().expect("angle"),
            translate: (
                c["translate"][0].as_i64().expect("tx"),
                c["translate"][1].as_i64().expect("ty"),
            ),
            scale: c["scale"].as_f64().expect("scale"),
            flip: c["flip"].as_bool().expect("flip"),
        })
        .collect();
    (shape, cases)
}

/// Number of elements that differ between `a` and `b`.
fn mismatches(a: &Tensor, b: &Tensor) -> i64 {
    a.ne_tensor(b).sum(Kind::Int64).int64_value(&[])
}

fn flips(values: &[bool]) -> Tensor {
    Tensor::from_slice(&values.iter().map(|&f| f as i64).collect::<Vec<_>>()).gt(0)
}

// out = F.affine(img, angle, [tx, ty], scale, [0.0, 0.0], interpolation=NEAREST, fill=[0.0] * 3)
// out = F.hflip(out) if flip else out
#[test]
fn affine_and_flip_match_torchvision_exactly() {
    let (shape, cases) = cases();
    let image = Tensor::from_slice(&read_f32("image.bin")).view(&shape[..]);
    let expected =
        Tensor::from_slice(&read_f32("affine.bin")).view([cases.len() as i64, 3, 40, 48]);
    for (i, c) in cases.iter().enumerate() {
        let params = AffineParams::fixed(1, c.angle, c.translate, c.scale, Device::Cpu);
        let ours = affine::apply_flip(&params.apply(&image), &flips(&[c.flip])).squeeze_dim(0);
        // Nearest sampling could pick the neighbouring pixel where a coordinate lands on an exact
        // .5 boundary and float rounding differs; the grid is built with torchvision's operations
        // in the same order, and no such case was measured: the comparison is exact.
        assert_eq!(mismatches(&ours, &expected.get(i as i64)), 0, "case {i}");
    }

    // The whole batch at once, each image with its own parameters, gives the same outputs.
    let n = cases.len() as i64;
    let full = |f: &dyn Fn(&Case) -> f64| {
        Tensor::from_slice(&cases.iter().map(f).collect::<Vec<f64>>()).to_kind(Kind::Double)
    };
    let params = AffineParams {
        angle: full(&|c| c.angle),
        translate_x: full(&|c| c.translate.0 as f64),
        translate_y: full(&|c| c.translate.1 as f64),
        scale: full(&|c| c.scale),
    };
    let flip = flips(&cases.iter().map(|c| c.flip).collect::<Vec<_>>());
    let batch = image.expand([n, 3, 40, 48], false).contiguous();
    let ours = affine::apply_flip(&params.apply(&batch), &flip);
    assert_eq!(mismatches(&ours, &expected), 0, "batched");
}

#[test]
fn affine_semantics_by_hand() {
    // A single bright pixel at (row 10, column 20) of a 1×1×40×48 image.
    let image = Tensor::zeros([1, 1, 40, 48], (Kind::Float, Device::Cpu));
    let _ = image.get(0).get(0).get(10).get(20).fill_(1.0);
    let spot = |t: &Tensor| {
        let idx = t.flatten(0, -1).argmax(0, false).int64_value(&[]);
        (idx / 48, idx % 48)
    };
    let apply = |angle, translate, scale, flip: bool| {
        let out = AffineParams::fixed(1, angle, translate, scale, Device::Cpu).apply(&image);
        spot(&affine::apply_flip(&out, &flips(&[flip])))
    };
    // Translation: +x moves right, +y moves down.
    assert_eq!(apply(0.0, (3, 0), 1.0, false), (10, 23));
    assert_eq!(apply(0.0, (0, 5), 1.0, false), (15, 20));
    // Flip: column c goes to W - 1 - c.
    assert_eq!(apply(0.0, (0, 0), 1.0, true), (10, 27));
    // Rotation by +90° about the centre (x 23.5, y 19.5) turns the picture clockwise on screen
    // (F.affine's convention): offset (-3.5, -9.5) goes to (9.5, -3.5); torchvision: (16, 33).
    assert_eq!(apply(90.0, (0, 0), 1.0, false), (16, 33));
    // Scaling is about the centre: scale 2 doubles the offset, (-3.5, -9.5) → (-7, -19);
    // torchvision gives (0, 16).
    assert_eq!(apply(0.0, (0, 0), 2.0, false), (0, 16));
}

static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// torch's generator is global and tests run in parallel threads: tests that draw hold this.
fn seeded(seed: i64) -> std::sync::MutexGuard<'static, ()> {
    let guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    guard
}

fn min(t: &Tensor) -> f64 {
    t.min().double_value(&[])
}

fn max(t: &Tensor) -> f64 {
    t.max().double_value(&[])
}

fn mean(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

/// The correlation of neighbouring entries of `t` (images of a batch drawing independently: ~0).
fn neighbour_correlation(t: &Tensor) -> f64 {
    let n = t.size()[0];
    let t = t.to_kind(Kind::Double).flatten(0, -1);
    Tensor::stack(&[t.narrow(0, 0, n - 1), t.narrow(0, 1, n - 1)], 0)
        .corrcoef()
        .double_value(&[0, 1])
}

// RandomAffine.get_params(degrees=[-10, 10], translate=(0.1, 0.1), scale_ranges=(0.9, 1.1),
//                         shears=None, img_size=[224, 224]); RandomHorizontalFlip(p=0.3)
#[test]
fn affine_and_flip_draws_match_get_params() {
    let _seeded = seeded(3);
    let n = 20_000;
    let p = RandomAffine::SEED.sample(n, 224, 224, &mut TorchDraws, Device::Cpu);
    assert!(min(&p.angle) >= -10.0 && max(&p.angle) <= 10.0);
    assert!(min(&p.angle) < -9.9 && max(&p.angle) > 9.9, "angles cover the range");
    assert!(min(&p.scale) >= 0.9 && max(&p.scale) <= 1.1);
    assert!(min(&p.scale) < 0.901 && max(&p.scale) > 1.099, "scales cover the range");
    // max_dx = 0.1 * 224 = 22.4; int(round(uniform(-22.4, 22.4))) lies in [-22, 22].
    for t in [&p.translate_x, &p.translate_y] {
        assert_eq!(mismatches(t, &t.round()), 0, "whole pixels");
        assert_eq!((min(t), max(t)), (-22.0, 22.0));
        // Interior values have probability 1/44.8 each.
        let zeros = t.eq(0.0).sum(Kind::Int64).int64_value(&[]) as f64 / n as f64;
        assert!((zeros - 1.0 / 44.8).abs() < 0.006, "P(t = 0) = {zeros}");
    }
    let flip = affine::sample_flip(n, 0.3, &mut TorchDraws, Device::Cpu);
    assert!((mean(&flip) - 0.3).abs() < 0.015, "flip frequency {}", mean(&flip));
    for t in [&p.angle, &p.translate_x, &p.scale, &flip] {
        let corr = neighbour_correlation(t);
        assert!(corr.abs() < 0.05, "neighbouring images' draws correlate: {corr}");
    }
}

// lucent jitter(8): np.random.choice(8) for dx, then dy
#[test]
fn jitter_draws_are_uniform_on_0_to_d_minus_1() {
    let _seeded = seeded(4);
    let n = 40_000;
    let (dx, dy) = lucent::sample_jitter(n, 8, &mut TorchDraws, Device::Cpu);
    for t in [&dx, &dy] {
        assert_eq!(mismatches(t, &t.floor()), 0, "whole pixels");
        assert_eq!((min(t), max(t)), (0.0, 7.0));
        for v in 0..8 {
            let share = t.eq(v as f64).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
            assert!((share - 1.0 / 8.0).abs() < 0.01, "P(d = {v}) = {share}");
        }
        assert!(neighbour_correlation(t).abs() < 0.05);
    }
    let corr = Tensor::stack(&[dx, dy], 0).corrcoef().double_value(&[0, 1]);
    assert!(corr.abs() < 0.05, "dx and dy are independent: {corr}");
}

#[test]
fn scale_and_rotate_draws_are_uniform_per_image() {
    let _seeded = seeded(5);
    let n = 40_000;
    let s = lucent::sample_scale(n, 0.8, 1.2, &mut TorchDraws, Device::Cpu);
    let r = lucent::sample_rotate(n, 15.0, &mut TorchDraws, Device::Cpu);
    for (t, lo, hi) in [(&s, 0.8, 1.2), (&r, -15.0, 15.0)] {
        assert!(min(t) >= lo && max(t) <= hi);
        // Uniform: mean at the centre, variance (hi - lo)^2 / 12, each quarter a quarter.
        let width = hi - lo;
        assert!((mean(t) - (lo + hi) / 2.0).abs() < 0.01 * width);
        let var = t.var(true).double_value(&[]);
        assert!((var / (width * width / 12.0) - 1.0).abs() < 0.03, "variance {var}");
        for q in 0..4 {
            let (a, b) = (lo + width * q as f64 / 4.0, lo + width * (q + 1) as f64 / 4.0);
            let share = mean(&t.ge(a).logical_and(&t.lt(b)));
            assert!((share - 0.25).abs() < 0.01, "quarter {q}: {share}");
        }
        assert!(neighbour_correlation(t).abs() < 0.05);
    }
}

// MakeCutouts: size = int(torch.rand([])**cut_pow * (max_size - min_size) + min_size)
//              offsetx = torch.randint(0, sideX - size + 1, ()); offsety likewise
#[test]
fn cutout_draws_follow_make_cutouts() {
    let _seeded = seeded(6);
    let (n, cuts, w, h) = (2_000, 16, 56, 40);
    for pow in [1.0, 2.0] {
        let c = cutouts::sample_cuts(n, cuts, 0.5, pow, (w, h), &mut TorchDraws, Device::Cpu);
        let (size, ox, oy) = (&c.size, &c.offset_x, &c.offset_y);
        assert_eq!(size.size(), [n, cuts]);
        // min = 0.5 × 40 = 20, max = 40; sizes whole, in [20, 40).
        assert_eq!(mismatches(size, &size.floor()), 0);
        assert!(min(size) >= 20.0 && max(size) <= 40.0 && max(size) >= 39.0);
        // E[floor(U^p × 20 + 20)] = 20 + 20 / (p + 1) − ½ (the floor's mean loss).
        let expected = 20.0 + 20.0 / (pow + 1.0) - 0.5;
        assert!((mean(size) - expected).abs() < 0.15, "pow {pow}: mean size {}", mean(size));
        // Offsets keep the crop inside: 0 ≤ o ≤ side − size, and reach both ends.
        assert!(min(ox) >= 0.0 && min(oy) >= 0.0);
        assert_eq!(max(&(ox + size)), w as f64);
        assert!(max(&(oy + size)) <= h as f64);
        assert_eq!(min(ox), 0.0);
        // randint(0, side − size + 1): uniform, mean (side − size) / 2 given the size.
        let slack = -size + w as f64;
        assert!((mean(&(ox - &slack / 2.0))).abs() < 0.15);
        assert!(neighbour_correlation(&size.flatten(0, -1)).abs() < 0.05);
    }
}

/// A pipeline draws per image: the same image repeated in a batch gets different views, and the
/// recorded draws have one row (block) per image.
#[test]
fn each_image_of_a_batch_draws_its_own_views() {
    let _seeded = seeded(7);
    let image = Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    let batch = image.expand([64, 3, 32, 32], false).contiguous();
    for pipeline in [
        SEED_CONSTRAINED.to_vec(),
        vec![Augment::Jitter { px: 8 }, Augment::Rotate { degrees: 20.0 }],
        vec![Augment::Cutouts { n: 4, min_frac: 0.3, pow: 1.0 }, Augment::Noise { sd: 0.1 }],
        vec![Augment::Scale { min: 0.5, max: 1.5 }],
    ] {
        let mut recorder = Recorder::new(TorchDraws);
        let views = apply_pipeline(&pipeline, &batch, 24, &mut recorder);
        let per_image = views.size()[0] / 64;
        assert_eq!(views.size(), [64 * per_image, 3, 24, 24]);
        let flat = views.view([64, -1]);
        let mut distinct = 0;
        for i in 1..64 {
            if mismatches(&flat.get(0), &flat.get(i)) > 0 {
                distinct += 1;
            }
        }
        // The seed's flip and small affine can coincide for a few images, never most.
        assert!(distinct >= 55, "{pipeline:?}: only {distinct} of 63 views differ from the first");
        for draw in &recorder.recorded {
            assert_eq!(draw.size()[0] % 64, 0, "a draw of {:?} is not per image", draw.size());
            // Each image's own draws: no correlation between neighbouring images' first values.
            let first = draw.view([64, -1]).select(1, 0);
            assert!(neighbour_correlation(&first).abs() < 0.35, "{pipeline:?}");
        }
    }
}

// (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).sum() + (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).sum()
#[test]
fn total_variation_by_hand() {
    // Image 0, one channel: [[1, 2, 4], [0, 3, 3]]; image 1: all 0.5 (no variation).
    let x = Tensor::full([2, 3, 2, 3], 0.5, (Kind::Float, Device::Cpu));
    let first = Tensor::from_slice(&[1.0f32, 2.0, 4.0, 0.0, 3.0, 3.0]).view([2, 3]);
    x.get(0).get(1).copy_(&first);
    // Vertical: (0-1)² + (3-2)² + (3-4)² = 3; horizontal: (2-1)² + (4-2)² + (3-0)² + (3-3)² = 14.
    // The constant channels 0 and 2 of image 0 add nothing.
    let tv = Vec::<f32>::try_from(total_variation(&x)).expect("floats");
    assert_eq!(tv, vec![17.0, 0.0]);
}
