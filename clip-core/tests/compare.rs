//! `clip compare` end to end on results made by the experiment with the tiny random-weight
//! fixtures: the five files, one CSV row per image × model, pictures of the expected size with real
//! content, scores equal to `clip score`'s and to the runs' own `final_similarity`, and clear
//! messages (with the report still written) for stray files, PNGs without JSON and missing models.

use clip_core::app::device::DeviceChoice;
use clip_core::app::run::{run, ModelSource, RunSpec};
use clip_core::engine::optimize::{Preset, Settings};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROMPTS: &[&str] = &["A cute golden retriever", "A bright red tomato"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name)
}

/// Both tiny models (results in `tiny-rn/` and `tiny-vit/`, named after their files), both
/// presets, two prompts each, two steps: 8 results under `dir`.
fn make_results(dir: &Path) {
    for weights in ["tiny-rn.pt", "tiny-vit.pt"] {
        for preset in [Preset::Constrained, Preset::Unconstrained] {
            let spec = RunSpec {
                model: ModelSource::Weights { path: fixture(weights), expect: None },
                prompts: PROMPTS.iter().map(|p| p.to_string()).collect(),
                name: preset.to_string(),
                preset: Some(preset),
                settings: Settings { steps: 2, ..preset.settings() },
                precision: None,
                device: DeviceChoice::Cpu,
                seed: Some(3),
                out: dir.to_path_buf(),
                log_every: 1,
            };
            run(&spec).expect("the experiment runs");
        }
    }
}

fn clip(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clip"));
    command.args(args);
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("clip runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn weights_flag(name: &str, file: &str) -> String {
    format!("{name}={}", fixture(file).display())
}

/// (width, height, number of distinct colours) of a PNG.
fn png_stats(path: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let colours: HashSet<&[u8]> = buf[..info.buffer_size()].chunks(3).collect();
    (info.width, info.height, colours.len())
}

/// CSV rows as (image, prompt, generated_by, mode, scored_by, similarity); no field here holds a
/// comma.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let csv = std::fs::read_to_string(path).expect("transfer.csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("image,prompt,generated_by,mode,scored_by,similarity"));
    lines.map(|l| l.split(',').map(str::to_string).collect()).collect()
}

#[test]
fn writes_five_files_with_scores_equal_to_clip_score() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    make_results(dir.path());
    let photo = fixture("images/wide300x200.png");
    let real = format!("{}=A cute golden retriever", photo.display());
    let rn = weights_flag("tiny-rn", "tiny-rn.pt");
    let vit = weights_flag("tiny-vit", "tiny-vit.pt");
    let dir_arg = dir.path().to_str().expect("UTF-8");
    let args = [
        "compare",
        dir_arg,
        "--weights",
        &rn,
        "--weights",
        &vit,
        "--real",
        &real,
        "--device",
        "cpu",
    ];
    let output = clip(&args, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("scored 9 image(s) with 2 model(s)"),
        "{}",
        text(&output.stdout)
    );

    let rows = csv_rows(&dir.path().join("transfer.csv"));
    // 8 results + 1 real photo, each under both models.
    assert_eq!(rows.len(), 9 * 2, "{rows:?}");
    let real_rows: Vec<_> = rows.iter().filter(|r| r[2] == "real photo").collect();
    assert_eq!(real_rows.len(), 2);
    assert!(real_rows.iter().all(|r| r[3] == "real" && r[1] == "A cute golden retriever"));
    for model in ["tiny-rn", "tiny-vit"] {
        for mode in ["constrained", "unconstrained"] {
            let n = rows.iter().filter(|r| r[2] == model && r[3] == mode).count();
            assert_eq!(n, PROMPTS.len() * 2, "{model} {mode}");
        }
    }

    // Cross-model: a ViT-made image scored by the ResNet equals `clip score` on it.
    let row = rows
        .iter()
        .find(|r| r[2] == "tiny-vit" && r[3] == "constrained" && r[4] == "tiny-rn")
        .expect("a transfer row");
    let image = dir.path().join(&row[0]);
    let score = clip(
        &[
            "score",
            "--weights",
            fixture("tiny-rn.pt").to_str().expect("UTF-8"),
            "--device",
            "cpu",
            "--image",
            image.to_str().expect("UTF-8"),
            "--text",
            &row[1],
        ],
        &[],
    );
    assert!(score.status.success(), "{}", text(&score.stderr));
    let expected: f64 =
        text(&score.stdout).lines().last().expect("a line").parse().expect("a number");
    let ours: f64 = row[5].parse().expect("a number");
    assert!((ours - expected).abs() < 1e-5, "compare {ours} vs clip score {expected}");

    // Own model: equal to the run's recorded "Final Similarity" (the experiment's scoring path).
    for r in rows.iter().filter(|r| r[2] == r[4]) {
        let json = dir.path().join(&r[0]).with_extension("json");
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON")).expect("valid");
        let recorded = record["final_similarity"].as_f64().expect("a number");
        let ours: f64 = r[5].parse().expect("a number");
        assert!((ours - recorded).abs() < 1e-5, "{}: {ours} vs {recorded}", r[0]);
    }

    // Pictures: sizes that fit their content, and real content (not a blank canvas).
    let (w, h, colours) = png_stats(&dir.path().join("transfer.png"));
    // 3 columns of models (label column + 2 models + scale), 5 rows (4 groups + real photo).
    assert!((600..2000).contains(&w) && (300..1000).contains(&h), "transfer {w}x{h}");
    assert!(colours > 20, "transfer.png has {colours} colours");
    let (w, h, colours) = png_stats(&dir.path().join("contact_sheet.png"));
    // 5 columns (4 model × mode + real photo) of 160 px images, 2 prompt rows.
    assert!(w >= 5 * 160 && h >= 2 * 160, "contact sheet {w}x{h}");
    assert!(colours > 1000, "contact_sheet.png has {colours} colours");
    let (w, h, colours) = png_stats(&dir.path().join("curves.png"));
    assert!(w >= 1000 && h >= 400, "curves {w}x{h}");
    assert!(colours > 20, "curves.png has {colours} colours");

    let report = std::fs::read_to_string(dir.path().join("report.md")).expect("report.md");
    for needle in
        ["transfer.png", "contact_sheet.png", "curves.png", "| tiny-rn · constrained |", "## Runs"]
    {
        assert!(report.contains(needle), "{needle} missing from the report:\n{report}");
    }
    assert!(!report.contains("## Warnings"), "{report}");

    // A second run reads its own outputs as such, not as stray files.
    let again = clip(&args, &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(!text(&again.stderr).contains("transfer"), "{}", text(&again.stderr));
    assert_eq!(csv_rows(&dir.path().join("transfer.csv")).len(), 18);
}

