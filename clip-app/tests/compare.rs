//! `clip compare` end to end on results made by the experiment with the tiny random-weight
//! fixtures: the seven files, one CSV row per image × model (and per probe in robustness.csv),
//! pictures of the expected size with real content, scores equal to `clip score`'s and to the
//! runs' own `final_similarity`, and clear messages (with the report still written) for stray
//! files, PNGs without JSON, missing models and bad `--probes`.

#[path = "../../clip-core/tests/common/hostile_files.rs"]
mod hostile_files;

use clip_app::device::DeviceChoice;
use clip_app::run::{run, ModelSource, RunRequest as RunSpec};
use clip_core::engine::optimize::{Preset, Settings};
use std::collections::HashSet;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROMPTS: &[&str] = &["A cute golden retriever", "A bright red tomato"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clip-core/tests/fixtures/models").join(name)
}

/// Both tiny models (results in `tiny-rn/` and `tiny-vit/`, named after their files), both
/// presets, two prompts each, two steps: 8 results under `dir`.
fn make_results(dir: &Path) {
    for weights in ["tiny-rn.pt", "tiny-vit.pt"] {
        for preset in [Preset::Constrained, Preset::Unconstrained] {
            let spec = RunSpec {
                models: vec![ModelSource::file(fixture(weights))],
                model_weights: Vec::new(),
                prompts: PROMPTS.iter().map(|p| p.to_string()).collect(),
                negatives: Vec::new(),
                init: None,
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

/// `transfer.csv`'s header: the six columns it always had, then the ones added since.
const HEADER: &str = "image,prompt,generated_by,mode,scored_by,similarity,optimised_against,\
                      start_similarity,epsilon,linf,l2";

/// CSV rows as (image, prompt, generated_by, mode, scored_by, similarity, optimised_against,
/// start_similarity, epsilon, linf, l2); no field here holds a comma.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let csv = std::fs::read_to_string(path).expect("transfer.csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(HEADER));
    let rows: Vec<Vec<String>> =
        lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 11), "{rows:?}");
    rows
}

#[test]
fn writes_every_file_with_scores_equal_to_clip_score() {
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

    // Records without ensembles or photo starts: optimised against the model that made them only,
    // and no start or distance columns.
    for r in &rows {
        let own = r[2] == r[4];
        assert_eq!(r[6], own.to_string(), "{r:?}");
        assert!(r[7..].iter().all(|f| f.is_empty()), "{r:?}");
    }

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
    for section in ["## Ensembles", "## Photo starts", "## Negative prompts", "held out"] {
        assert!(!report.contains(section), "{section} in a report without such results:\n{report}");
    }
    assert!(!report.contains("\\*"), "a member mark without an ensemble:\n{report}");

    // A second run reads its own outputs as such, not as stray files.
    let again = clip(&args, &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(!text(&again.stderr).contains("transfer"), "{}", text(&again.stderr));
    assert!(!text(&again.stderr).contains("robustness"), "{}", text(&again.stderr));
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

// ---------------------------------------------------------------------------------------------
// Hostile results trees. The results are made by hand (a fixture PNG, a JSON record, a CSV), and
// every run of the binary has a deadline: a hang fails the test instead of the suite.

/// How long one `clip compare` on a handful of tiny results may take, hang included.
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs `clip` and kills it (failing the test) when it outlives `deadline`.
fn clip_within(args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(args)
        .env("CLIP_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/none")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("clip starts");
    // Drained on their own threads, so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("clip is waited for") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = text(&stderr.join().unwrap_or_default());
            panic!("clip {args:?} still running after {deadline:?} (hung?); stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A hand-made result `<stem>.png` (a copy of `image`) with its JSON `record` and, when given, its
/// step history CSV.
fn hand_result(dir: &Path, stem: &str, image: &Path, record: &str, csv: Option<&str>) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::copy(image, dir.join(format!("{stem}.png"))).expect("copy");
    std::fs::write(dir.join(format!("{stem}.json")), record).expect("write");
    if let Some(csv) = csv {
        std::fs::write(dir.join(format!("{stem}.csv")), csv).expect("write");
    }
}

fn record(prompt: &str, model: &str) -> String {
    serde_json::json!({ "prompt": prompt, "model": model, "mode": "constrained" }).to_string()
}

fn square64() -> PathBuf {
    fixture("images/square64.png")
}

/// `clip compare DIR` with the tiny ResNet, on the CPU, within [`DEADLINE`].
fn compare_tiny(dir: &Path, extra: &[&str]) -> Output {
    let rn = weights_flag("tiny-rn", "tiny-rn.pt");
    let mut args = vec!["compare", dir.to_str().expect("UTF-8"), "--weights", &rn];
    args.extend(["--device", "cpu"]);
    args.extend(extra);
    clip_within(&args, DEADLINE)
}

fn report(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("report.md")).expect("report.md written")
}

/// A frozen prompt's history (NaN from step 1) made `compare` hang for ever in plotters' tick
/// search. Every kind of unplottable history, each alone in its panel next to a healthy run: the
/// report is written, the healthy curve drawn, and the report says, per run, where its curve stops.
#[test]
fn histories_that_are_not_finite_do_not_hang_and_are_reported() {
    let healthy = "step,similarity,tv\n1,0.1,0\n2,0.2,0\n3,0.3,0\n";
    let cases: [(&str, &str, &[&str]); 12] = [
        (
            "repro",
            "step,similarity,tv\n1,NaN,0\n",
            &["\"NaN\" at line 2", "before any finite point"],
        ),
        (
            "nanafter",
            "step,similarity,tv\n1,0.1,0\n2,0.2,0\n3,NaN,0\n4,NaN,0\n",
            &["\"NaN\" at line 4", "ends at step 2", "1 later row(s)"],
        ),
        ("inf", "step,similarity,tv\n1,0.1,0\n2,inf,0\n", &["\"inf\"", "ends at step 1"]),
        ("neginf", "step,similarity,tv\n1,0.1,0\n2,-inf,0\n", &["\"-inf\"", "ends at step 1"]),
        ("allbad", "step,similarity,tv\n1,NaN,0\n2,inf,0\n3,-inf,0\n", &["before any finite"]),
        ("huge", "step,similarity,tv\n1,0.5,0\n2,1e308,0\n3,-1e308,0\n", &["\"1e308\"", "step 1"]),
        ("hugefirst", "step,similarity,tv\n1,1e308,0\n2,-1e308,0\n", &["before any finite"]),
        ("badstep", "step,similarity,tv\n1,0.5,0\ninf,0.6,0\n", &["its step is \"inf\""]),
        ("single", "step,similarity,tv\n7,0.25,0\n", &[]),
        ("headeronly", "step,similarity,tv\n", &["holds no steps"]),
        ("garbage", "step,similarity,tv\nx,y,z\n1;2;3\n\n1,0.5,0\n", &["3 line(s)"]),
        ("empty", "", &["holds no steps"]),
    ];
    for (stem, csv, needles) in cases {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // In a panel of its own (another generating model): the unplottable run is alone in its
        // panel, where nothing finite bounds the axis.
        hand_result(dir.path(), "healthy", &square64(), &record("a dog", "other"), Some(healthy));
        hand_result(dir.path(), stem, &square64(), &record("a cat", "tiny-rn"), Some(csv));
        let output = compare_tiny(dir.path(), &[]);
        let stderr = text(&output.stderr);
        assert!(output.status.success(), "{stem}: {stderr}");
        let report = report(dir.path());
        let line = report.lines().find(|l| l.starts_with(&format!("- {stem}.png:")));
        match needles {
            [] => assert!(line.is_none(), "{stem}: {report}"),
            _ => {
                let line = line.unwrap_or_else(|| panic!("{stem}: no line in\n{report}"));
                for needle in needles {
                    assert!(line.contains(needle), "{stem}: {needle:?} not in {line:?}");
                }
            }
        }
        assert!(!report.contains("- healthy.png:"), "{report}");
        assert!(png_stats(&dir.path().join("curves.png")).2 > 20, "{stem}: curves.png is blank");
    }
}

/// Non-finite or missing numbers in the record (Python's `json` writes `NaN` and `Infinity`),
/// and numbers of the wrong type, read as missing; the result is still compared.
#[test]
fn records_with_non_finite_or_missing_numbers_are_compared() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let records = [
        r#"{"prompt": "a dog", "model": "tiny-rn", "mode": "constrained", "final_similarity": NaN,
            "initial_similarity": -Infinity, "steps_per_second": Infinity, "steps": "many"}"#,
        r#"{"prompt": "a cat", "model": "tiny-rn", "mode": "unconstrained"}"#,
        r#"{"prompt": "a cow", "model": "tiny-rn", "mode": "constrained", "final_similarity": 1e308,
            "frozen_at_step": 1, "seed": -1, "learning_rate": null}"#,
    ];
    for (i, r) in records.iter().enumerate() {
        hand_result(dir.path(), &format!("r{i}"), &square64(), r, Some("step,similarity\n1,NaN\n"));
    }
    // The model that made them does not score here: "own" falls back to the records' numbers.
    let vit = weights_flag("tiny-vit", "tiny-vit.pt");
    let output = clip_within(
        &["compare", dir.path().to_str().expect("UTF-8"), "--weights", &vit, "--device", "cpu"],
        DEADLINE,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(csv_rows(&dir.path().join("transfer.csv")).len(), 3);
    let report = report(dir.path());
    assert!(report.contains("- r2.png: the run froze at step 1 (its record)"), "{report}");
    assert!(!report.contains("NaN |") && !report.contains("inf |"), "{report}");
}

/// A PNG of `width` x `height` RGB pixels (a repeating ramp: a few kilobytes compressed).
fn thin_png(path: &Path, width: u32, height: u32) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut encoder = png::Encoder::new(file, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("header");
    let data: Vec<u8> =
        (0..width as usize * height as usize * 3).map(|i| (i % 251) as u8).collect();
    writer.write_image_data(&data).expect("data");
    writer.finish().expect("finish");
}

/// CLIP resizes the shorter side to its resolution: a 5 000 000 x 1 PNG of 15 KB would become
/// 1 120 000 000 x 224 (45 GB of filter weights; the process aborted). Only what the centre crop
/// keeps is resized now: `clip score` gives a finite similarity on each, and `compare` writes its
/// report, with a warning for an image too elongated for Pillow's sizes.
#[test]
fn extremely_thin_images_are_scored_and_compared() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let shapes = [(5_000_000, 1), (1, 5_000_000), (100_000, 1), (1, 100_000)];
    for (w, h) in shapes {
        let path = dir.path().join(format!("thin_{w}x{h}.png"));
        thin_png(&path, w, h);
        assert!(std::fs::metadata(&path).expect("written").len() < 1 << 20);
        std::fs::write(path.with_extension("json"), record(&format!("{w} by {h}"), "tiny-rn"))
            .expect("write");
        for weights in ["tiny-rn.pt", "tiny-vit.pt"] {
            let output = clip_within(
                &[
                    "score",
                    "--weights",
                    fixture(weights).to_str().expect("UTF-8"),
                    "--device",
                    "cpu",
                    "--image",
                    path.to_str().expect("UTF-8"),
                    "--text",
                    "a line",
                ],
                DEADLINE,
            );
            assert!(output.status.success(), "{w}x{h}: {}", text(&output.stderr));
            let last = text(&output.stdout).lines().last().map(str::to_string).unwrap_or_default();
            let score: f64 = last.trim().parse().expect("a number");
            assert!(score.is_finite() && score.abs() <= 1.0, "{w}x{h}: {score}");
        }
    }
    // Beyond what Pillow can make (2 240 000 000 wide at n = 224; 320 000 000 at the tiny
    // models' 32 and 64 would still fit), so only at the real resolution: not here.
    let rn = weights_flag("tiny-rn", "tiny-rn.pt");
    let vit = weights_flag("tiny-vit", "tiny-vit.pt");
    let d = dir.path().to_str().expect("UTF-8");
    let output = clip_within(
        &["compare", d, "--weights", &rn, "--weights", &vit, "--device", "cpu"],
        DEADLINE,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(csv_rows(&dir.path().join("transfer.csv")).len(), 4 * 2);
    assert!(png_stats(&dir.path().join("contact_sheet.png")).2 > 20);
}

/// An image that cannot be preprocessed (here: claims 100 000 x 100 000 pixels) is a warning,
/// not the end of the report.
#[test]
fn an_image_too_large_to_decode_is_a_warning() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    hand_result(dir.path(), "fine", &square64(), &record("a dog", "tiny-rn"), None);
    let bomb = dir.path().join("bomb.png");
    // The header alone: the size is checked before anything is decoded.
    std::fs::write(&bomb, hostile_files::png_header_only(100_000, 100_000)).expect("write");
    std::fs::write(bomb.with_extension("json"), record("a cat", "tiny-rn")).expect("write");
    let output = compare_tiny(dir.path(), &[]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("bomb.png is 100000x100000 pixels"), "{stderr}");
    assert_eq!(csv_rows(&dir.path().join("transfer.csv")).len(), 1);
    assert!(report(dir.path()).contains("bomb.png is 100000x100000 pixels"));
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).expect("read"));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A JSON whose `image_sha256` is not its PNG's (a run killed between writing the two, or a file
/// replaced) is skipped with a warning; temporary and lock files of killed runs are noted.
#[test]
fn records_that_do_not_belong_to_their_png_and_leftovers_of_killed_runs() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = dir.path();
    let with_sha = |prompt: &str, sha: &str| {
        serde_json::json!({
            "prompt": prompt, "model": "tiny-rn", "mode": "constrained", "image_sha256": sha
        })
        .to_string()
    };
    let right = sha256_hex(&square64());
    let other = sha256_hex(&fixture("images/square32.png"));
    hand_result(d, "matches", &square64(), &with_sha("a dog", &right), None);
    hand_result(d, "upper", &square64(), &with_sha("a cow", &right.to_uppercase()), None);
    hand_result(d, "replaced", &square64(), &with_sha("a cat", &other), None);
    hand_result(d, "garbage_sha", &square64(), &with_sha("a pig", "not a hash"), None);
    hand_result(d, "no_sha", &square64(), &record("a hen", "tiny-rn"), None);
    std::fs::create_dir_all(d.join("sub")).expect("mkdir");
    for leftover in [".tmp-a1B2c3", ".tmp-XyZ.png", ".results.lock", "sub/.tmp-9"] {
        std::fs::write(d.join(leftover), b"half a file").expect("write");
    }
    let output = compare_tiny(d, &[]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for stem in ["replaced", "garbage_sha"] {
        let needle = format!("{stem}.png and {stem}.json do not belong together");
        assert!(stderr.contains(&needle), "{needle}: {stderr}");
    }
    let mut images: Vec<String> =
        csv_rows(&d.join("transfer.csv")).into_iter().map(|r| r[0].clone()).collect();
    images.sort();
    assert_eq!(images, ["matches.png", "no_sha.png", "upper.png"]);
    let report = report(d);
    assert!(report.contains("do not belong together"), "{report}");
    for leftover in [".tmp-a1B2c3", ".tmp-XyZ.png", ".results.lock", "sub/.tmp-9"] {
        let line = report.lines().find(|l| l.contains(leftover)).unwrap_or_else(|| {
            panic!("{leftover} not in the report:\n{report}");
        });
        assert!(line.contains("left by a run that was killed"), "{line}");
    }
    assert!(
        !stderr.contains("warning: .tmp-") && !stderr.contains("warning: sub/.tmp"),
        "{stderr}"
    );
}

