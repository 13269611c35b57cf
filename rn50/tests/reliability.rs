//! The experiment binaries against the faults of "Reliability, round 2", each as a class: signals
//! at any moment (once or twice), step counts up to `u64::MAX`, weights of another architecture,
//! and results that must never replace one another (lossy prompt names, another prompt's record,
//! two runs at once, temporary files of killed runs). rn50's own binaries, a random-weight RN50.

#[path = "../../clip-core/tests/common/binaries.rs"]
mod binaries;
#[path = "../../clip-core/tests/common/checkpoints.rs"]
mod checkpoints;
#[path = "../../clip-core/tests/common/processes.rs"]
mod processes;
#[path = "../../clip-core/tests/common/tree.rs"]
mod tree;
use processes::{kill, spawn_until_first_step, wait};
use tree::files;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

static CONSTRAINED: LazyLock<PathBuf> = LazyLock::new(|| {
    binaries::own_binary(env!("CARGO_BIN_EXE_constrained"), "constrained", "RN50")
});
static UNCONSTRAINED: LazyLock<PathBuf> = LazyLock::new(|| {
    binaries::own_binary(env!("CARGO_BIN_EXE_unconstrained"), "unconstrained", "RN50")
});
static RN50: LazyLock<PathBuf> = LazyLock::new(|| checkpoints::random_checkpoint("RN50"));

/// The binary with a private HOME, a dead download mirror, the random RN50 and the CPU.
fn command(bin: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("HOME", dir)
        .env("CLIP_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/none")
        .args(["--device", "cpu", "--seed", "1", "--weights"])
        .arg(&*RN50);
    processes::default_sigint(&mut cmd);
    cmd
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// --- weights of another architecture (fault 5) --------------------------------------------------

#[test]
fn another_architectures_weights_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let vit = checkpoints::random_checkpoint("ViT-B/32");
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../clip-core/tests/fixtures/models/tiny-rn.pt");
    for (weights, named) in [(&vit, "a ViT-B/32 network"), (&tiny, "none of the released models")] {
        for bin in [&*CONSTRAINED, &*UNCONSTRAINED] {
            let output = Command::new(bin)
                .env("HOME", dir.path())
                .args(["--device", "cpu", "--steps", "1", "--weights"])
                .arg(weights)
                .arg("--out")
                .arg(dir.path().join("out"))
                .output()
                .unwrap();
            let err = stderr(&output);
            assert_eq!(output.status.code(), Some(1), "{err}");
            assert!(err.contains(named) && err.contains("for RN50"), "{err}");
            assert!(err.contains(&weights.display().to_string()), "{err}");
            assert!(!dir.path().join("out").exists(), "a refused run left its directories");
        }
    }
}

// --- step counts (fault 4) ----------------------------------------------------------------------

/// A billion steps or `u64::MAX` is "run until I press Ctrl-C": nothing is reserved per step, and
/// the run saves when interrupted, its history bounded.
#[test]
fn huge_step_counts_run_until_interrupted() {
    for steps in ["1000000000", "18446744073709551615", "10001"] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = command(&UNCONSTRAINED, dir.path());
        cmd.args(["--steps", steps, "--log-every", "10", "--prompt", "a red tomato", "--out"])
            .arg(dir.path().join("out"));
        let (child, reader) = spawn_until_first_step(cmd);
        let pid = child.id();
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        kill(&child, "-INT");
        let (status, err) = wait(child, Duration::from_secs(120));
        let _ = reader.join();
        assert_eq!(status.code(), Some(130), "{steps}: {err}");
        let peak_kib: u64 = rss
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        assert!(peak_kib < 8 << 20, "{steps}: {peak_kib} KiB resident");
        let json = dir.path().join("out/RN50/unconstrained_RN50_a_red_tomato.json");
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        assert_eq!(record["steps"].to_string(), steps);
        assert_eq!(record["interrupted"], true);
        let done = record["steps_done"].as_u64().unwrap();
        let csv = std::fs::read_to_string(
            dir.path().join("out/RN50/unconstrained_RN50_a_red_tomato.csv"),
        )
        .unwrap();
        assert_eq!(csv.lines().count() as u64, done + 1, "{steps}: one row per step done");
    }
}

// --- signals (fault 2) --------------------------------------------------------------------------

/// What an interrupted run may leave: nothing, or complete results; with a second signal (exit at
/// once, nothing saved) possibly temporary and lock files too, but never a crash.
fn check_interrupted(
    out: &Path,
    status: std::process::ExitStatus,
    err: &str,
    twice: bool,
    what: &str,
) {
    let handled = status.code() == Some(130);
    // Before the handler is installed the default disposition ends the process by the signal.
    let default = matches!(status.signal(), Some(2) | Some(15)) && err.trim().is_empty();
    assert!(handled || default, "{what}: {status:?}\n{err}");
    for bad in ["panicked", "libtorch", "corrupted", "Assertion", "double free", "Segmentation"] {
        assert!(!err.contains(bad), "{what}: {bad:?} in\n{err}");
    }
    let written = files(out);
    let results: Vec<&String> = written
        .iter()
        .filter(|f| [".png", ".json", ".csv"].iter().any(|e| f.ends_with(e)))
        .collect();
    if !twice {
        assert!(
            written.iter().all(|f| !f.contains(".tmp-") && !f.ends_with(".lock")),
            "{what}: {written:?}"
        );
        assert!(results.len().is_multiple_of(3), "{what}: incomplete results {written:?}");
        if results.is_empty() {
            assert!(!out.exists(), "{what}: an empty output directory was left: {written:?}");
        }
    }
}

