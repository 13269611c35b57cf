//! The `clip` tool on hostile and broken checkpoints and bad flags: a clear `error: …` naming the
//! file and the problem, exit status 1 (2 for clap's usage errors), never a panic or a signal, and
//! nothing executed from a pickle. (Missing keys, wrong shapes, a truncated archive and an unknown
//! model name are in `cli.rs`; the experiment binaries' cases in `rn50/tests/bad_input.rs`.)
#[path = "../../clip-core/tests/common/hostile_files.rs"]
mod hostile_files;
use hostile_files::{deeply_nested_pickle, huge_length_pickle, reduce_pickle, write_zip};

use clip_core::clip::excerpt::excerpt;
use clip_core::clip::weights::StateDict;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clip-core/tests/fixtures/models").join(name)
}

fn clip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(args)
        .env("CLIP_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/none")
        .output()
        .expect("clip runs")
}

fn embed(weights: &Path) -> Output {
    clip(&["embed", "--weights", weights.to_str().unwrap(), "--device", "cpu", "--text", "a"])
}

fn assert_clean_failure(output: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "expected failure, got success: {err}");
    assert!(output.status.code().is_some(), "killed by a signal: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(output.stdout.is_empty(), "printed before failing");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
}

#[test]
fn a_pickle_that_runs_code_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("MARKER");
    let touch = format!("touch {}", marker.display());
    let cases = [
        ("os", "system", touch.as_str()),
        ("posix", "system", touch.as_str()),
        ("builtins", "eval", "__import__('os').system('true')"),
        ("builtins", "exec", "import os"),
        ("subprocess", "call", "true"),
        ("torch", "load", "x"),
    ];
    for (module, name, arg) in cases {
        let evil = dir.path().join("evil.pt");
        write_zip(&evil, &[("evil/data.pkl", &reduce_pickle(module, name, arg))]);
        let output = embed(&evil);
        assert_clean_failure(&output, &["evil.pt", &format!("`{module}.{name}`")]);
        assert!(!marker.exists(), "{module}.{name} ran");
    }
}

#[test]
fn broken_checkpoints_are_named_with_their_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let no_pkl = d.join("nopkl.pt");
    write_zip(&no_pkl, &[("archive/version", b"3\n")]);
    let deep = d.join("deep.pt");
    write_zip(&deep, &[("a/data.pkl", &deeply_nested_pickle())]);
    let huge = d.join("huge.pt");
    write_zip(&huge, &[("a/data.pkl", &huge_length_pickle())]);
    let cases: [(&Path, &[&str]); 5] = [
        (Path::new("/nonexistent/x.pt"), &["/nonexistent/x.pt", "does not exist"]),
        (d, &["is a directory"]),
        (&no_pkl, &["nopkl.pt", "data.pkl"]),
        (&deep, &["deep.pt", "deeper than"]),
        (&huge, &["huge.pt"]),
    ];
    for (path, needles) in cases {
        assert_clean_failure(&embed(path), needles);
    }
}

#[test]
fn an_extra_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.safetensors");
    let sd = StateDict::load(&fixture("tiny-vit.pt")).unwrap();
    let extra = tch::Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu));
    let mut named: Vec<(&str, &tch::Tensor)> = sd.iter().collect();
    named.push(("visual.surprise", &extra));
    tch::Tensor::write_safetensors(&named, &path).unwrap();
    assert_clean_failure(&embed(&path), &["extra.safetensors", "visual.surprise"]);
}

#[test]
fn bad_flags_are_refused() {
    let weights = fixture("tiny-rn.pt");
    let w = weights.to_str().unwrap();
    let long = "word ".repeat(100);
    let output = clip(&["embed", "--weights", w, "--device", "cpu", "--text", &long]);
    // The prompt is named by an excerpt (its first 80 characters and its length).
    assert_clean_failure(&output, &["too long for context length 77", &excerpt(&long)]);
    let output = clip(&["tokenize", &long]);
    assert_clean_failure(&output, &["too long"]);
    let output = clip(&["embed", "--weights", w, "--device", "npu"]);
    assert_clean_failure(&output, &["npu", "cpu", "cuda", "auto"]);
    assert_eq!(output.status.code(), Some(2));
    if !tch::Cuda::is_available() {
        let output = clip(&["embed", "--weights", w, "--device", "cuda"]);
        assert_clean_failure(&output, &["no CUDA device"]);
    }
    let output = clip(&["embed", "--model", "ViT-H/14", "--device", "cpu"]);
    assert_clean_failure(&output, &["ViT-H/14", "RN50", "ViT-L/14@336px"]);
}

/// A deflated `data.pkl` (8 MiB of zeros) whose headers claim 16 bytes: refused after reading at
/// most what the header claims, instead of inflating whatever the stream holds.
#[test]
fn an_entry_larger_than_its_header_says_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.pt");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("a/data.pkl", options).unwrap();
        zip.write_all(&vec![0u8; 8 << 20]).unwrap();
        zip.finish().unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let patch = |bytes: &mut Vec<u8>, signature: &[u8], offset: usize| {
        let at = bytes.windows(4).position(|w| w == signature).unwrap() + offset;
        bytes[at..at + 4].copy_from_slice(&16u32.to_le_bytes());
    };
    patch(&mut bytes, b"PK\x03\x04", 22);
    patch(&mut bytes, b"PK\x01\x02", 24);
    std::fs::write(&path, &bytes).unwrap();
    assert_clean_failure(&embed(&path), &["bomb.pt", "a/data.pkl"]);
}

/// `--model NAME` through a mirror that serves the wrong bytes: refused, nothing kept in the cache.
#[test]
fn a_download_with_the_wrong_checksum_is_refused_and_not_kept() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/mirror", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let reply = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\njunk";
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(["embed", "--model", "RN50", "--device", "cpu", "--text", "a"])
        .env("HOME", home.path())
        .env("CLIP_DOWNLOAD_BASE_URL", &base)
        .output()
        .unwrap();
    assert_clean_failure(&output, &["SHA-256", "nothing was saved", &base]);
    let cache = home.path().join(".cache/clip");
    let left: Vec<_> = std::fs::read_dir(&cache).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// A 120 KB text is named by an excerpt in every message, never echoed whole: `clip tokenize`,
/// `clip embed` and `clip score` (too long), and clap's flag errors.
#[test]
fn a_huge_text_is_not_echoed_whole() {
    let weights = fixture("tiny-rn.pt");
    let w = weights.to_str().unwrap();
    let image = fixture("images/square32.png");
    let image = image.to_str().unwrap();
    let huge = "word ".repeat(24_000);
    let unspaced = "x".repeat(120_000);
    for text in [&huge, &unspaced] {
        let runs: [&[&str]; 5] = [
            &["tokenize", text],
            &["embed", "--weights", w, "--device", "cpu", "--text", text],
            &["score", "--weights", w, "--device", "cpu", "--image", image, "--text", text],
            &["compare", ".", "--weights", text],
            &["compare", ".", "--real", text],
        ];
        for args in runs {
            let output = clip(args);
            let err = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{}: succeeded", args[0]);
            assert!(!err.contains("panicked"), "panic: {err}");
            assert!(err.len() < 2048, "{}: stderr holds {} bytes", args[0], err.len());
            assert!(err.contains("characters)"), "{}: {err}", args[0]);
        }
    }
}