/// A minimal RFC 4180 reader: quoted fields with doubled quotes, commas and line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

/// Prompts, model names and file names that a spreadsheet would run as formulas are escaped in
/// `transfer.csv`: prefixed with `'` and quoted.
#[test]
fn csv_cells_that_spreadsheets_would_run_are_escaped() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let prompts = ["=1+2", "+1", "-1", "@SUM(A1)", "\t=1+2", "\r=1+2", "=HYPERLINK(\"x\",\"y\")"];
    for (i, p) in prompts.iter().enumerate() {
        hand_result(dir.path(), &format!("p{i}"), &square64(), &record(p, "@evil"), None);
    }
    hand_result(dir.path(), "=cmd", &square64(), &record("a dog", "@evil"), None);
    let evil = weights_flag("@evil", "tiny-rn.pt");
    let output = clip_within(
        &["compare", dir.path().to_str().expect("UTF-8"), "--weights", &evil, "--device", "cpu"],
        DEADLINE,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let csv = std::fs::read_to_string(dir.path().join("transfer.csv")).expect("transfer.csv");
    let rows = parse_csv(&csv);
    assert_eq!(rows.len(), 1 + prompts.len() + 1, "{csv}");
    assert_eq!(rows[0].join(","), HEADER);
    for row in &rows[1..] {
        assert_eq!(row.len(), 11, "{row:?}");
        for cell in &row[..5] {
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "unescaped {cell:?}");
        }
        row[5].parse::<f64>().expect("the similarity stays a number");
        assert_eq!((row[2].as_str(), row[4].as_str()), ("'@evil", "'@evil"));
    }
    let shown: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    for p in prompts {
        assert!(shown.contains(&format!("'{p}").as_str()), "{p:?} not in {shown:?}");
    }
    assert!(rows.iter().any(|r| r[0] == "'=cmd.png"), "{csv}");
    // Each escaped cell is a quoted field in the file itself.
    assert!(csv.contains("\"'=1+2\"") && csv.contains("\"'@evil\""), "{csv}");
}

