//! `clip bench`: the numbers it reports are consistent with each other, and `--json` prints one
//! parseable object per case. No timing is checked against a bound (timing belongs in
//! BENCHMARKS.md, not in tests).

#[path = "../../clip-core/tests/common/tiny_model.rs"]
mod tiny_model;
use tiny_model::tiny_model;

use clip_app::bench::{self, BenchOptions};
use clip_core::clip::model::PatchEmbedding;
use clip_core::engine::augment::Augment;
use clip_core::engine::optimize::Preset;
use clip_core::engine::param::Param;
use serde_json::Value;
use std::process::Command;
use tch::Device;

const OPTIONS: BenchOptions = BenchOptions {
    steps: 2,
    warmup: 1,
    peak_tflops: bench::DEFAULT_PEAK_TFLOPS,
    eager: false,
    param: None,
    augment: None,
};

#[test]
fn tiny_model_gives_consistent_numbers() {
    let loaded = tiny_model();
    for mode in [Preset::Unconstrained, Preset::Constrained] {
        let r = bench::run_case(&loaded.model, "tiny", Device::Cpu, mode, 3, &OPTIONS).unwrap();
        // The warm-up is rounded up to a read-back (every 10 steps), where the clock starts.
        assert_eq!((r.mode, r.prompts, r.steps, r.warmup), (mode, 3, 2, 10));
        assert!(r.ms_per_step.is_finite() && r.ms_per_step > 0.0, "{r:?}");
        let expected = 3.0 * 1000.0 / r.ms_per_step;
        assert!((r.prompt_steps_per_s - expected).abs() <= 1e-9 * expected, "{r:?}");
        assert!(r.peak_memory.bytes.is_some_and(|b| b > 0), "{r:?}");
        assert!(r.peak_memory.source.contains("VmHWM"), "{r:?}");
        // No FLOP count for a configuration that is not released.
        assert_eq!((r.gflop_per_prompt_step, r.floor_ratio), (None, None));

        let json: Value = serde_json::from_str(&r.to_json().to_string()).expect("JSON");
        assert_eq!(json["mode"], mode.as_str());
        assert_eq!(json["graph"], false);
        let reason = json["graph_reason"].as_str().expect("a reason for eager steps");
        assert!(reason.contains("cpu"), "{reason}");
        assert_eq!(json["ms_per_step"].as_f64(), Some(r.ms_per_step));
        assert_eq!(
            (json["param"].as_str(), json["views_per_step"].as_u64()),
            (Some("pixels"), Some(3))
        );
        let augment = if mode == Preset::Constrained { 2 } else { 0 };
        assert_eq!(json["augment"].as_array().map(Vec::len), Some(augment));
        // The tiny model is a ViT, with the default patch embedding.
        assert_eq!(json["layout"], "patches: matmul");
    }
}

#[test]
fn layouts_to_time_are_those_of_the_tower() {
    let mut loaded = tiny_model();
    let both = [PatchEmbedding::Convolution, PatchEmbedding::MatMul];
    let layouts = bench::layouts_to_time(&loaded.model, &both, &[false, true]);
    let ways: Vec<_> = layouts.iter().map(|l| l.patch_embedding).collect();
    assert_eq!(ways, both, "a ViT times the patch embeddings asked for");
    // Channels-last means nothing to a ViT: only its own layout is timed.
    assert_eq!(bench::layouts_to_time(&loaded.model, &[], &[false, true]), [loaded.model.layout()]);
    loaded.model.set_layout(layouts[0]);
    assert_eq!(bench::layout_label(&loaded.model), "patches: conv");
}

#[test]
fn floor_ratio_uses_the_flop_count_and_peak() {
    assert_eq!(bench::gflop_per_prompt_step("ViT-B/32"), Some(17.8));
    let loaded = tiny_model();
    // A tiny model labelled ViT-B/32 gets that architecture's FLOP count: only the arithmetic is
    // checked here.
    let r =
        bench::run_case(&loaded.model, "ViT-B/32", Device::Cpu, Preset::Unconstrained, 2, &OPTIONS)
            .unwrap();
    let floor = 2.0 * 17.8e9 / 763e12 * 1e3;
    let got = r.floor_ms_per_step.expect("a floor");
    assert!((got - floor).abs() <= 1e-12, "{got} vs {floor}");
    let ratio = r.floor_ratio.expect("a ratio");
    assert!((ratio - r.ms_per_step / floor).abs() <= 1e-9 * ratio);
}

/// `--param` and `--augment` reach the timed step: with cutouts every view counts in the floor and
/// in ms per view.
#[test]
fn param_and_augment_are_timed_and_counted_per_view() {
    let loaded = tiny_model();
    let options = BenchOptions {
        param: Some(Param::FftDecorrelated),
        augment: Some(vec![Augment::Cutouts { n: 4, min_frac: 0.5, pow: 1.0 }]),
        ..OPTIONS
    };
    let r =
        bench::run_case(&loaded.model, "ViT-B/32", Device::Cpu, Preset::Unconstrained, 2, &options)
            .unwrap();
    assert_eq!((r.param, r.views_per_step), (Param::FftDecorrelated, 8));
    assert_eq!(r.augment, vec!["cutouts:4,0.5,1".to_string()]);
    assert!((r.ms_per_view - r.ms_per_step / 8.0).abs() <= 1e-12);
    let floor = 8.0 * 17.8e9 / 763e12 * 1e3;
    assert!((r.floor_ms_per_step.unwrap() - floor).abs() <= 1e-12);
}

fn clip(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_clip")).args(args).output().expect("clip runs")
}

#[test]
fn json_prints_one_object_per_case() {
    // The smallest released vision tower, one step: the real binary end to end.
    let out = clip(&[
        "bench",
        "--arch",
        "ViT-B/32",
        "--mode",
        "unconstrained",
        "--prompts",
        "1,2",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
        "--eager",
        "--json",
        "--param",
        "fft",
        "--augment",
        "jitter:4",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let lines: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, prompts) in lines.iter().zip([1.0, 2.0]) {
        assert_eq!(line["arch"], "ViT-B/32");
        assert_eq!(line["prompts"].as_f64(), Some(prompts));
        assert_eq!((&line["eager"], &line["graph"]), (&Value::Bool(true), &Value::Bool(false)));
        let ms = line["ms_per_step"].as_f64().expect("ms");
        let rate = line["prompt_steps_per_s"].as_f64().expect("rate");
        assert!(ms > 0.0 && (rate - prompts * 1000.0 / ms).abs() <= 1e-9 * rate, "{line}");
        assert!(line["floor_ratio"].as_f64().is_some_and(|r| r > 0.0), "{line}");
        assert_eq!(
            (&line["param"], &line["augment"][0]),
            (&Value::from("fft"), &Value::from("jitter:4"))
        );
    }
}

#[test]
fn bad_flags_are_errors() {
    let out = clip(&["bench", "--arch", "RN51", "--device", "cpu", "--steps", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RN51"));
    for args in [
        &["bench", "--peak-tflops", "0"][..],
        &["bench", "--peak-tflops", "inf"],
        &["bench", "--prompts", "0"],
        &["bench", "--steps", "0"],
        &["bench", "--mode", "sideways"],
        &["bench", "--warmup", "18446744073709551615"],
        &["bench", "--warmup", "-1"],
        &["bench", "--param", "spectral"],
        &["bench", "--augment", "cutouts:0,0.5,1"],
        &["bench", "--augment", "jitter"],
    ] {
        let out = clip(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
