//! `clip generate` end to end on the tiny random-weight fixtures (OpenAI's TorchScript format):
//! every parameterisation and a cutouts pipeline raise the saved images' re-scored similarity; the
//! files, record and PNG metadata; the flags' bad values refused before anything is written.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clip-core/tests/fixtures/models").join(name)
}

fn clip(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(args)
        .env("HOME", home)
        .env("CLIP_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/none")
        .output()
        .expect("clip runs")
}

/// `clip generate` with the tiny fixture `weights` on the CPU, seed 1, writing under `out`.
fn generate(weights: &str, out: &Path, extra: &[&str]) -> Output {
    let weights = fixture(weights).display().to_string();
    let out_flag = out.display().to_string();
    let mut args = vec!["generate", "--weights", &weights, "--device", "cpu", "--seed", "1"];
    args.extend(["--out", &out_flag]);
    args.extend(extra);
    clip(&args, out)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn records(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v = serde_json::from_slice(&std::fs::read(&p).unwrap()).expect("a JSON record");
            (p, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The acceptance: `clip generate --preset unconstrained` with each parameterisation, and
/// with a cutouts pipeline, raises every prompt's re-scored similarity (the saved PNG through
/// CLIP's preprocessing) within 20 CPU steps.
#[test]
fn every_parameterisation_and_cutouts_raise_the_rescored_similarity() {
    let cases: [&[&str]; 5] = [
        &["--param", "pixels"],
        &["--param", "fft"],
        &["--param", "decorrelated"],
        &["--param", "fft-decorrelated"],
        &["--param", "fft-decorrelated", "--augment", "cutouts:8,0.5,1", "--size", "48x40"],
    ];
    for extra in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--preset", "unconstrained", "--steps", "20"];
        args.extend(["--prompt", "a cute golden retriever", "--prompt", "a bright red tomato"]);
        args.extend(extra);
        let output = generate("tiny-vit.pt", dir.path(), &args);
        assert!(output.status.success(), "{extra:?}: {}", stderr(&output));
        let found = records(&dir.path().join("tiny-vit"));
        assert_eq!(found.len(), 2, "{extra:?}");
        for (path, record) in found {
            let initial = record["initial_similarity"].as_f64().unwrap();
            let saved = record["final_similarity"].as_f64().unwrap();
            assert!(saved > initial + 0.01, "{extra:?} {}: {initial} -> {saved}", path.display());
            assert_eq!(record["param"], extra[1]);
        }
    }
}

#[test]
fn the_record_png_and_csv_say_what_ran() {
    let dir = tempfile::tempdir().unwrap();
    let output = generate(
        "tiny-rn.pt",
        dir.path(),
        &[
            "--preset",
            "constrained",
            "--steps",
            "12",
            "--prompt",
            "a red tomato",
            "--param",
            "decorrelated",
            "--augment",
            "jitter:4",
            "--augment",
            "flip:0.5",
            "--size",
            "80x64",
            "--keep",
            "last",
            "--tv-weight",
            "0.001",
            "--name",
            "mine",
            "--precision",
            "fp16",
            "--learning-rate",
            "0.02",
            "--log-every",
            "4",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("Step ").count(), 3, "log lines at steps 4, 8, 12: {stdout}");
    let dir = dir.path().join("tiny-rn");
    let stem = "mine_tiny-rn_a_red_tomato";
    let (_, record) = records(&dir).pop().expect("a record");
    for (key, value) in [
        ("prompt", Value::from("a red tomato")),
        ("model", Value::from("tiny-rn")),
        ("mode", Value::from("mine")),
        ("preset", Value::from("constrained")),
        ("image", Value::from(format!("{stem}.png"))),
        ("param", Value::from("decorrelated")),
        ("augment", serde_json::json!(["jitter:4", "flip:0.5"])),
        ("size", Value::from("80x64")),
        ("keep", Value::from("last")),
        ("views_per_image", Value::from(1)),
        ("steps", Value::from(12)),
        ("steps_done", Value::from(12)),
        ("learning_rate", Value::from(0.02)),
        ("tv_weight", Value::from(0.001)),
        ("seed", Value::from(1)),
        ("precision", Value::from("fp16")),
        ("device", Value::from("cpu")),
        ("history_every", Value::from(1)),
        ("interrupted", Value::from(false)),
    ] {
        assert_eq!(record[key], value, "{key} in {record}");
    }
    assert!(record["best_step"].is_null(), "keep last records no best step");
    let png = std::fs::read(dir.join(format!("{stem}.png"))).unwrap();
    assert_eq!(record["image_sha256"].as_str(), Some(sha256(&png).as_str()));

    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let reader = decoder.read_info().expect("a PNG");
    let info = reader.info();
    assert_eq!((info.width, info.height), (80, 64), "the canvas, not the model's 64×64");
    let text: Vec<(String, String)> =
        info.uncompressed_latin1_text.iter().map(|c| (c.keyword.clone(), c.text.clone())).collect();
    for (key, value) in [
        ("prompt", "a red tomato"),
        ("mode", "mine"),
        ("param", "decorrelated"),
        ("augment", "jitter:4 flip:0.5"),
        ("size", "80x64"),
        ("keep", "last"),
        ("precision", "fp16"),
        ("steps_done", "12"),
        ("interrupted", "false"),
    ] {
        assert!(text.contains(&(key.to_string(), value.to_string())), "{key}: {text:?}");
    }
    assert!(!text.iter().any(|(k, _)| k.contains("seconds")), "no timings in the PNG: {text:?}");

    let csv = std::fs::read_to_string(dir.join(format!("{stem}.csv"))).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "step,similarity,tv");
    assert_eq!(lines.len(), 13);
    assert!(lines[12].starts_with("12,"));
    // Nothing else: no temporary file, no lock left.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [format!("{stem}.csv"), format!("{stem}.json"), format!("{stem}.png")]);
}

/// The same seed and flags give the same PNG, byte for byte (PNG metadata has no timings).
#[test]
fn a_seed_reproduces_the_png() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let args =
        ["--steps", "3", "--prompt", "a dog", "--augment", "rotate:10", "--augment", "noise:0.05"];
    for dir in [&a, &b] {
        let output = generate("tiny-vit.pt", dir.path(), &args);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let read = |d: &tempfile::TempDir| {
        std::fs::read(d.path().join("tiny-vit/constrained_tiny-vit_a_dog.png")).unwrap()
    };
    assert!(read(&a) == read(&b));
}

/// Bad values of the engine's flags: one `error:` line naming the flag and the value, clap's usage
/// status 2, and nothing written (not even the output directory).
#[test]
fn bad_parts_are_refused_with_the_flag_and_value_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--param", "spectral"], "unknown parameterisation"),
        (&["--augment", "cutouts:-1,0.5,1"], "N must be"),
        (&["--augment", "cutouts:8,1.5,1"], "MINFRAC"),
        (&["--augment", "cutouts:8,0,1"], "MINFRAC"),
        (&["--augment", "cutouts:2.5,0.5,1"], "whole number"),
        (&["--augment", "flip:2"], "P must be"),
        (&["--augment", "jitter:1"], "PX"),
        (&["--augment", "pad:-3"], "PX"),
        (&["--augment", "scale:1.2,0.8"], "MAX"),
        (&["--augment", "rotate:nan"], "finite"),
        (&["--augment", "noise:-1"], "SD"),
        (&["--augment", "blur:3"], "unknown augmentation"),
        (&["--augment", "affine:10,0.1,0.9"], "4 value"),
        (&["--size", "15"], "outside 16..=4096"),
        (&["--size", "4097"], "outside 16..=4096"),
        (&["--size", "300x10"], "outside 16..=4096"),
        (&["--size", "big"], "not N or WxH"),
        (&["--decay", "nan"], "finite"),
        (&["--decay", "inf"], "finite"),
        (&["--keep", "worst"], "best, last"),
        (&["--preset", "fancy"], "constrained, unconstrained"),
        (&["--name", "../x"], "file-name token"),
        (&["--name", ""], "file-name token"),
        (&["--precision", "fp8"], "fp8"),
        (&["--steps", "0"], "at least 1"),
    ];
    for (args, reason) in cases {
        let output = generate("tiny-vit.pt", &dir.path().join("out"), args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("error: "), "{args:?}: {err}");
        assert!(first.contains(args[0]) && first.contains(args[1]), "{args:?} not named: {first}");
        assert!(err.contains(reason), "{args:?}: no {reason:?} in {err}");
        assert!(!dir.path().join("out").exists(), "{args:?}: something was written");
    }
}