/// A 1 MB prompt without a space: the contact sheet wrapped it in quadratic time (minutes), and
/// every message echoed it whole. Now: seconds, and every message and the report show an excerpt.
#[test]
fn a_huge_prompt_is_shown_cut_and_quickly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let prompt = "x".repeat(1 << 20);
    hand_result(dir.path(), "huge", &square64(), &record(&prompt, "tiny-rn"), None);
    let start = Instant::now();
    let output = clip_within(
        &[
            "compare",
            dir.path().to_str().expect("UTF-8"),
            "--weights",
            &weights_flag("tiny-rn", "tiny-rn.pt"),
            "--device",
            "cpu",
        ],
        Duration::from_secs(60),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
    assert!(output.stderr.len() < 4096, "stderr holds {} bytes", output.stderr.len());
    assert!(text(&output.stderr).contains("(1048576 characters)"));
    let report = report(dir.path());
    assert!(report.len() < 16 << 10, "report.md is {} bytes", report.len());
    // The data keeps the prompt whole.
    let csv = std::fs::read_to_string(dir.path().join("transfer.csv")).expect("transfer.csv");
    assert!(csv.contains(&prompt));
}

/// A subdirectory that cannot be read (its path is longer than the system allows; a directory
/// without read permission where the tests do not run as root) is a warning; the other results
/// are compared.
#[test]
fn an_unreadable_subdirectory_is_a_warning() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    hand_result(dir.path(), "fine", &square64(), &record("a dog", "tiny-rn"), None);
    // 17 levels of 250-byte names: over PATH_MAX (4096), made a level at a time with relative
    // paths (the absolute path cannot be used, which is the point).
    let name = "d".repeat(250);
    let script = format!(
        "for i in $(seq 17); do mkdir {name} && cd -P {name} || exit 1; done; \
         cp '{}' deep.png && echo '{}' > deep.json",
        square64().display(),
        record("a cat", "tiny-rn")
    );
    let made =
        Command::new("sh").current_dir(dir.path()).args(["-c", &script]).status().expect("sh runs");
    assert!(made.success());
    // SAFETY: `geteuid` has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let locked = dir.path().join("locked");
    if !root {
        hand_result(&locked, "hidden", &square64(), &record("a cow", "tiny-rn"), None);
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .expect("chmod");
    }
    let output = compare_tiny(dir.path(), &[]);
    if !root {
        let _ =
            std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    }
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("cannot be read") && stderr.contains("the results in it are skipped"));
    if !root {
        assert!(stderr.contains("locked: cannot be read"), "{stderr}");
    }
    assert_eq!(csv_rows(&dir.path().join("transfer.csv")).len(), 1);
    assert!(report(dir.path()).contains("cannot be read"));
}

