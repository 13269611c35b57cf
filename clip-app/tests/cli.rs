//! The `clip` tool end to end: `embed` and `score` against the reference's numbers, and clear
//! errors (exit ≠ 0, no panic) for bad checkpoints and names.

use clip_core::clip::weights::StateDict;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::Tensor;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clip-core/tests/fixtures/models")
}

fn clip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clip")).args(args).output().expect("clip runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap())
        .unwrap()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn rows(value: &Value) -> Vec<Vec<f64>> {
    serde_json::from_value(value.clone()).unwrap()
}

/// `clip embed` prints the raw embeddings, in the order given, equal to the reference's
/// `model.encode_image(preprocess(Image.open(p)))` and `model.encode_text(clip.tokenize(texts))`.
#[test]
fn embed_prints_the_reference_embeddings_in_order() {
    let reference = reference();
    let weights = fixtures().join("tiny-rn.pt");
    let images = ["square64.png", "wide300x200.png"];
    let image_paths: Vec<PathBuf> =
        images.iter().map(|i| fixtures().join("images").join(i)).collect();
    let texts: Vec<String> = serde_json::from_value(reference["texts"].clone()).unwrap();
    let mut args = vec!["embed", "--weights", weights.to_str().unwrap(), "--device", "cpu"];
    for p in &image_paths {
        args.extend(["--image", p.to_str().unwrap()]);
    }
    for t in &texts {
        args.extend(["--text", t.as_str()]);
    }
    let output = clip(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let ours: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let model = &reference["models"]["tiny-rn"];
    let ref_images: Vec<String> = serde_json::from_value(model["images"].clone()).unwrap();
    let ref_image_rows = rows(&model["image_features"]);
    for (i, name) in images.iter().enumerate() {
        let j = ref_images.iter().position(|n| n == name).unwrap();
        let cos = cosine(&rows(&ours["image"])[i], &ref_image_rows[j]);
        assert!(cos >= 0.99999, "image {name}: cosine {cos}");
    }
    let ref_text_rows = rows(&model["text_features"]);
    let our_text_rows = rows(&ours["text"]);
    assert_eq!(our_text_rows.len(), texts.len());
    for (i, text) in texts.iter().enumerate() {
        let cos = cosine(&our_text_rows[i], &ref_text_rows[i]);
        assert!(cos >= 0.99999, "text {text:?}: cosine {cos}");
    }
}

/// `clip embed --precision fp16` on the CPU gives the reference's fp16 model's embeddings
/// (`build_model` without `.float()`), and differs from the fp32 ones (the flag takes effect).
// model = clip.model.build_model(torch.jit.load(path).state_dict()).eval()   # fp16, on the CPU
#[test]
fn embed_in_fp16_on_the_cpu_matches_the_references_fp16_model() {
    let text = std::fs::read_to_string(fixtures().join("reference_fp16.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    for name in ["tiny-rn", "tiny-vit"] {
        let model = &reference["models"][name];
        let weights = fixtures().join(format!("{name}.pt"));
        let images: Vec<String> = serde_json::from_value(model["images"].clone()).unwrap();
        let texts: Vec<String> = serde_json::from_value(reference["texts"].clone()).unwrap();
        let mut args = vec!["embed", "--weights", weights.to_str().unwrap(), "--device", "cpu"];
        let paths: Vec<String> = images
            .iter()
            .map(|i| fixtures().join("images").join(i).display().to_string())
            .collect();
        for p in &paths {
            args.extend(["--image", p.as_str()]);
        }
        for t in &texts {
            args.extend(["--text", t.as_str()]);
        }
        let fp32: Value = serde_json::from_slice(&clip(&args).stdout).expect("JSON");
        args.extend(["--precision", "fp16"]);
        let output = clip(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        let fp16: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        for kind in ["image", "text"] {
            let expected = rows(&model[format!("{kind}_features")]);
            for (i, (ours, theirs)) in rows(&fp16[kind]).iter().zip(&expected).enumerate() {
                let cos = cosine(ours, theirs);
                assert!(cos >= 0.9999, "{name} {kind} {i}: cosine {cos}");
            }
            assert_ne!(fp16[kind], fp32[kind], "{name} {kind}: --precision fp16 had no effect");
        }
    }
}

/// `clip score`: the cosine of the normalised embeddings, alone on the last line.
#[test]
fn score_prints_the_cosine_on_its_last_line() {
    let reference = reference();
    let model = &reference["models"]["tiny-vit"];
    let weights = fixtures().join("tiny-vit.pt");
    let image = fixtures().join("images/square32.png");
    let text = "A bright red tomato";
    let args = [
        "score",
        "--weights",
        weights.to_str().unwrap(),
        "--device",
        "cpu",
        "--image",
        image.to_str().unwrap(),
    ];
    let output = clip(&[&args[..], &["--text", text]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let ours: f64 =
        stdout.lines().last().unwrap().trim().parse().expect("a number on the last line");
    let images: Vec<String> = serde_json::from_value(model["images"].clone()).unwrap();
    let i = images.iter().position(|n| n == "square32.png").unwrap();
    let t = reference["texts"].as_array().unwrap().iter().position(|v| v == text).unwrap();
    let expected = cosine(&rows(&model["image_features"])[i], &rows(&model["text_features"])[t]);
    assert!((ours - expected).abs() < 1e-5, "score {ours}, reference {expected}");
}

fn assert_clean_failure(output: &Output, needles: &[&str]) {
    let err = stderr(output);
    assert!(!output.status.success(), "expected failure, got success: {err}");
    assert!(output.status.code().is_some(), "killed by a signal: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
}

fn write_safetensors(tensors: &[(String, Tensor)], path: &Path) {
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    Tensor::write_safetensors(&named, path).unwrap();
}

fn fixture_tensors() -> Vec<(String, Tensor)> {
    let sd = StateDict::load(&fixtures().join("tiny-vit.pt")).unwrap();
    sd.keys().map(|k| (k.to_string(), sd.get(k).unwrap().shallow_clone())).collect()
}

#[test]
fn a_missing_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.safetensors");
    let tensors: Vec<_> =
        fixture_tensors().into_iter().filter(|(k, _)| k != "visual.ln_post.bias").collect();
    write_safetensors(&tensors, &path);
    let output =
        clip(&["embed", "--weights", path.to_str().unwrap(), "--device", "cpu", "--text", "a"]);
    assert_clean_failure(&output, &["visual.ln_post.bias", "missing.safetensors"]);
}

#[test]
fn a_wrong_shape_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shape.safetensors");
    let tensors: Vec<_> = fixture_tensors()
        .into_iter()
        .map(|(k, t)| {
            if k == "transformer.resblocks.1.mlp.c_fc.bias" {
                (k, t.narrow(0, 0, 10))
            } else {
                (k, t)
            }
        })
        .collect();
    write_safetensors(&tensors, &path);
    let output =
        clip(&["embed", "--weights", path.to_str().unwrap(), "--device", "cpu", "--text", "a"]);
    assert_clean_failure(&output, &["transformer.resblocks.1.mlp.c_fc.bias", "shape.safetensors"]);
}

#[test]
fn a_truncated_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.pt");
    let bytes = std::fs::read(fixtures().join("tiny-rn.pt")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let output =
        clip(&["embed", "--weights", path.to_str().unwrap(), "--device", "cpu", "--text", "a"]);
    assert_clean_failure(&output, &["truncated.pt"]);
}

#[test]
fn a_missing_file_and_an_unknown_model_are_refused() {
    let output = clip(&["embed", "--weights", "/nonexistent/RN50.pt", "--device", "cpu"]);
    assert_clean_failure(&output, &["/nonexistent/RN50.pt"]);
    let output =
        clip(&["score", "--model", "RN51", "--device", "cpu", "--image", "x.png", "--text", "a"]);
    assert_clean_failure(&output, &["RN51", "RN50", "ViT-B/32", "ViT-L/14@336px"]);
}
