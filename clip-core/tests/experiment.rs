//! The experiment end to end on the tiny random-weight fixtures (OpenAI's TorchScript format):
//! files written where the seed writes them, the JSON record's fields, the PNG's size and metadata,
//! and the unconstrained run raising the similarity. Calls the library (`experiment::run`), not a
//! binary: the model crates' binaries share paths in `target/`.

use clip_core::app::device::DeviceChoice;
use clip_core::app::experiment::{run, Experiment, ExperimentArgs, PromptResult};
use clip_core::engine::optimize::Mode;
use serde_json::Value;
use std::path::PathBuf;

const TINY: Experiment = Experiment {
    model: "tiny",
    results_token: "Tiny-RN",
    prompts: &["A cute golden retriever", "A snow-covered mountain peak", "A bright red tomato"],
    learning_rate: 0.05,
    steps: 10_000,
    tv_weight: 1e-4,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name)
}

fn args(weights: &str, steps: u64, out: &std::path::Path) -> ExperimentArgs {
    ExperimentArgs {
        weights: Some(fixture(weights)),
        steps: Some(steps),
        learning_rate: None,
        tv_weight: None,
        prompts: Vec::new(),
        device: DeviceChoice::Cpu,
        seed: Some(7),
        out: out.to_path_buf(),
        log_every: 2,
        eager: false,
    }
}

fn check_files(results: &[PromptResult], mode: Mode, steps: usize, resolution: u32) -> Vec<Value> {
    assert_eq!(results.len(), 3);
    results
        .iter()
        .zip(TINY.prompts)
        .map(|(r, prompt)| {
            let stem = format!("{mode}_Tiny-RN_{}", prompt.replace(' ', "_"));
            assert!(r.png.ends_with(format!("Tiny-RN/{stem}.png")), "{}", r.png.display());
            let decoder = png::Decoder::new(std::io::BufReader::new(
                std::fs::File::open(&r.png).expect("PNG written"),
            ));
            let reader = decoder.read_info().expect("a PNG");
            let info = reader.info();
            assert_eq!((info.width, info.height), (resolution, resolution));
            assert_eq!(
                (info.color_type, info.bit_depth),
                (png::ColorType::Rgb, png::BitDepth::Eight)
            );
            let text: Vec<(String, String)> = info
                .uncompressed_latin1_text
                .iter()
                .map(|c| (c.keyword.clone(), c.text.clone()))
                .collect();
            assert!(text.contains(&("prompt".into(), prompt.to_string())), "{text:?}");
            assert!(text.contains(&("mode".into(), mode.to_string())), "{text:?}");

            let json: Value =
                serde_json::from_str(&std::fs::read_to_string(&r.json).expect("JSON written"))
                    .expect("valid JSON");
            assert!(r.json.ends_with(format!("{stem}.json")));
            for key in [
                "prompt",
                "model",
                "mode",
                "weights",
                "weights_sha256",
                "steps",
                "learning_rate",
                "tv_weight",
                "seed",
                "device",
                "initial_similarity",
                "final_similarity",
                "steps_per_second",
                "wall_seconds",
            ] {
                assert!(!json[key].is_null(), "{key} missing in {json}");
            }
            assert_eq!(json["prompt"], *prompt);
            assert_eq!(json["mode"], mode.to_string());
            assert_eq!(json["steps"], steps);
            assert_eq!(json["seed"], 7);
            assert_eq!(json["device"], "cpu");
            assert_eq!(json["weights_sha256"].as_str().map(str::len), Some(64));
            assert_eq!(json["best_step"].is_null(), mode == Mode::Unconstrained);

            let csv = std::fs::read_to_string(&r.csv).expect("CSV written");
            let lines: Vec<&str> = csv.lines().collect();
            assert_eq!(lines[0], "step,similarity,tv");
            assert_eq!(lines.len(), steps + 1);
            assert!(lines[steps].starts_with(&format!("{steps},")));
            json
        })
        .collect()
}

#[test]
fn unconstrained_end_to_end() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let results = run(&TINY, Mode::Unconstrained, &args("tiny-vit.pt", 6, dir.path()))
        .expect("the run succeeds");
    for json in check_files(&results, Mode::Unconstrained, 6, 32) {
        let initial = json["initial_similarity"].as_f64().expect("a number");
        let unquantized = json["final_similarity_unquantized"].as_f64().expect("a number");
        let saved = json["final_similarity"].as_f64().expect("a number");
        assert!(unquantized > initial, "{json}");
        assert!(saved > initial, "{json}");
    }
}

#[test]
fn constrained_end_to_end() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let results = run(&TINY, Mode::Constrained, &args("tiny-rn.pt", 4, dir.path()))
        .expect("the run succeeds");
    for json in check_files(&results, Mode::Constrained, 4, 64) {
        let best = json["best_step"].as_u64().expect("a step");
        assert!((1..=4).contains(&best), "{json}");
    }
}

#[test]
fn prompts_that_collide_are_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut args = args("tiny-rn.pt", 1, dir.path());
    args.prompts = vec!["a/b".into(), "a:b".into()];
    let err = run(&TINY, Mode::Constrained, &args).expect_err("two prompts, one file name");
    assert!(err.to_string().contains("a-b.png"), "{err}");
    assert!(!dir.path().join("Tiny-RN").exists());
}

/// The reference tokenizes an empty prompt (`[49406, 49407, 0, …]`); so does a run, and the file
/// is named like the seed's `prompt.replace(" ", "_")`: `<mode>_<model>_.png`.
#[test]
fn an_empty_prompt_is_allowed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut args = args("tiny-vit.pt", 1, dir.path());
    args.prompts = vec![String::new()];
    let results = run(&TINY, Mode::Unconstrained, &args).expect("the run succeeds");
    assert!(results[0].png.ends_with("Tiny-RN/unconstrained_Tiny-RN_.png"));
    assert!(results[0].json.exists() && results[0].csv.exists());
}
