//! The experiment binaries (`constrained`, `unconstrained`) on everything a user can get wrong or
//! that can go wrong during a run: hostile and broken checkpoints, bad flags, unwritable or full
//! output directories, Ctrl-C and SIGTERM. Each case checks the exit status (never a signal, never
//! a panic), the message, and that no stray or partial file is left.
//!
//! The three model crates' binaries share `target/<profile>/constrained`, so these tests find
//! rn50's own (`common/binaries.rs`); a run that must succeed gets a random-weight RN50
//! checkpoint (`common/checkpoints.rs`), since the binary refuses other architectures.
//! The `clip` tool's cases are in `clip-app/tests/bad_input.rs`.

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
#[path = "../../clip-core/tests/common/hostile_files.rs"]
mod hostile_files;
use hostile_files::{
    deeply_nested_pickle, huge_length_pickle, reduce_pickle, tensor_pickle, write_zip,
};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

static CONSTRAINED_BIN: LazyLock<String> = LazyLock::new(|| {
    binaries::own_binary(env!("CARGO_BIN_EXE_constrained"), "constrained", "RN50")
        .display()
        .to_string()
});
static UNCONSTRAINED_BIN: LazyLock<String> = LazyLock::new(|| {
    binaries::own_binary(env!("CARGO_BIN_EXE_unconstrained"), "unconstrained", "RN50")
        .display()
        .to_string()
});
/// A random-weight RN50 in OpenAI's keys: what a successful run loads.
static RN50: LazyLock<PathBuf> = LazyLock::new(|| checkpoints::random_checkpoint("RN50"));

/// rn50's own `constrained` binary.
fn constrained() -> &'static str {
    &CONSTRAINED_BIN
}

/// rn50's own `unconstrained` binary.
fn unconstrained() -> &'static str {
    &UNCONSTRAINED_BIN
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clip-core/tests/fixtures/models").join(name)
}

/// The binary with a private HOME (so nothing is downloaded into the real cache) and a download
/// mirror nobody listens on, unless a test sets its own.
fn command(bin: &str, home: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("HOME", home).env("CLIP_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/none");
    processes::default_sigint(&mut cmd);
    cmd
}

/// A short run of the random RN50 writing under `dir/out`; `extra` flags replace the defaults.
fn run(bin: &str, dir: &Path, extra: &[&str]) -> Output {
    let out = dir.join("out").display().to_string();
    let weights = RN50.display().to_string();
    let defaults = [
        ("--device", "cpu"),
        ("--seed", "1"),
        ("--steps", "2"),
        ("--prompt", "a red tomato"),
        ("--out", out.as_str()),
        ("--weights", weights.as_str()),
    ];
    let mut cmd = command(bin, dir);
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra).output().expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_clean_failure(output: &Output, needles: &[&str]) {
    let err = stderr(output);
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "expected failure, got success: {err}");
    assert!(output.status.code().is_some(), "killed by a signal: {err}");
    assert!(!err.contains("panicked") && !out.contains("panicked"), "panic: {err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
}

fn outputs(dir: &Path) -> Vec<String> {
    files(&dir.join("out"))
}

// --- checkpoints ----------------------------------------------------------------------------

/// A checkpoint whose `data.pkl` runs `touch <marker>` if unpickled by Python.
fn evil_checkpoint(dir: &Path, marker: &Path) -> PathBuf {
    let path = dir.join("evil.pt");
    let pickle = reduce_pickle("os", "system", &format!("touch {}", marker.display()));
    write_zip(&path, &[("evil/data.pkl", &pickle), ("evil/version", b"3\n")]);
    path
}

#[test]
fn a_pickle_that_runs_code_is_refused_and_nothing_runs() {
    for bin in [constrained(), unconstrained()] {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("MARKER");
        let evil = evil_checkpoint(dir.path(), &marker);
        let output = run(bin, dir.path(), &["--weights", evil.to_str().unwrap()]);
        assert_clean_failure(&output, &["evil.pt", "os.system"]);
        assert!(!marker.exists(), "the pickle ran code");
        assert!(outputs(dir.path()).is_empty(), "{:?}", outputs(dir.path()));
    }
}