/// `--weights RN50=A --weights RN50=B` kept B silently: now an error naming the name and both
/// files, before anything is loaded or written.
#[test]
fn a_model_name_given_twice_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    hand_result(dir.path(), "fine", &square64(), &record("a dog", "tiny-rn"), None);
    let first = weights_flag("tiny-rn", "tiny-rn.pt");
    let second = weights_flag("tiny-rn", "tiny-vit.pt");
    let d = dir.path().to_str().expect("UTF-8");
    let output = clip_within(
        &["compare", d, "--weights", &first, "--weights", &second, "--device", "cpu"],
        DEADLINE,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: --weights \"tiny-rn\" is given twice"), "{stderr}");
    assert!(stderr.contains("tiny-rn.pt") && stderr.contains("tiny-vit.pt"), "{stderr}");
    assert!(!dir.path().join("transfer.csv").exists() && output.stdout.is_empty());
}

/// A results directory that cannot be written to is an error at once — before the results are
/// read or a model loaded — not after scoring. (`/proc` refuses new files even to root.)
#[test]
fn an_unwritable_results_directory_is_refused_first() {
    let proc = Path::new("/proc/self/fdinfo");
    if !proc.is_dir() {
        return;
    }
    let output = clip_within(
        &[
            "compare",
            "/proc/self/fdinfo",
            "--weights",
            "tiny-rn=/nonexistent.pt",
            "--device",
            "cpu",
        ],
        DEADLINE,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot be created or written to"), "{stderr}");
    assert!(!stderr.contains("nothing to score") && !stderr.contains("scoring"), "{stderr}");
}

/// Ctrl-C stops `compare` between batches: exit status 130 within a bounded time, nothing written
/// and no temporary file left.
#[test]
fn ctrl_c_stops_compare_with_status_130_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // 400 results sharing one 1500 x 1500 PNG (hard links): preprocessing each takes a while.
    let big = dir.path().join("big.source");
    thin_png(&big, 1500, 1500);
    for i in 0..400 {
        let png = dir.path().join(format!("r{i:03}.png"));
        std::fs::hard_link(&big, &png)
            .or_else(|_| std::fs::copy(&big, &png).map(|_| ()))
            .expect("link");
        std::fs::write(png.with_extension("json"), record(&format!("prompt {i}"), "tiny-rn"))
            .expect("write");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_clip"))
        .args([
            "compare",
            dir.path().to_str().expect("UTF-8"),
            "--device",
            "cpu",
            "--batch-size",
            "4",
        ])
        .args(["--weights", &weights_flag("tiny-rn", "tiny-rn.pt")])
        .args(["--weights", &weights_flag("tiny-vit", "tiny-vit.pt")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("clip starts");
    let stderr = child.stderr.take().expect("piped");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("scoring ")) {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no scoring started: {seen:?}");
            }
        }
    }
    // A moment into the scoring, then SIGINT, as Ctrl-C sends it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().expect("waited").is_none(), "finished before the signal: {seen:?}");
    // SAFETY: `kill` takes a pid and a signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waited") {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("still running 60 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    seen.extend(lines.try_iter());
    assert_eq!(status.code(), Some(130), "{seen:?}");
    assert!(seen.iter().any(|l| l.contains("interrupted while scoring")), "{seen:?}");
    eprintln!("stopped {:?} after the signal ({:?} in all)", signalled.elapsed(), start.elapsed());
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("readable")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || OUTPUTS.contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

const OUTPUTS: [&str; 7] = [
    "transfer.csv",
    "transfer.png",
    "contact_sheet.png",
    "curves.png",
    "robustness.csv",
    "robustness.png",
    "report.md",
];

// ---------------------------------------------------------------------------------------------
// Ensembles and photo starts, made by hand as `clip generate` records them.

/// A `side` x `side` PNG of one colour.
fn solid_png(path: &Path, side: u32, colour: [u8; 3]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut encoder = png::Encoder::new(file, side, side);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("header");
    let data: Vec<u8> = (0..side * side).flat_map(|_| colour).collect();
    writer.write_image_data(&data).expect("data");
    writer.finish().expect("finish");
}

/// (width, height, RGB bytes) of an 8-bit RGB PNG.
fn png_pixels(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// The cells of the Markdown table row that begins with `start`.
fn table_row(report: &str, start: &str) -> Vec<String> {
    let line = report
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no row {start:?} in\n{report}"));
    line.trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect()
}

/// `clip score` of one image and prompt under a fixture model.
fn clip_score(weights: &str, image: &Path, prompt: &str) -> f64 {
    let output = clip_within(
        &[
            "score",
            "--weights",
            fixture(weights).to_str().expect("UTF-8"),
            "--device",
            "cpu",
            "--image",
            image.to_str().expect("UTF-8"),
            "--text",
            prompt,
        ],
        DEADLINE,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).lines().last().expect("a line").trim().parse().expect("a number")
}

const ENSEMBLE_STEM: &str = "constrained_ensemble-tiny-rn+tiny-vit_a_dog";

/// An ensemble of the two tiny models (weights 1 and 3) and a single-model result, as `clip
/// generate` records them; the ensemble's history has a column per member and negatives.
fn ensemble_results(d: &Path) {
    let ensemble = serde_json::json!({
        "prompt": "a dog", "model": "tiny-rn+tiny-vit", "mode": "constrained",
        "ensemble": [
            {"model": "tiny-rn", "token": "tiny-rn", "weights": "/w/tiny-rn.pt",
             "weights_sha256": "ab".repeat(32), "weight": 1.0, "resolution": 32,
             "initial_similarity": 0.01, "final_similarity": 0.2, "final_similarity_unquantized": 0.21},
            {"model": "tiny-vit", "token": "tiny-vit", "weights": "/w/tiny-vit.pt",
             "weights_sha256": "cd".repeat(32), "weight": 3.0, "final_similarity": 0.3}
        ],
        "final_similarity": 0.275, "steps": 2,
        "negative_weight": 0.5,
        "negatives": [{"prompt": "static noise", "initial_similarity": 0.1, "final_similarity": 0.05}]
    });
    let csv = "step,similarity,tv,similarity_tiny-rn,similarity_tiny-vit,negative_similarity\n\
               1,0.1,0,0.2,0.07,0.1\n2,0.2,0,0.3,0.17,0.1\n";
    let dir = d.join("ensemble-tiny-rn+tiny-vit");
    hand_result(&dir, ENSEMBLE_STEM, &square64(), &ensemble.to_string(), Some(csv));
    let single = fixture("images/square32.png");
    let dog = record("a dog", "tiny-rn");
    hand_result(&d.join("tiny-rn"), "constrained_tiny-rn_a_dog", &single, &dog, None);
}

/// A file name as a cell of report.md shows it (Markdown's `_` escaped).
fn md(name: &str) -> String {
    name.replace('_', "\\_")
}

/// The part of report.md under `heading`, up to the next heading of its level.
fn section<'a>(report: &'a str, heading: &str) -> &'a str {
    let start = report.find(heading).unwrap_or_else(|| panic!("no {heading} in\n{report}"));
    let rest = &report[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// An ensemble result is a row of its own, scored by every model; its members' cells are marked
/// (in the CSV, the report and the heat-map), the other models are held out; its own score is the
/// weighted mean of its members' scores, or its record's when a member does not score here.
#[test]
fn an_ensemble_is_a_row_of_its_own_with_its_members_marked() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = dir.path();
    ensemble_results(d);
    let rn = weights_flag("tiny-rn", "tiny-rn.pt");
    let vit = weights_flag("tiny-vit", "tiny-vit.pt");
    let held = weights_flag("held", "tiny-rn.pt");
    let dir_arg = d.to_str().expect("UTF-8");
    let args = ["compare", dir_arg, "--weights", &rn, "--weights", &vit, "--weights", &held];
    let output = clip_within(&[&args[..], &["--device", "cpu"]].concat(), DEADLINE);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    let rows = csv_rows(&d.join("transfer.csv"));
    assert_eq!(rows.len(), 2 * 3, "{rows:?}");
    let score = |image_part: &str, model: &str| -> (f64, String) {
        let r = rows
            .iter()
            .find(|r| r[0].contains(image_part) && r[4] == model)
            .unwrap_or_else(|| panic!("no row {image_part} {model}: {rows:?}"));
        (r[5].parse().expect("a number"), r[6].clone())
    };
    for (model, member) in [("tiny-rn", "true"), ("tiny-vit", "true"), ("held", "false")] {
        let (_, optimised) = score("ensemble-tiny-rn+tiny-vit/", model);
        assert_eq!(optimised, member, "ensemble under {model}");
    }
    for (model, own) in [("tiny-rn", "true"), ("tiny-vit", "false"), ("held", "false")] {
        assert_eq!(score("tiny-rn/", model).1, own, "single under {model}");
    }
    let makers: HashSet<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(makers, HashSet::from(["tiny-rn+tiny-vit", "tiny-rn"]));

    let report = report(d);
    assert!(!report.contains("## Warnings"), "{report}");
    // The transfer table: the ensemble's members marked, the held-out model not.
    let row = table_row(&report, "| tiny-rn+tiny-vit · constrained |");
    assert_eq!(row.len(), 4, "{row:?}");
    assert!(row[1].ends_with("\\*") && row[2].ends_with("\\*"), "{row:?}");
    assert!(!row[3].contains('*'), "held out: {row:?}");
    let single = table_row(&report, "| tiny-rn · constrained |");
    assert!(single[1].starts_with("**") && !single[1].contains("\\*"), "{single:?}");
    assert!(!single[2].contains('*') && !single[3].contains('*'), "{single:?}");
    let at = |needle: &str| report.find(needle).unwrap_or_else(|| panic!("{needle}: {report}"));
    assert!(at("| tiny-rn · constrained |") < at("| tiny-rn+tiny-vit · constrained |"));
    assert!(report.contains("the others are held out"), "{report}");

    // The ensembles section: members, weights, recorded and measured scores, own = weighted mean.
    let (rn_score, vit_score) = (score("ensemble", "tiny-rn").0, score("ensemble", "tiny-vit").0);
    let held_score = score("ensemble", "held").0;
    let own = (rn_score + 3.0 * vit_score) / 4.0;
    let row = table_row(&report, &format!("| {}.png | a dog |", md(ENSEMBLE_STEM)));
    assert_eq!(row.len(), 6, "{row:?}");
    assert!(row[2].contains(&format!("tiny-rn ×1: 0.2000 → {rn_score:.4}")), "{row:?}");
    assert!(row[2].contains(&format!("tiny-vit ×3: 0.3000 → {vit_score:.4}")), "{row:?}");
    assert_eq!(row[3], format!("{own:.4}"));
    assert_eq!(row[4], format!("held {held_score:.4}"));
    assert_eq!(row[5], format!("{held_score:.4}"));
    // The runs table lists the members' checkpoints; the negatives have their section.
    let run =
        report.lines().find(|l| l.starts_with(&format!("| {}.png | tiny-rn+", md(ENSEMBLE_STEM))));
    let run = run.unwrap_or_else(|| panic!("no run row: {report}"));
    assert!(run.contains("tiny-rn.pt (abababababab…); tiny-vit.pt (cdcdcdcdcdcd…)"), "{run}");
    assert!(report.contains("## Negative prompts") && report.contains("static noise"), "{report}");
    // The history with a column per member is drawn whole (no note about it).
    assert!(!report.contains(&format!("- {}.png:", md(ENSEMBLE_STEM))), "{report}");
    assert!(png_stats(&d.join("transfer.png")).2 > 20);

    // With a member not scoring here, "own" is the record's final similarity.
    let output = clip_within(&["compare", dir_arg, "--weights", &rn, "--device", "cpu"], DEADLINE);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report = self::report(d);
    let row = table_row(&report, &format!("| {}.png | a dog |", md(ENSEMBLE_STEM)));
    assert_eq!(row[3], "0.2750 (recorded)", "{row:?}");
    assert_eq!(row[4], "none scored here", "{row:?}");
}

/// An `ensemble` or `init` field that cannot be read is a warning, and the result is compared as
/// a single model's run from noise.
#[test]
fn malformed_ensemble_and_init_fields_are_read_as_missing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = dir.path();
    let records = [
        r#"{"prompt": "a dog", "model": "tiny-rn", "mode": "constrained", "ensemble": "tiny-rn",
            "init": 5, "negatives": "none", "negative_weight": "heavy"}"#,
        r#"{"prompt": "a cat", "model": "tiny-rn", "mode": "constrained",
            "ensemble": [{"weight": 1}], "init": [1, 2]}"#,
    ];
    for (i, r) in records.iter().enumerate() {
        hand_result(d, &format!("r{i}"), &square64(), r, None);
    }
    let output = compare_tiny(d, &[]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for (file, field) in [("r0", "ensemble"), ("r0", "init"), ("r1", "ensemble"), ("r1", "init")] {
        let needle = format!("warning: {file}.json: its `{field}` field cannot be read");
        assert!(stderr.contains(&needle), "{needle}: {stderr}");
    }
    let rows = csv_rows(&d.join("transfer.csv"));
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r[6] == "true" && r[7..].iter().all(|f| f.is_empty())), "{rows:?}");
    let report = report(d);
    assert!(!report.contains("## Ensembles") && !report.contains("## Photo starts"), "{report}");
}

