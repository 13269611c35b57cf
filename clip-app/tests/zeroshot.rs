//! Zero-shot classification (`clip::zeroshot`, `clip classify`) against the reference.
//!
//! Fixtures: `scripts/make_zeroshot_fixtures.py` ran OpenAI's notebook (`zeroshot_classifier`) with
//! the reference `clip` package on the tiny random-weight checkpoints (`models/tiny-rn.pt`,
//! `models/tiny-vit.pt`) over the vendored lists (1 000 ImageNet classes × 80 templates), and
//! wrote the class weights (`zeroshot/class_weights.safetensors`) and, for a few images, the top 5
//! of `CLIP.forward`'s softmax (`zeroshot/reference.json`).

use clip_core::clip::model::LoadedClip;
use clip_core::clip::tokenizer::Tokenizer;
use clip_core::clip::weights::StateDict;
use clip_core::clip::zeroshot::{
    self, Cache, ClassWeights, EncodeOptions, Labels, Templates, WeightsSource, ZeroShotOptions,
};
use clip_core::clip::{preprocess, weights::download};
use clip_core::engine::objective::cosine_similarity;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clip-core/tests/fixtures")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("zeroshot/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(name: &str) -> LoadedClip {
    LoadedClip::load(&fixtures().join(format!("models/{name}.pt")), Device::Cpu).unwrap()
}

fn no_progress() -> impl FnMut(usize, usize) {
    |_, _| {}
}

fn imagenet_weights(loaded: &LoadedClip, options: &EncodeOptions) -> Tensor {
    zeroshot::compute_class_weights(
        &loaded.model,
        &Tokenizer::new().unwrap(),
        &Labels::imagenet(),
        &Templates::openai(),
        options,
        &mut no_progress(),
        &|| false,
    )
    .unwrap()
}

/// The class weights (1 000 × 80 texts) within cos 0.99999 of the notebook's, and each image's
/// top 5 the reference's, probabilities within 1e-3 (absolute, and relative to the probability).
fn check_against_reference(name: &str) {
    let reference = reference();
    let entry = &reference["models"][name];
    let loaded = load(name);
    let ours = imagenet_weights(&loaded, &EncodeOptions::default());
    let expected = StateDict::load(&fixtures().join("zeroshot/class_weights.safetensors"))
        .unwrap()
        .get(name)
        .unwrap()
        .shallow_clone();
    assert_eq!(ours.size(), expected.size());
    let cos = cosine_similarity(&ours, &expected).min().double_value(&[]);
    assert!(cos >= 0.99999, "{name}: class weights' smallest cosine {cos}");
    eprintln!("{name}: class weights' smallest cosine with the reference's: {cos}");

    let classifier = ClassWeights::new(ours, &loaded.model, &Labels::imagenet());
    let scale = entry["scale"].as_f64().unwrap();
    assert!((classifier.scale - scale).abs() <= 1e-5 * scale, "{} vs {scale}", classifier.scale);
    let resolution = loaded.model.config.image_resolution as u32;
    for image in entry["images"].as_array().unwrap() {
        let file = image["image"].as_str().unwrap();
        let pixels = preprocess::preprocess_path(&fixtures().join(file), resolution).unwrap();
        let features = tch::no_grad(|| loaded.model.encode_image(&pixels.unsqueeze(0)));
        let top = classifier.top_k(&features, 5).unwrap().remove(0);
        let indices: Vec<usize> = top.iter().map(|p| p.index).collect();
        let expected: Vec<usize> = serde_json::from_value(image["top5"].clone()).unwrap();
        assert_eq!(indices, expected, "{name} {file}: top-5 classes");
        let probabilities: Vec<f64> =
            serde_json::from_value(image["probabilities"].clone()).unwrap();
        for (p, q) in top.iter().zip(&probabilities) {
            let error = (p.probability - q).abs();
            eprintln!(
                "{name} {file}: class {} probability {} (reference {q})",
                p.index, p.probability
            );
            assert!(error <= 1e-3 && error <= 1e-3 * q, "{name} {file}: {} vs {q}", p.probability);
        }
        let labels = Labels::imagenet();
        assert!(top.iter().all(|p| p.label == labels.names[p.index]));
    }
}

#[test]
fn tiny_rn_class_weights_and_top5_match_the_reference() {
    check_against_reference("tiny-rn");
}