#[test]
fn stray_files_and_a_missing_model_are_reported_and_the_rest_is_written() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    make_results(dir.path());
    std::fs::write(dir.path().join("notes.txt"), "not a result").expect("write");
    std::fs::copy(fixture("images/square64.png"), dir.path().join("tiny-rn/stray.png"))
        .expect("copy");
    // No network and an empty cache: ViT-L/14's weights cannot be had.
    let home = tempfile::tempdir().expect("a temporary directory");
    let nowhere = Path::new("http://127.0.0.1:9");
    let rn = weights_flag("tiny-rn", "tiny-rn.pt");
    let vit = weights_flag("tiny-vit", "tiny-vit.pt");
    let dir_arg = dir.path().to_str().expect("UTF-8");
    let output = clip(
        &[
            "compare",
            dir_arg,
            "--weights",
            &rn,
            "--weights",
            &vit,
            "--models",
            "tiny-rn,tiny-vit,ViT-L/14,nonsense",
            "--device",
            "cpu",
        ],
        &[("HOME", home.path()), ("CLIP_DOWNLOAD_BASE_URL", nowhere)],
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("warning: tiny-rn/stray.png has no stray.json"), "{stderr}");
    assert!(stderr.contains("notes.txt: not a result"), "{stderr}");
    assert!(stderr.contains("warning: model ViT-L/14 left out"), "{stderr}");
    assert!(stderr.contains("warning: model nonsense left out"), "{stderr}");
    assert!(stderr.contains("not a released model"), "{stderr}");

    let rows = csv_rows(&dir.path().join("transfer.csv"));
    assert_eq!(rows.len(), 8 * 2, "only the two models that loaded, only results with records");
    for name in ["transfer.png", "contact_sheet.png", "curves.png"] {
        assert!(png_stats(&dir.path().join(name)).2 > 20, "{name}");
    }
    let report = std::fs::read_to_string(dir.path().join("report.md")).expect("report.md");
    for needle in ["## Warnings", "stray.png", "notes.txt", "ViT-L/14 (not available)", "left out"]
    {
        assert!(report.contains(needle), "{needle} missing from the report:\n{report}");
    }
}

#[test]
fn nothing_to_score_is_an_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("notes.txt"), "not a result").expect("write");
    let rn = weights_flag("tiny-rn", "tiny-rn.pt");
    let output = clip(
        &["compare", dir.path().to_str().expect("UTF-8"), "--weights", &rn, "--device", "cpu"],
        &[],
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("error: nothing to score in"), "{stderr}");
    assert!(!dir.path().join("report.md").exists());

    // Results, but no model that can score them.
    make_results(dir.path());
    let missing = format!("tiny-rn={}", dir.path().join("missing.pt").display());
    let output = clip(
        &["compare", dir.path().to_str().expect("UTF-8"), "--weights", &missing, "--device", "cpu"],
        &[],
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("error: no scoring model could be loaded"), "{stderr}");
    assert!(stderr.contains("missing.pt"), "{stderr}");
}