/// A result that began from a photo: its `<stem>.start.png` is its start image (not a result, not
/// a warning), scored by every model, shown left of its edit in the contact sheet, and the report
/// gives ε, L∞ and L2. A missing or unreadable start image is a warning and a placeholder; a start
/// image without its result is a note.
#[test]
fn photo_starts_show_their_start_image_and_distance() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = dir.path();
    let colour = [10, 200, 30];
    let init = |extra: serde_json::Value| {
        let mut init = serde_json::json!({
            "photo": "/photos/tomato.jpg", "photo_sha256": "ef".repeat(32),
            "start_similarity": 0.19
        });
        for (k, v) in extra.as_object().expect("an object") {
            init[k] = v.clone();
        }
        init
    };
    let with_init = |prompt: &str, init: serde_json::Value| {
        serde_json::json!({"prompt": prompt, "model": "tiny-rn", "mode": "constrained", "init": init})
            .to_string()
    };
    let eps = 4.0 / 255.0;
    let x = init(
        serde_json::json!({"start_image": "x.start.png", "epsilon": eps, "linf": eps, "l2": 1.83}),
    );
    hand_result(d, "x", &square64(), &with_init("a red tomato", x), None);
    solid_png(&d.join("x.start.png"), 64, colour);
    // No budget, and no start image.
    let y = init(serde_json::json!({"epsilon": null, "linf": 0.5, "l2": 20.0}));
    hand_result(d, "y", &square64(), &with_init("a green tomato", y), None);
    // A start image that is not a PNG, and an edit beyond its budget.
    let w = init(serde_json::json!({"epsilon": 2.0 / 255.0, "linf": 3.0 / 255.0, "l2": 0.5}));
    hand_result(d, "w", &square64(), &with_init("a blue tomato", w), None);
    std::fs::write(d.join("w.start.png"), b"not a PNG").expect("write");
    // A start image whose result is gone, and a result from noise.
    solid_png(&d.join("z.start.png"), 64, colour);
    hand_result(d, "plain", &square64(), &record("a dog", "tiny-rn"), None);

    let rn = weights_flag("tiny-rn", "tiny-rn.pt");
    let vit = weights_flag("tiny-vit", "tiny-vit.pt");
    let dir_arg = d.to_str().expect("UTF-8");
    let output = clip_within(
        &[
            "compare",
            dir_arg,
            "--weights",
            &rn,
            "--weights",
            &vit,
            "--device",
            "cpu",
            "--cell-size",
            "300",
        ],
        DEADLINE,
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("scoring 4 image(s)"), "{stderr}");
    assert!(!stderr.contains("x.start.png") && !stderr.contains("has no z.start"), "{stderr}");
    assert!(stderr.contains("note: z.start.png: the start image of z.png"), "{stderr}");
    assert!(stderr.contains("warning: y.png: its record has `init`"), "{stderr}");
    assert!(stderr.contains("y.start.png is missing"), "{stderr}");
    assert!(stderr.contains("the start image of w.png is not scored"), "{stderr}");

    let rows = csv_rows(&d.join("transfer.csv"));
    let mut images: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    images.dedup();
    assert_eq!(images, ["plain.png", "w.png", "x.png", "y.png"]);
    for r in &rows {
        let (start, eps_f, linf, l2) = (&r[7], &r[8], &r[9], &r[10]);
        match r[0].as_str() {
            "x.png" => {
                let weights = if r[4] == "tiny-rn" { "tiny-rn.pt" } else { "tiny-vit.pt" };
                let expected = clip_score(weights, &d.join("x.start.png"), "a red tomato");
                let ours: f64 = start.parse().expect("a start similarity");
                assert!((ours - expected).abs() < 1e-5, "start {ours} vs clip score {expected}");
                assert!((eps_f.parse::<f64>().expect("ε") - eps).abs() < 1e-12);
                assert!((linf.parse::<f64>().expect("L∞") - eps).abs() < 1e-12);
                assert_eq!(l2, "1.83");
            }
            "y.png" => assert_eq!([start, eps_f, linf, l2], ["", "", "0.5", "20"]),
            "w.png" => assert!(start.is_empty() && !linf.is_empty(), "{r:?}"),
            _ => assert!(r[7..].iter().all(|f| f.is_empty()), "{r:?}"),
        }
    }

    // The start image is in the contact sheet: a cell of its colour, left of its edit's column.
    let (w, _, pixels) = png_pixels(&d.join("contact_sheet.png"));
    let start_pixels = pixels.chunks(3).filter(|p| *p == colour).count();
    assert!(start_pixels >= 300 * 300, "{start_pixels} pixels of the start image's colour");
    // The label column, a column of start images and one of edits (316 pixels each), a margin.
    assert_eq!(w, 200 + 2 * 316 + 8, "a start column and an edit column");

    let report = report(d);
    assert!(report.contains("## Photo starts"), "{report}");
    let x = table_row(&report, "| x.png | a red tomato |");
    assert_eq!(x[2..7], ["tomato.jpg", "4/255", "4.0/255", "1.83", "0.1900"], "{x:?}");
    assert!(x[7].contains(" → ") && x[8].contains(" → "), "{x:?}");
    let y = table_row(&report, "| y.png | a green tomato |");
    assert_eq!(y[2..6], ["tomato.jpg (start image missing)", "none", "127.5/255", "20.00"]);
    let w_row = table_row(&report, "| w.png | a blue tomato |");
    assert_eq!(w_row[4], "3.0/255 (beyond ε)", "{w_row:?}");
    assert!(!section(&report, "## Photo starts").contains("plain.png"), "{report}");
    assert!(report.contains("y.start.png is missing"), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Robustness probes.

/// `robustness.csv`'s header.
const ROBUSTNESS_HEADER: &str = "image,prompt,generated_by,mode,scored_by,probe,similarity";

/// The default probes, in their order.
const DEFAULT_PROBES: [&str; 5] = ["jpeg:75", "blur:1", "down:2", "rotate:5", "noise:0.03"];

/// robustness.csv's rows as (image, prompt, generated_by, mode, scored_by, probe, similarity); no
/// field here holds a comma.
fn robustness_rows(path: &Path) -> Vec<Vec<String>> {
    let csv = std::fs::read_to_string(path).expect("robustness.csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(ROBUSTNESS_HEADER));
    let rows: Vec<Vec<String>> =
        lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 7), "{rows:?}");
    rows
}