#[test]
fn tiny_vit_class_weights_and_top5_match_the_reference() {
    check_against_reference("tiny-vit");
}

/// Batches cut to their longest text give the class weights of full 77-token rows: the causal
/// mask keeps the padding out of the end-of-text position. Batch sizes that split classes across
/// batches and lengths too.
#[test]
fn length_cut_batches_equal_full_length_rows() {
    let loaded = load("tiny-vit");
    let labels =
        Labels { source: "first 40".into(), names: Labels::imagenet().names[..40].to_vec() };
    let templates = Templates::openai();
    let run = |batch_size, length_cut| {
        zeroshot::compute_class_weights(
            &loaded.model,
            &Tokenizer::new().unwrap(),
            &labels,
            &templates,
            &EncodeOptions { batch_size, length_cut },
            &mut no_progress(),
            &|| false,
        )
        .unwrap()
    };
    let full = run(80, false);
    for (batch_size, length_cut) in [(80, true), (7, true), (3200, true), (7, false)] {
        let other = run(batch_size, length_cut);
        let diff = (&other - &full).abs().max().double_value(&[]);
        eprintln!("batch {batch_size}, cut {length_cut}: max difference {diff:e} from full rows");
        assert!(diff <= 1e-6, "batch {batch_size}, cut {length_cut}: max difference {diff}");
    }
    // And the notebook's way, one class at a time on clip.tokenize's 77 ids, for a few classes.
    let tokenizer = Tokenizer::new().unwrap();
    for c in [0usize, 17, 39] {
        let texts: Vec<String> =
            templates.templates.iter().map(|t| Templates::fill(t, &labels.names[c])).collect();
        let tokens = tokenizer.tokenize(&texts, false).unwrap();
        let class = tch::no_grad(|| {
            let e = loaded.model.encode_text(&tokens).to_kind(Kind::Float);
            let e = &e / e.norm_scalaropt_dim(2, [-1], true);
            let m = e.mean_dim(0, false, Kind::Float);
            &m / m.norm()
        });
        let diff = (&class - full.get(c as i64)).abs().max().double_value(&[]);
        eprintln!("class {c}: max difference {diff:e} from the per-class batch");
        assert!(diff <= 1e-6, "class {c}: max difference {diff} from the per-class batch");
    }
}

/// Progress reaches every text; `stop` ends the computation between batches.
#[test]
fn progress_and_stop() {
    let loaded = load("tiny-rn");
    let labels = Labels::parse("x", "cat\ndog\nbird\n").unwrap();
    let templates = Templates::parse("t", "a {}.\na photo of a {}.\n").unwrap();
    let mut seen = Vec::new();
    let weights = zeroshot::compute_class_weights(
        &loaded.model,
        &Tokenizer::new().unwrap(),
        &labels,
        &templates,
        &EncodeOptions { batch_size: 4, length_cut: true },
        &mut |done, total| seen.push((done, total)),
        &|| false,
    )
    .unwrap();
    assert_eq!(seen, [(0, 6), (4, 6), (6, 6)]);
    assert_eq!(weights.size(), [3, 32]);
    let norms = weights.norm_scalaropt_dim(2, [-1], false);
    assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-6);
    let err = zeroshot::compute_class_weights(
        &loaded.model,
        &Tokenizer::new().unwrap(),
        &labels,
        &templates,
        &EncodeOptions::default(),
        &mut no_progress(),
        &|| true,
    )
    .unwrap_err();
    assert!(matches!(err, zeroshot::ZeroShotError::Interrupted));
}