/// SIGINT or SIGTERM at 16 moments from the start to the first steps (before the handler,
/// while loading, hashing, encoding, optimising), once or twice in quick succession.
#[test]
fn signals_at_any_moment_never_crash() {
    for i in 0..16u64 {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let signal = if i % 2 == 0 { "-INT" } else { "-TERM" };
        let twice = i % 4 >= 2;
        let mut cmd = command(&CONSTRAINED, dir.path());
        cmd.args(["--steps", "1000000", "--log-every", "10", "--prompt", "a red tomato", "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(i * 300));
        kill(&child, signal);
        if twice {
            std::thread::sleep(Duration::from_millis(20 + 40 * (i % 3)));
            let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
        }
        let (status, err) = wait(child, Duration::from_secs(120));
        let what = format!("{signal} after {} ms{}", i * 300, if twice { ", twice" } else { "" });
        check_interrupted(&out, status, &err, twice, &what);
    }
}

// --- results never replace one another (fault 6) ----------------------------------------------

fn quick(bin: &Path, dir: &Path, prompt: &str) -> Output {
    command(bin, dir)
        .args(["--steps", "1", "--prompt", prompt, "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap()
}

/// Prompts whose seed names collide (`a/b` and `a-b`, `.` and `_`, `a b` and `a_b`) get different
/// files across runs; each record holds its own prompt.
#[test]
fn different_prompts_never_share_a_file_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = ["a/b", "a-b", ".", "_", "a b", "a_b"];
    for prompt in prompts {
        let output = quick(&UNCONSTRAINED, dir.path(), prompt);
        assert!(output.status.success(), "{prompt:?}: {}", stderr(&output));
    }
    let records: Vec<String> = files(&dir.path().join("out"))
        .into_iter()
        .filter(|f| f.ends_with(".json"))
        .map(|f| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.path().join("out").join(&f)).unwrap())
                    .unwrap();
            v["prompt"].as_str().unwrap().to_string()
        })
        .collect();
    let mut expected: Vec<String> = prompts.iter().map(|p| p.to_string()).collect();
    let mut got = records.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "every prompt kept its own result");
    assert!(files(&dir.path().join("out")).iter().any(|f| f == "RN50/unconstrained_RN50_a-b.png"));
}

/// A record of another prompt under the name a run would write (an older version's naming, a
/// hand-made file): the run refuses before any work, and the file is untouched.
#[test]
fn another_prompts_record_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("out/RN50");
    std::fs::create_dir_all(&results).unwrap();
    let json = results.join("unconstrained_RN50_x.json");
    let theirs = br#"{"prompt": "y", "model": "RN50"}"#;
    std::fs::write(&json, theirs).unwrap();
    let output = quick(&UNCONSTRAINED, dir.path(), "x");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("unconstrained_RN50_x.json") && err.contains("\"y\""), "{err}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("Step"), "it ran first");
    assert_eq!(std::fs::read(&json).unwrap(), theirs);
    assert_eq!(files(&dir.path().join("out")), ["RN50/unconstrained_RN50_x.json"]);
}

/// Two runs writing the same result at once: the second is refused, naming the result; the first
/// goes on and saves.
#[test]
fn two_runs_of_the_same_result_at_once_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&CONSTRAINED, dir.path());
    cmd.args(["--steps", "1000000", "--log-every", "10", "--prompt", "a red tomato", "--out"])
        .arg(dir.path().join("out"));
    let (first, reader) = spawn_until_first_step(cmd);
    let second = command(&CONSTRAINED, dir.path())
        .args(["--steps", "1", "--prompt", "a red tomato", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("another run is writing constrained_RN50_a_red_tomato"), "{err}");
    // Another prompt into the same directory at the same time is fine.
    let other = quick(&CONSTRAINED, dir.path(), "a snowy peak");
    assert!(other.status.success(), "{}", stderr(&other));
    kill(&first, "-INT");
    let (status, err) = wait(first, Duration::from_secs(120));
    let _ = reader.join();
    assert_eq!(status.code(), Some(130), "{err}");
    let written = files(&dir.path().join("out"));
    assert_eq!(written.len(), 6, "two complete results, no lock or temporary file: {written:?}");
}

/// Temporary files a killed run left for a result are removed by the next run of that result
/// (and said so); another result's are left alone; a stale lock does not block.
#[test]
fn temporaries_of_a_killed_run_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("out/RN50");
    std::fs::create_dir_all(&results).unwrap();
    let stale = [".tmp-unconstrained_RN50_x.png.Ab12Cd", ".tmp-unconstrained_RN50_x.json.Zz9Yy8"];
    for name in stale {
        std::fs::write(results.join(name), b"half written").unwrap();
    }
    let other = results.join(".tmp-unconstrained_RN50_y.png.Qq1Ww2");
    std::fs::write(&other, b"another result's").unwrap();
    std::fs::write(results.join(".unconstrained_RN50_x.lock"), b"").unwrap();
    let output = quick(&UNCONSTRAINED, dir.path(), "x");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("removed 2 temporary file(s)"), "{}", stderr(&output));
    let mut expected = vec![
        "RN50/.tmp-unconstrained_RN50_y.png.Qq1Ww2".to_string(),
        "RN50/unconstrained_RN50_x.csv".into(),
        "RN50/unconstrained_RN50_x.json".into(),
        "RN50/unconstrained_RN50_x.png".into(),
    ];
    expected.sort();
    assert_eq!(files(&dir.path().join("out")), expected);
}
