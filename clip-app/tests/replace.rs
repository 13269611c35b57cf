//! A result is replaced only by a run of its own settings (issue 26, class 5): a later `clip
//! generate` of the same name with other settings is refused before its optimisation and leaves
//! the earlier PNG, JSON, CSV and start image as they were; the same command again (a new seed)
//! replaces its result; `clip generate --name` never replaces a sweep run's result.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clip-core/tests/fixtures").join(name)
}

fn clip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clip")).args(args).output().expect("clip runs")
}

fn generate(out: &Path, extra: &[&str]) -> Output {
    let weights = fixture("models/tiny-vit.pt").display().to_string();
    let out = out.display().to_string();
    let mut args = vec!["generate", "--weights", &weights, "--device", "cpu", "--out", &out];
    args.extend(["--prompt", "a dog"]);
    args.extend(extra);
    if !extra.contains(&"--steps") {
        args.extend(["--steps", "3"]);
    }
    clip(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn a_run_of_other_settings_does_not_replace_a_result() {
    let dir = tempfile::tempdir().unwrap();
    let photo = fixture("preprocess/photo_300x200.jpg").display().to_string();
    let edit = ["--name", "edit", "--init", &photo, "--epsilon", "8/255", "--seed", "1"];
    let o = generate(dir.path(), &edit);
    assert!(o.status.success(), "{}", stderr(&o));
    let results = dir.path().join("tiny-vit");
    let before = snapshot(&results);
    assert!(before.iter().any(|(n, _)| n.ends_with(".start.png")), "{before:?}");
    // The same name from noise, or with more steps: refused, everything left as it was.
    let more_steps = ["--name", "edit", "--init", &photo, "--epsilon", "8/255", "--steps", "4"];
    for other in [&["--name", "edit", "--seed", "1"][..], &more_steps] {
        let o = generate(dir.path(), other);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{other:?}: {err}");
        assert!(err.contains("other settings") && err.contains("another --name"), "{err}");
        let named = if other.contains(&"--steps") { "steps" } else { "init" };
        assert!(err.contains(named), "{other:?} should name {named}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(snapshot(&results), before, "{other:?} changed the earlier result");
    }
    // The same settings again, with another seed: its result is replaced.
    let again = ["--name", "edit", "--init", &photo, "--epsilon", "8/255", "--seed", "2"];
    let o = generate(dir.path(), &again);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = results.join("edit_tiny-vit_a_dog.json");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    assert_eq!(record["seed"], 2);
    // Another name keeps both.
    let o = generate(dir.path(), &["--name", "noise", "--seed", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn generate_does_not_replace_a_sweep_runs_result() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    let weights = fixture("models/tiny-vit.pt");
    std::fs::write(
        &spec,
        format!(
            "out = \"res\"\nmodels = [\"tiny-vit\"]\nprompts = [\"a dog\"]\nsteps = 3\n\
             name = \"run\"\n[weights]\ntiny-vit = {:?}\n",
            weights.display().to_string()
        ),
    )
    .unwrap();
    let o = clip(&["sweep", spec.to_str().unwrap(), "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let results = dir.path().join("res/tiny-vit");
    let before = snapshot(&results);
    let o = generate(&dir.path().join("res"), &["--name", "run", "--seed", "0"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("sweep run") && err.contains("another --name"), "{err}");
    assert_eq!(snapshot(&results), before);
}