/// The cache: computed and written on the first call, read (no text encoded) on the second,
/// recomputed for other labels or another checkpoint, and a damaged file is replaced.
#[test]
fn the_cache_is_used_and_keyed_by_checkpoint_labels_and_templates() {
    let dir = tempfile::tempdir().unwrap();
    let options = ZeroShotOptions {
        encode: EncodeOptions::default(),
        cache: Cache::Dir(dir.path().to_path_buf()),
    };
    let tokenizer = Tokenizer::new().unwrap();
    let templates = Templates::parse("t", "a {}.\na photo of a {}.\n").unwrap();
    let rn = load("tiny-rn");
    let rn_sha = download::sha256_file(&fixtures().join("models/tiny-rn.pt")).unwrap();
    let get = |loaded: &LoadedClip, sha: &str, labels: &Labels| {
        let mut encoded = 0;
        let outcome = zeroshot::class_weights(
            &loaded.model,
            sha,
            &tokenizer,
            labels,
            &templates,
            &options,
            &mut |done, _| encoded = done,
            &|| false,
        )
        .unwrap();
        (outcome, encoded)
    };
    let labels = Labels::parse("x", "cat\ndog\n").unwrap();
    let (first, encoded) = get(&rn, &rn_sha, &labels);
    let WeightsSource::Computed { texts: 4, cached_at: Some(path), .. } = &first.source else {
        panic!("computed and cached: {:?}", first.source)
    };
    assert_eq!(encoded, 4);
    assert!(path.starts_with(dir.path()) && path.exists());
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);

    let (second, encoded) = get(&rn, &rn_sha, &labels);
    assert_eq!(second.source, WeightsSource::Cached(path.clone()));
    assert_eq!(encoded, 0, "no text encoded on the second call");
    assert!(second.weights.weights.equal(&first.weights.weights));
    assert_eq!(second.weights.scale, first.weights.scale);

    // Other labels, another checkpoint: computed again, in files of their own.
    let other_labels = Labels::parse("y", "cat\ndog\nfish\n").unwrap();
    let (third, encoded) = get(&rn, &rn_sha, &other_labels);
    assert!(
        matches!(&third.source, WeightsSource::Computed { cached_at: Some(p), .. } if p != path)
    );
    assert_eq!(encoded, 6);
    let vit = load("tiny-vit");
    let vit_sha = download::sha256_file(&fixtures().join("models/tiny-vit.pt")).unwrap();
    let (fourth, _) = get(&vit, &vit_sha, &labels);
    assert!(
        matches!(&fourth.source, WeightsSource::Computed { cached_at: Some(p), .. } if p != path)
    );

    // A damaged file is a warning, computed again and replaced.
    std::fs::write(path, b"not safetensors").unwrap();
    let (fifth, encoded) = get(&rn, &rn_sha, &labels);
    assert_eq!(encoded, 4);
    assert_eq!(fifth.warnings.len(), 1, "{:?}", fifth.warnings);
    assert!(fifth.warnings[0].contains("cannot be used"), "{}", fifth.warnings[0]);
    let (sixth, _) = get(&rn, &rn_sha, &labels);
    assert_eq!(sixth.source, WeightsSource::Cached(path.clone()));
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".safetensors") && !n.starts_with('.')), "{names:?}");
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn vendored_lists_have_1000_classes_and_80_templates() {
    assert_eq!(Labels::imagenet().len(), 1000);
    assert_eq!(Templates::openai().len(), 80);
    assert!(Templates::openai().templates.iter().all(|t| t.contains("{}")));
    assert_eq!(Labels::from_spec("imagenet").unwrap(), Labels::imagenet());
    assert_eq!(Templates::from_spec("openai").unwrap(), Templates::openai());
}

// The binary.