#[test]
fn broken_checkpoints_are_named_with_their_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let truncated = d.join("truncated.pt");
    let bytes = std::fs::read(fixture("tiny-rn.pt")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let no_pkl = d.join("nopkl.pt");
    write_zip(&no_pkl, &[("archive/version", b"3\n")]);
    let eval = d.join("eval.pt");
    write_zip(&eval, &[("a/data.pkl", &reduce_pickle("builtins", "eval", "1+1"))]);
    let deep = d.join("deep.pt");
    write_zip(&deep, &[("a/data.pkl", &deeply_nested_pickle())]);
    let huge = d.join("huge.pt");
    write_zip(&huge, &[("a/data.pkl", &huge_length_pickle())]);
    let empty = d.join("empty.pt");
    std::fs::write(&empty, b"").unwrap();
    let text = d.join("text.pt");
    std::fs::write(&text, b"<html>404 Not Found</html>").unwrap();
    let cases: [(&Path, &[&str]); 9] = [
        (Path::new("/nonexistent/model.pt"), &["/nonexistent/model.pt", "does not exist"]),
        (d, &["is a directory"]),
        (&truncated, &["truncated.pt", "corrupt or truncated"]),
        (&no_pkl, &["nopkl.pt", "data.pkl"]),
        (&eval, &["eval.pt", "builtins.eval"]),
        (&deep, &["deep.pt", "deeper than"]),
        (&huge, &["huge.pt"]),
        (&empty, &["empty.pt", "empty"]),
        (&text, &["text.pt", "not a checkpoint"]),
    ];
    for (path, needles) in cases {
        let output = run(constrained(), d, &["--weights", path.to_str().unwrap()]);
        assert_clean_failure(&output, needles);
        assert!(outputs(d).is_empty(), "{}: {:?}", path.display(), outputs(d));
        // Nor the directories it created for its outputs (`out/<model>/`).
        assert!(!d.join("out").exists(), "{}: the output directory was left", path.display());
    }
}

/// `{"w": tensor}` as torch.save writes it: `numel` elements of `storage_class` in storage "0",
/// viewed as a vector of `size` from `offset`.
fn tensor_checkpoint(path: &Path, storage_class: &str, numel: u8, offset: u8, size: u8) {
    let pickle = tensor_pickle(storage_class, numel, offset, &[size], &[1]);
    write_zip(path, &[("a/data.pkl", &pickle), ("a/data/0", &[0u8; 16])]);
}

#[test]
fn bad_tensors_and_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let past_end = d.join("past_end.pt");
    tensor_checkpoint(&past_end, "FloatStorage", 4, 3, 2);
    let dtype = d.join("dtype.pt");
    tensor_checkpoint(&dtype, "ComplexFloatStorage", 2, 0, 2);
    // A valid tensor file, but not a CLIP model: every key is missing, `w` is extra.
    let keys = d.join("keys.pt");
    tensor_checkpoint(&keys, "FloatStorage", 4, 0, 4);
    let cases: [(&Path, &[&str]); 3] = [
        (&past_end, &["past_end.pt", "`w`", "outside its storage"]),
        (&dtype, &["dtype.pt", "`w`", "not supported"]),
        (&keys, &["keys.pt", "is missing", "not an OpenAI CLIP state dict"]),
    ];
    for (path, needles) in cases {
        let output = run(unconstrained(), d, &["--weights", path.to_str().unwrap()]);
        assert_clean_failure(&output, needles);
        assert!(outputs(d).is_empty(), "{}: {:?}", path.display(), outputs(d));
        // Nor the directories it created for its outputs (`out/<model>/`).
        assert!(!d.join("out").exists(), "{}: the output directory was left", path.display());
    }
}

/// A mirror that answers every request with 200 and the same wrong bytes.
fn serve_wrong_bytes() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/mirror", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let body = b"not the model";
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body));
        }
    });
    base
}