/// `image` written as a PNG into `dir` under `name`.
fn save_png(dir: &Path, name: &str, image: &image::RgbImage) -> PathBuf {
    let path = dir.join(name);
    image.save(&path).expect("PNG written");
    path
}

/// Short runs of each mode with both tiny models and a real photo, under the default probes:
/// robustness.csv has a row for every image × model × probe, each equal to `clip score` on the
/// perturbed image (made with the library's probes), and the report's "Robustness" tables are
/// the mean fractions kept computed from the two CSVs.
#[test]
fn robustness_probes_score_every_image_under_every_model() {
    use clip_app::compare as c;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = dir.path();
    make_results(d);
    let photo = fixture("images/wide300x200.png");
    let prompt = "A cute golden retriever";
    let real = format!("{}={prompt}", photo.display());
    let rn = weights_flag("tiny-rn", "tiny-rn.pt");
    let vit = weights_flag("tiny-vit", "tiny-vit.pt");
    let dir_arg = d.to_str().expect("UTF-8");
    let args = ["compare", dir_arg, "--weights", &rn, "--weights", &vit, "--real", &real];
    let output = clip_within(&[&args[..], &["--device", "cpu"]].concat(), DEADLINE);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("each also after 5 probe(s)"), "{stderr}");

    // Every image × model × probe, in transfer.csv's order, then the probes'.
    let transfer = csv_rows(&d.join("transfer.csv"));
    assert_eq!(transfer.len(), 9 * 2);
    let rows = robustness_rows(&d.join("robustness.csv"));
    assert_eq!(rows.len(), 9 * 2 * DEFAULT_PROBES.len(), "{rows:?}");
    for (t, chunk) in transfer.iter().zip(rows.chunks(DEFAULT_PROBES.len())) {
        for (r, probe) in chunk.iter().zip(DEFAULT_PROBES) {
            assert_eq!(r[..5], t[..5], "{r:?} vs {t:?}");
            assert_eq!(r[5], probe, "{r:?}");
            let sim: f64 = r[6].parse().expect("a number");
            assert!(sim.is_finite() && sim.abs() <= 1.0, "{r:?}");
        }
    }
    let real_rows = rows.iter().filter(|r| r[2] == "real photo" && r[3] == "real").count();
    assert_eq!(real_rows, 2 * DEFAULT_PROBES.len());

    // Each probe's score is `clip score` of the perturbed photo (rotate: the mean of ±5°).
    let img = clip_core::clip::preprocess::load_rgb(&photo).expect("readable");
    let views = tempfile::tempdir().expect("a temporary directory");
    let perturbed: [(&str, Vec<image::RgbImage>); 5] = [
        ("jpeg:75", vec![c::jpeg_round_trip(&img, 75).expect("encodes")]),
        ("blur:1", vec![c::gaussian_blur(&img, 1.0).expect("blurs")]),
        ("down:2", vec![c::down_up(&img, 2)]),
        ("rotate:5", vec![c::rotate_bilinear(&img, 5.0), c::rotate_bilinear(&img, -5.0)]),
        ("noise:0.03", vec![c::add_noise(&img, 0.03, c::noise_seed(&img))]),
    ];
    for (probe, images) in &perturbed {
        for (model, weights) in [("tiny-rn", "tiny-rn.pt"), ("tiny-vit", "tiny-vit.pt")] {
            let scores: Vec<f64> = images
                .iter()
                .enumerate()
                .map(|(k, im)| {
                    let name = format!("{}-{k}.png", probe.replace(':', "_"));
                    clip_score(weights, &save_png(views.path(), &name, im), prompt)
                })
                .collect();
            let expected = scores.iter().sum::<f64>() / scores.len() as f64;
            let row = rows
                .iter()
                .find(|r| r[2] == "real photo" && r[4] == model && r[5] == *probe)
                .unwrap_or_else(|| panic!("no row for {probe} under {model}"));
            let ours: f64 = row[6].parse().expect("a number");
            assert!((ours - expected).abs() < 1e-5, "{probe} {model}: {ours} vs {expected}");
        }
    }

    // The report's tables: the mean fraction kept per row and probe, from the CSVs.
    let report = report(d);
    let robustness = section(&report, "## Robustness");
    assert!(robustness.contains("![Robustness](robustness.png)"), "{robustness}");
    let plain = |image: &str, model: &str| -> f64 {
        let t = transfer.iter().find(|t| t[0] == image && t[4] == model).expect("a transfer row");
        t[5].parse().expect("a number")
    };
    for model in ["tiny-rn", "tiny-vit"] {
        let at = robustness.find(&format!("Scored by {model}:")).expect("a table per model");
        let table = &robustness[at..];
        for (generated_by, mode, label) in [
            ("tiny-rn", "constrained", "| tiny-rn · constrained |"),
            ("tiny-vit", "unconstrained", "| tiny-vit · unconstrained |"),
            ("real photo", "real", "| real photo |"),
        ] {
            let cells = table_row(table, label);
            assert_eq!(cells.len(), 1 + DEFAULT_PROBES.len(), "{cells:?}");
            for (cell, probe) in cells[1..].iter().zip(DEFAULT_PROBES) {
                let (mut kept, mut left_out) = (Vec::new(), 0);
                for r in rows.iter().filter(|r| r[2] == generated_by && r[3] == mode) {
                    if r[4] == model && r[5] == probe {
                        let base = plain(&r[0], model);
                        if base >= c::KEPT_MIN_BASELINE {
                            kept.push(r[6].parse::<f64>().expect("a number") / base);
                        } else {
                            left_out += 1;
                        }
                    }
                }
                let mean = match kept.len() {
                    0 => "–".to_string(),
                    n => format!("{:.3}", kept.iter().sum::<f64>() / n as f64),
                };
                let expected = match left_out {
                    0 => mean,
                    l => format!("{mean} ({l} of {} left out)", l + kept.len()),
                };
                assert_eq!(*cell, expected, "{model} {label} {probe}");
            }
        }
    }
    let (w, h, colours) = png_stats(&d.join("robustness.png"));
    // Two panels of five rows (four groups and the real photos), five probe columns.
    assert!((800..2000).contains(&w) && (700..2000).contains(&h), "robustness {w}x{h}");
    assert!(colours > 20, "robustness.png has {colours} colours");
}