/// A `--weights` file and a `--model` name are exclusive; an unknown released name is named.
#[test]
fn the_model_is_named_by_weights_or_model() {
    let dir = tempfile::tempdir().unwrap();
    let output = clip(&["generate", "--model", "ViT-H/14", "--device", "cpu"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("ViT-H/14") && stderr(&output).contains("ViT-B/32"));
    let output = clip(&["generate", "--device", "cpu"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// Values valid as numbers that would overflow fp32/fp16 and freeze the run at its first step
/// (issue 26, class 9) are refused like the others: status 2, the flag and the bound named, the
/// number shown short, nothing written — from the flags and, for a model crate's constants or a
/// SPEC, by the request's validation (`RunRequest::validate`, its unit tests).
#[test]
fn values_that_would_overflow_are_refused_with_their_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--augment", "affine:10,0.1,1e308,1e308"], "in (0, 16]"),
        (&["--augment", "scale:1,1e308"], "in [MIN, 16]"),
        (&["--augment", "noise:1e308"], "from 0 to 10"),
        (&["--decay", "300"], "from -8 to 8"),
        (&["--tv-weight", "1e308"], "at most 1e6"),
        (&["--negative-weight", "1e308"], "at most 1e6"),
        (&["--learning-rate", "1e308"], "at most 100"),
        (&["--model-weight", "1e308"], "at most 1e6"),
    ];
    for (args, bound) in cases {
        let output = generate("tiny-vit.pt", &dir.path().join("out"), args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(args[0]) && err.contains(bound), "{args:?}: {err}");
        assert!(!err.contains("0000000000"), "{args:?}: a long number: {err}");
        if args[1].contains("1e308") {
            assert!(err.contains("1e308"), "{args:?}: {err}");
        }
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!dir.path().join("out").exists(), "{args:?}: something was written");
    }
}