fn clip(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(args)
        .env("CLIP_RS_CACHE", cache)
        .output()
        .expect("clip runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// `clip classify` with the vendored lists: one line per image, in order, each the reference's
/// top K; the second call reads the class weights from the cache (a note says no text was
/// encoded) and prints the same; other labels are computed anew.
#[test]
fn classify_prints_the_reference_top_k_and_caches_the_class_weights() {
    let cache = tempfile::tempdir().unwrap();
    let reference = reference();
    let entry = &reference["models"]["tiny-vit"];
    let weights = fixtures().join("models/tiny-vit.pt");
    let images: Vec<PathBuf> = entry["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| fixtures().join(i["image"].as_str().unwrap()))
        .collect();
    let mut args = vec!["classify", "--weights", weights.to_str().unwrap(), "--device", "cpu"];
    for image in &images {
        args.extend(["--image", image.to_str().unwrap()]);
    }
    args.extend(["--top", "3"]);
    let first = clip(&args, cache.path());
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("encoded 80000 texts"), "{}", stderr(&first));
    let printed = lines(&first);
    assert_eq!(printed.len(), images.len());
    let labels = Labels::imagenet();
    for ((line, image), expected) in
        printed.iter().zip(&images).zip(entry["images"].as_array().unwrap())
    {
        assert_eq!(line["image"].as_str().unwrap(), image.to_str().unwrap());
        let top = line["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let expected: Vec<usize> = serde_json::from_value(expected["top5"].clone()).unwrap();
        for (i, p) in top.iter().enumerate() {
            let index = p["index"].as_u64().unwrap() as usize;
            assert_eq!(index, expected[i]);
            assert_eq!(p["label"].as_str().unwrap(), labels.names[index]);
        }
        let probabilities: Vec<f64> =
            top.iter().map(|p| p["probability"].as_f64().unwrap()).collect();
        assert!(probabilities.windows(2).all(|w| w[0] >= w[1]), "{probabilities:?}");
    }
    let zeroshot_dir = cache.path().join("zeroshot");
    assert_eq!(std::fs::read_dir(&zeroshot_dir).unwrap().count(), 1);

    let second = clip(&args, cache.path());
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stderr(&second).contains("no text encoded"), "{}", stderr(&second));
    assert!(!stderr(&second).contains("encoded 80000"), "{}", stderr(&second));
    assert_eq!(second.stdout, first.stdout);

    // Other labels: computed (and cached) anew.
    let labels_file = cache.path().join("labels.txt");
    std::fs::write(&labels_file, "tench\ngoldfish\n").unwrap();
    let mut with_labels = args.clone();
    with_labels.extend(["--labels", labels_file.to_str().unwrap()]);
    let third = clip(&with_labels, cache.path());
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(stderr(&third).contains("encoded 160 texts"), "{}", stderr(&third));
    assert_eq!(lines(&third)[0]["top"].as_array().unwrap().len(), 2, "K is at most the classes");
    std::fs::write(&labels_file, "tench\ngoldfish\nwhite shark\n").unwrap();
    let fourth = clip(&with_labels, cache.path());
    assert!(stderr(&fourth).contains("encoded 240 texts"), "{}", stderr(&fourth));
    assert_eq!(std::fs::read_dir(&zeroshot_dir).unwrap().count(), 3);
}

/// What a user can get wrong: one `error:` line naming it, no JSON, no panic; flags are clap's
/// usage errors (status 2), files that cannot be used status 1 (as `clip score`'s image).
#[test]
fn bad_input_is_one_error_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let weights = fixtures().join("models/tiny-rn.pt");
    let image = fixtures().join("preprocess/rgb_224x224.png");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let no_placeholder = dir.path().join("templates.txt");
    std::fs::write(&no_placeholder, "a photo of a {}.\na photo of a thing.\n").unwrap();
    // Python's `"{} and {}".format(c)` raises; `"{{}}".format(c)` is "{}", naming no class.
    let two_fields = dir.path().join("two.txt");
    std::fs::write(&two_fields, "a {} and a {}\n").unwrap();
    let braces = dir.path().join("braces.txt");
    std::fs::write(&braces, "a photo of a {}.\n{{}}\n").unwrap();
    let not_an_image = dir.path().join("notes.png");
    std::fs::write(&not_an_image, "not a picture").unwrap();
    let base = |extra: &[&str]| {
        let mut args = vec!["classify", "--weights", weights.to_str().unwrap(), "--device", "cpu"];
        args.extend(extra);
        clip(&args, dir.path())
    };
    let image = image.to_str().unwrap();
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (vec!["--image", image, "--top", "0"], 2, "--top".into()),
        (vec![], 2, "--image".into()),
        (vec!["--image", "/no/such.png"], 1, "/no/such.png".into()),
        (vec!["--image", not_an_image.to_str().unwrap()], 1, "notes.png".into()),
        (vec!["--image", image, "--labels", empty.to_str().unwrap()], 1, "no class names".into()),
        (vec!["--image", image, "--labels", "/no/labels.txt"], 1, "/no/labels.txt".into()),
        (
            vec!["--image", image, "--templates", no_placeholder.to_str().unwrap()],
            1,
            "templates.txt, line 2: template \"a photo of a thing.\" has no `{}`".into(),
        ),
        (
            vec!["--image", image, "--templates", two_fields.to_str().unwrap()],
            1,
            "two.txt, line 1: template \"a {} and a {}\": field 1 of one argument".into(),
        ),
        (
            vec!["--image", image, "--templates", braces.to_str().unwrap()],
            1,
            "braces.txt, line 2: template \"{{}}\" has no `{}`".into(),
        ),
    ];
    for (args, code, named) in cases {
        let output = base(&args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {err}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(err.contains(&named), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if code == 1 {
            assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
        }
    }
    // Nothing was computed or cached for a failed run.
    assert!(!dir.path().join("zeroshot").exists());
}