#[test]
fn a_download_with_the_wrong_checksum_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve_wrong_bytes();
    let out = dir.path().join("out");
    let output = command(constrained(), dir.path())
        .env("CLIP_DOWNLOAD_BASE_URL", &base)
        .args(["--device", "cpu", "--steps", "1", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_clean_failure(&output, &["SHA-256", "nothing was saved", &base]);
    let cache = dir.path().join(".cache/clip");
    assert!(files(&cache).is_empty(), "{:?}", files(&cache));
    assert!(outputs(dir.path()).is_empty());
}

// --- arguments ------------------------------------------------------------------------------

#[test]
fn bad_numbers_and_names_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &[&str]); 11] = [
        (&["--steps", "0"], &["--steps", "at least 1"]),
        (&["--steps", "-5"], &["--steps", "at least 1, not -5"]),
        (&["--steps", "many"], &["--steps", "not a whole number"]),
        (&["--learning-rate", "0"], &["--learning-rate", "greater than 0"]),
        (&["--learning-rate", "-0.1"], &["--learning-rate", "greater than 0"]),
        (&["--learning-rate", "NaN"], &["--learning-rate", "finite"]),
        (&["--learning-rate", "inf"], &["--learning-rate", "finite"]),
        (&["--tv-weight", "-1"], &["--tv-weight", "0 or more"]),
        (&["--tv-weight", "nan"], &["--tv-weight", "finite"]),
        (&["--device", "tpu"], &["--device", "cpu", "cuda", "auto"]),
        (&["--log-every", "0"], &["--log-every"]),
    ];
    for (args, needles) in cases {
        let output = run(constrained(), dir.path(), args);
        assert_clean_failure(&output, needles);
        assert_eq!(output.status.code(), Some(2), "{args:?}: clap's usage error");
        assert!(!dir.path().join("out").exists(), "{args:?}");
    }
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back() {
    if tch::Cuda::is_available() {
        return; // Only meaningful where there is no GPU.
    }
    let dir = tempfile::tempdir().unwrap();
    let output = run(constrained(), dir.path(), &["--device", "cuda"]);
    assert_clean_failure(&output, &["--device cuda", "no CUDA device"]);
    // auto runs on the CPU with a warning.
    let output = run(unconstrained(), dir.path(), &["--device", "auto"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("warning: no CUDA device available, running on the CPU"));
}

#[test]
fn an_over_long_prompt_is_named_and_an_empty_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let long = "a very long prompt ".repeat(20);
    let output = run(constrained(), dir.path(), &["--prompt", &long]);
    assert_clean_failure(
        &output,
        &["too long for context length 77", &clip_core::clip::excerpt::excerpt(&long)],
    );
    assert!(outputs(dir.path()).is_empty());
    let output = run(unconstrained(), dir.path(), &["--steps", "1", "--prompt", ""]);
    assert!(output.status.success(), "{}", stderr(&output));
    let written = outputs(dir.path());
    assert!(written.iter().any(|f| f.ends_with("_.png")), "{written:?}");
}

// --- outputs --------------------------------------------------------------------------------

/// No temporary (`.tmp…`) or probe file, and exactly one PNG, JSON and CSV per prompt.
fn assert_complete(dir: &Path, prompts: usize) {
    let written = outputs(dir);
    let count = |ext: &str| written.iter().filter(|f| f.ends_with(ext)).count();
    assert_eq!((count(".png"), count(".json"), count(".csv")), (prompts, prompts, prompts));
    assert_eq!(written.len(), 3 * prompts, "stray files: {written:?}");
}

#[test]
fn a_missing_output_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("out/deeper/still");
    let output = run(unconstrained(), dir.path(), &["--out", nested.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_complete(dir.path(), 1);
}

#[test]
fn an_unwritable_output_directory_fails_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where a directory should be: unwritable even for root.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("out");
    let output = run(constrained(), dir.path(), &["--out", out.to_str().unwrap()]);
    assert_clean_failure(&output, &["output directory", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("Step"), "the optimisation ran first: {stdout}");
    // A read-only directory, where permissions apply (not as root).
    let readonly = dir.path().join("readonly");
    std::fs::create_dir(&readonly).unwrap();
    let mut perms = std::fs::metadata(&readonly).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&readonly, perms).unwrap();
    if std::fs::write(readonly.join("probe"), b"").is_err() {
        let output = run(constrained(), dir.path(), &["--out", readonly.to_str().unwrap()]);
        assert_clean_failure(&output, &["output directory", "ermission denied"]);
    }
}

