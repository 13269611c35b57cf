//! Issue 26, class 8 — special files and text, through the real `clip` binary: a FIFO (or any
//! non-regular file) named as an image, a template list or a SPEC is refused at once instead of
//! blocking forever; a UTF-8 BOM is no part of a prompts file's first prompt; `--dry-run`'s
//! tab-separated lines escape tabs, newlines and control characters; `--name` may not start with
//! `-`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../clip-core/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// `clip ARGS` in `dir`, killed (and the test failed) if it has not ended within a minute.
fn clip(args: &[&str], dir: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("CLIP_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/none")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("clip runs");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            panic!("clip {args:?} still runs after a minute: it blocked");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().expect("mkfifo").success());
}

#[test]
fn a_fifo_is_refused_where_a_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("photo.png");
    mkfifo(&fifo);
    let fifo = fifo.display().to_string();
    let rn = fixture("models/tiny-rn.pt");
    let image = fixture("preprocess/rgb_224x224.png");
    let spec = dir.path().join("spec.toml");
    mkfifo(&spec);
    let spec = spec.display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["generate", "--weights", &rn, "--device", "cpu", "--steps", "1", "--init", &fifo],
        vec!["classify", "--weights", &rn, "--device", "cpu", "--image", &fifo],
        vec![
            "classify",
            "--weights",
            &rn,
            "--device",
            "cpu",
            "--image",
            &image,
            "--templates",
            &fifo,
        ],
        vec!["score", "--weights", &rn, "--device", "cpu", "--image", &fifo, "--text", "a dog"],
        vec!["generate", "--weights", &fifo, "--device", "cpu", "--steps", "1"],
        vec!["sweep", &spec, "--dry-run"],
    ];
    for args in cases {
        let out = clip(&args, dir.path());
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn prompts_files_lose_their_bom_and_dry_run_lines_escape_what_would_split_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prompts.txt"), "\u{feff}a dog\n").unwrap();
    std::fs::write(
        dir.path().join("spec.toml"),
        format!(
            "models = [\"tiny\"]\nprompts_file = \"prompts.txt\"\nsteps = 2\n\n[weights]\ntiny = {:?}\n",
            fixture("models/tiny-rn.pt")
        ),
    )
    .unwrap();
    let out = clip(&["sweep", "spec.toml", "--dry-run"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = stdout.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 6, "{stdout:?}");
    assert_eq!(fields[5], "a dog", "the BOM stays out of the prompt");

    std::fs::write(
        dir.path().join("spec.toml"),
        format!(
            "models = [\"tiny\"]\nprompts = [\"a\\tdog\\nwith\\\\ a \\u001b[31m tail\"]\nsteps = 2\n\n[weights]\ntiny = {:?}\n",
            fixture("models/tiny-rn.pt")
        ),
    )
    .unwrap();
    let out = clip(&["sweep", "spec.toml", "--dry-run"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    let fields: Vec<&str> = stdout.trim_end_matches('\n').split('\t').collect();
    assert_eq!(fields.len(), 6, "{stdout:?}");
    assert_eq!(fields[5], "a\\tdog\\nwith\\\\ a \\x1b[31m tail");
}

#[test]
fn a_name_may_not_start_with_a_dash() {
    let dir = tempfile::tempdir().unwrap();
    let rn = fixture("models/tiny-rn.pt");
    let out = clip(&["generate", "--weights", &rn, "--device", "cpu", "--name=-rf"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not starting with '.' or '-'"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing is written");
}
