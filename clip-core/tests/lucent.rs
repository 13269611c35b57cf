//! The engine's parameterisations and Lucent/VQGAN-CLIP augmentations against the references,
//! number for number, on fixed parameters and fixed draws.
//!
//! Fixtures: `scripts/make_engine_fixtures.py` ran torch-lucent 0.1.8 (with kornia 0.4.1, its pin)
//! and torch 2.11 and wrote `tests/fixtures/engine/` (`engine.json` lists the cases).

use clip_core::clip::weights::StateDict;
use clip_core::engine::augment::{cutouts, lucent};
use clip_core::engine::param::{spectrum_scale, Canvas, Param, ParamImage};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/engine")
}

struct Fixtures {
    cases: Vec<Value>,
    tensors: BTreeMap<String, BTreeMap<String, Tensor>>,
}

impl Fixtures {
    fn load() -> Self {
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join("engine.json")).expect("engine.json"),
        )
        .expect("JSON");
        let mut tensors = BTreeMap::new();
        for file in json["files"].as_object().expect("files").values() {
            let name = file.as_str().expect("a file name");
            let dict = StateDict::load(&fixtures().join(name)).expect("a safetensors fixture");
            tensors.insert(name.to_string(), dict.into_tensors());
        }
        Self { cases: json["cases"].as_array().expect("cases").clone(), tensors }
    }

    /// Tensor `role` of `case`.
    fn tensor(&self, case: &Value, role: &str) -> Tensor {
        let file = case["file"].as_str().expect("file");
        let key = case["tensors"][role].as_str().unwrap_or_else(|| panic!("no {role} in {case}"));
        self.tensors[file][key].to_kind(Kind::Float)
    }

    fn cases(&self, kind: &str, what: &str) -> Vec<&Value> {
        let field = if kind == "param" { "param" } else { "transform" };
        let found: Vec<&Value> = self
            .cases
            .iter()
            .filter(|c| c["kind"] == kind && c[field].as_str() == Some(what))
            .collect();
        assert!(!found.is_empty(), "no {kind} cases of {what}");
        found
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

// params, image_f = fft_image([2, 3, h, w], sd, decay_power) / pixel_image(...)
// params[0].data = fixed; image = to_valid_rgb(image_f, decorrelate)()
// (image * G).sum().backward(); grad = params[0].grad
#[test]
fn parameterisations_match_lucent_with_their_gradients() {
    let fx = Fixtures::load();
    for (name, param) in [
        ("fft", Param::Fft),
        ("decorrelated", Param::Decorrelated),
        ("fft-decorrelated", Param::FftDecorrelated),
    ] {
        for case in fx.cases("param", name) {
            let (h, w) = (case["h"].as_i64().unwrap(), case["w"].as_i64().unwrap());
            let decay = case["decay_power"].as_f64().unwrap_or(1.0);
            let params = fx.tensor(case, "params");
            let image =
                ParamImage::with_params(param, params, Canvas { width: w, height: h }, decay);
            let ours = image.render();
            let expected = fx.tensor(case, "image");
            let diff = max_diff(&ours, &expected);
            assert!(diff <= 1e-5, "{}: image differs by {diff}", case["name"]);

            let weight = fx.tensor(case, "G");
            let loss = (&ours * &weight).sum(Kind::Float);
            let grad = Tensor::run_backward(&[&loss], &[&image.params], false, false);
            let expected_grad = fx.tensor(case, "grad");
            // Relative to the gradient's size (the FFT's scale makes low frequencies large).
            let scale = expected_grad.abs().max().double_value(&[]).max(1.0);
            let diff = max_diff(&grad[0], &expected_grad) / scale;
            assert!(diff <= 1e-5, "{}: gradient differs by {diff} (relative)", case["name"]);

            if param != Param::Decorrelated {
                let expected = fx.tensor(case, "scale");
                let diff = max_diff(&spectrum_scale(h, w, decay, Device::Cpu), &expected)
                    / expected.abs().max().double_value(&[]);
                assert!(diff <= 1e-6, "{}: scale differs by {diff} (relative)", case["name"]);
            }
        }
    }
}

#[test]
fn the_colour_matrix_is_lucents() {
    let fx = Fixtures::load();
    let expected = &fx.tensors["engine.safetensors"]["param/color_correlation_normalized"];
    let ours: Vec<f64> = clip_core::engine::param::color_correlation_normalized().concat();
    let ours = Tensor::from_slice(&ours).view([3, 3]).to_kind(Kind::Float);
    assert!(max_diff(&ours, &expected.to_kind(Kind::Float)) < 1e-7);
}

fn full(n: i64, v: f64) -> Tensor {
    Tensor::full([n], v, (Kind::Double, Device::Cpu))
}

// transform.jitter(8) with np.random.choice patched to return dx, then dy
#[test]
fn jitter_matches_lucent_on_fixed_draws() {
    let fx = Fixtures::load();
    for case in fx.cases("transform", "jitter") {
        let input = fx.tensor(case, "input");
        let n = input.size()[0];
        let (dx, dy) = (case["dx"].as_f64().unwrap(), case["dy"].as_f64().unwrap());
        let ours = lucent::apply_jitter(&input, &full(n, dx), &full(n, dy));
        let diff = max_diff(&ours, &fx.tensor(case, "output"));
        assert!(diff <= 1e-5, "{}: differs by {diff}", case["name"]);
    }
}

// transform.random_scale([s]); then torchvision center_crop(out, [h, w])
#[test]
fn random_scale_matches_lucent_then_centre_crop_on_fixed_draws() {
    let fx = Fixtures::load();
    for case in fx.cases("transform", "random_scale") {
        let input = fx.tensor(case, "input");
        let n = input.size()[0];
        let ours = lucent::apply_scale(&input, &full(n, case["scale"].as_f64().unwrap()));
        let diff = max_diff(&ours, &fx.tensor(case, "center_crop"));
        assert!(diff <= 1e-5, "{}: differs by {diff}", case["name"]);
    }
}

// transform.random_rotate([angle]): kornia get_rotation_matrix2d + warp_affine
#[test]
fn random_rotate_matches_lucent_on_fixed_draws() {
    let fx = Fixtures::load();
    for case in fx.cases("transform", "random_rotate") {
        let input = fx.tensor(case, "input");
        let size = input.size();
        let angle = full(size[0], case["angle_degrees"].as_f64().unwrap());
        let matrix = lucent::rotation_matrix(&angle, size[3], size[2]).to_kind(Kind::Float);
        assert!(max_diff(&matrix, &fx.tensor(case, "M")) < 1e-5, "{}: matrix", case["name"]);
        let diff = max_diff(&lucent::apply_rotate(&input, &angle), &fx.tensor(case, "output"));
        assert!(diff <= 1e-5, "{}: differs by {diff}", case["name"]);
    }
}

// transform.pad(12, mode="constant", constant_value=0.5)
#[test]
fn pad_matches_lucent() {
    let fx = Fixtures::load();
    for case in fx.cases("transform", "pad") {
        let px = case["w"].as_i64().unwrap();
        let ours = lucent::apply_pad(&fx.tensor(case, "input"), px);
        assert_eq!(max_diff(&ours, &fx.tensor(case, "output")), 0.0, "{}", case["name"]);
    }
}

// F.interpolate(x[:, :, oy:oy+size, ox:ox+size], size=(R, R), mode="bilinear", align_corners=False)
#[test]
fn cutouts_match_make_cutouts_on_fixed_draws() {
    let fx = Fixtures::load();
    for case in fx.cases("transform", "cutout") {
        let input = fx.tensor(case, "input");
        let res = case["resolution"].as_i64().unwrap();
        let cell =
            |k: &str| Tensor::full([1, 1], case[k].as_f64().unwrap(), (Kind::Double, Device::Cpu));
        let cuts = cutouts::Cuts {
            size: cell("size"),
            offset_x: cell("offset_x"),
            offset_y: cell("offset_y"),
        };
        let ours = cutouts::apply_cuts(&input, &cuts, res);
        let diff = max_diff(&ours, &fx.tensor(case, "output"));
        assert!(diff <= 1e-5, "{}: differs by {diff}", case["name"]);
    }
    // Several cutouts of one image in one grid: each equals its own single-cut result.
    let case = fx.cases("transform", "cutout")[0];
    let input = fx.tensor(case, "input");
    let cuts = cutouts::Cuts {
        size: Tensor::from_slice(&[16.0f64, 40.0, 33.0]).view([1, 3]),
        offset_x: Tensor::from_slice(&[0.0f64, 16.0, 5.0]).view([1, 3]),
        offset_y: Tensor::from_slice(&[0.0f64, 0.0, 7.0]).view([1, 3]),
    };
    let together = cutouts::apply_cuts(&input, &cuts, 32);
    for i in 0..3 {
        let one = cutouts::Cuts {
            size: cuts.size.narrow(1, i, 1),
            offset_x: cuts.offset_x.narrow(1, i, 1),
            offset_y: cuts.offset_y.narrow(1, i, 1),
        };
        assert_eq!(
            max_diff(&together.narrow(0, i, 1), &cutouts::apply_cuts(&input, &one, 32)),
            0.0
        );
    }
}