/// Disk full, simulated with `RLIMIT_FSIZE` (`ulimit -f`, SIGXFSZ ignored so that writes fail
/// with EFBIG instead of killing the process): the error names the file, the earlier results of
/// the same name are intact, and no temporary file is left.
#[test]
fn a_full_disk_is_an_error_and_earlier_results_survive() {
    let dir = tempfile::tempdir().unwrap();
    // Both runs of the same settings (another seed): a run replaces only its own settings' result.
    let first = run(constrained(), dir.path(), &["--steps", "1"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let before: Vec<(String, Vec<u8>)> = outputs(dir.path())
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.path().join("out").join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    let out = dir.path().join("out");
    let script = format!(
        "trap '' XFSZ; ulimit -f 1; exec \"$0\" --device cpu --seed 2 --steps 1 --prompt 'a red \
         tomato' --out '{}' --weights '{}'",
        out.display(),
        RN50.display()
    );
    let output = command("sh", dir.path()).args(["-c", &script, constrained()]).output().unwrap();
    assert_clean_failure(&output, &["writing", "File too large"]);
    let after: Vec<(String, Vec<u8>)> = outputs(dir.path())
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(out.join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    assert!(after == before, "earlier results changed or stray files: {:?}", outputs(dir.path()));
}

// --- signals --------------------------------------------------------------------------------

/// Starts a long run, waits for its first log line, sends `signal`, and checks that it saved the
/// images reached (PNG + JSON with `"interrupted": true` and the step) and exited 130 promptly.
fn interrupt_with(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = command(constrained(), dir.path());
    cmd.args(["--device", "cpu", "--seed", "3", "--steps", "1000000", "--log-every", "10"])
        .args(["--prompt", "a red tomato", "--prompt", "a snowy peak", "--out"])
        .arg(&out)
        .arg("--weights")
        .arg(&*RN50);
    let (child, reader) = spawn_until_first_step(cmd);
    kill(&child, signal);
    // A guard against a hang, not a timing: the run stops after its current step and saves.
    let (status, err) = wait(child, Duration::from_secs(180));
    let stdout = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{signal}: {status:?}\n{err}");
    assert!(!err.contains("panicked") && err.contains("interrupted"), "{err}");
    assert!(stdout.contains("interrupted at step"), "{stdout}");
    assert_complete(dir.path(), 2);
    for f in outputs(dir.path()).iter().filter(|f| f.ends_with(".json")) {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(f)).unwrap()).unwrap();
        assert_eq!(record["interrupted"], true, "{f}");
        let done = record["steps_done"].as_u64().unwrap();
        assert!((10..1_000_000).contains(&done), "{f}: {done}");
        assert_eq!(record["steps"], 1_000_000);
    }
}

#[test]
fn ctrl_c_saves_the_images_reached() {
    interrupt_with("-INT");
}

#[test]
fn sigterm_saves_the_images_reached() {
    interrupt_with("-TERM");
}

/// Ctrl-C while the model downloads (nothing to save yet): the binary stops the stalled download
/// at once, removes the partial file and exits with 130.
#[test]
fn ctrl_c_during_the_download_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/stalled", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Accept, then never answer.
        let held: Vec<_> = listener.incoming().take(1).flatten().collect();
        let _ = tx.send(());
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
    });
    let mut child = command(constrained(), dir.path())
        .env("CLIP_DOWNLOAD_BASE_URL", &base)
        .args(["--device", "cpu", "--out"])
        .arg(dir.path().join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    rx.recv_timeout(Duration::from_secs(60)).expect("the download started");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "still downloading after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("nothing was saved") && !err.contains("panicked"), "{err}");
    assert!(outputs(dir.path()).is_empty());
    assert!(!dir.path().join("out").exists(), "the output directory it created is removed");
    assert_eq!(files(&dir.path().join(".cache/clip")), Vec::<String>::new(), "no partial download");
}