/// `--probes none` scores no probe (robustness.csv is its header, the report says so); a bad
/// `--probes` is a usage error naming the probe, before anything is read or written.
#[test]
fn probes_can_be_turned_off_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = dir.path();
    hand_result(d, "fine", &square64(), &record("a dog", "tiny-rn"), None);
    let output = compare_tiny(d, &["--probes", "none"]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("probe(s)") && !stderr.contains("warning"), "{stderr}");
    let csv = std::fs::read_to_string(d.join("robustness.csv")).expect("robustness.csv");
    assert_eq!(csv, format!("{ROBUSTNESS_HEADER}\n"));
    assert!(report(d).contains("No probes were applied (`--probes none`)."));
    assert!(png_stats(&d.join("robustness.png")).2 > 2);

    // Chosen probes, in the order given.
    let output = compare_tiny(d, &["--probes", "rotate:90,blur:1.5"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let probes: Vec<String> =
        robustness_rows(&d.join("robustness.csv")).into_iter().map(|r| r[5].clone()).collect();
    assert_eq!(probes, ["rotate:90", "blur:1.5"]);

    let cases = [
        ("sharpen:2", "unknown probe \"sharpen:2\""),
        ("jpeg:75,blur:x", "probe \"blur:x\": SIGMA must be a number > 0"),
        ("down:1", "probe \"down:1\": K must be an integer factor ≥ 2"),
        ("jpeg:75,jpeg:75", "probe jpeg:75 is given twice"),
        ("none,blur:1", "`none` turns the probes off"),
    ];
    for (bad, needle) in cases {
        let fresh = tempfile::tempdir().expect("a temporary directory");
        hand_result(fresh.path(), "fine", &square64(), &record("a dog", "tiny-rn"), None);
        let output = compare_tiny(fresh.path(), &["--probes", bad]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{bad}: {stderr}");
        assert!(errors[0].contains("--probes") && errors[0].contains(needle), "{bad}: {stderr}");
        assert!(!fresh.path().join("transfer.csv").exists() && output.stdout.is_empty());
    }
}
