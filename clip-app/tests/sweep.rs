//! `clip sweep` on the tiny random-weight fixtures, on the CPU: the runs are exactly the product of
//! the SPEC's axes; shards partition them and keep their runs as prompts are added; a second
//! invocation does nothing; a run redone alone writes the same PNG bytes as in its batch; a killed
//! worker's runs are finished by a rerun without duplicates; a failing run is recorded and the
//! others go on; bad SPECs and flags are refused with exit 2 before anything starts. (The Slurm
//! array is `sweep_slurm.rs`.)

#[path = "../../clip-core/tests/common/processes.rs"]
mod processes;

use clip_app::sweep::plan::{self, Run, Shard};
use clip_app::sweep::spec::Spec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../clip-core/tests/fixtures/models")
        .join(name)
        .display()
        .to_string()
}

/// A SPEC in `dir` with the two tiny fixtures in its `[weights]` table, after `body`.
fn write_spec(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("spec.toml");
    let text = format!(
        "{body}\n\n[weights]\ntiny-rn = \"{}\"\ntiny-vit = \"{}\"\n",
        fixture("tiny-rn.pt"),
        fixture("tiny-vit.pt")
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn clip(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(args)
        .env("HOME", home)
        .env("CLIP_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/none")
        .output()
        .expect("clip runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sweep(spec: &Path, extra: &[&str], home: &Path) -> Output {
    let spec = spec.display().to_string();
    let mut args = vec!["sweep", spec.as_str(), "--device", "cpu"];
    args.extend(extra);
    clip(&args, home)
}

/// `clip sweep SPEC --device cpu --workers 2 EXTRA`, started: the child, the workers' `(index,
/// pid)` as they say them on stderr, and the thread collecting its stderr.
fn start_workers(
    spec: &Path,
    extra: &[&str],
    home: &Path,
) -> (std::process::Child, std::sync::mpsc::Receiver<(usize, u32)>, std::thread::JoinHandle<String>)
{
    let mut child = Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(["sweep", &spec.display().to_string(), "--device", "cpu", "--workers", "2"])
        .args(extra)
        .env("HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            // "sweep: worker K (pid P) …"
            if let Some(rest) = line.strip_prefix("sweep: worker ") {
                let k = rest.split(' ').next().and_then(|k| k.parse().ok());
                let pid = rest.split("(pid ").nth(1).and_then(|r| r.split(')').next());
                if let (Some(k), Some(pid)) = (k, pid.and_then(|p| p.parse().ok())) {
                    let _ = tx.send((k, pid));
                }
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (child, rx, reader)
}

/// `--status` succeeds and its first line starts with `starts`.
fn assert_status(spec: &Path, home: &Path, starts: &str) {
    let status = sweep(spec, &["--status"], home);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(text(&status.stdout).starts_with(starts), "{}", text(&status.stdout));
}

/// Every file under `dir` (relative, sorted), with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The run ids of the JSON records under `dir`, with how many records each has.
fn record_ids(dir: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for (path, bytes) in tree(dir) {
        if path.ends_with(".json") && !path.starts_with(".sweep") {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            if let Some(id) = v["run_id"].as_str() {
                *ids.entry(id.to_string()).or_insert(0) += 1;
            }
        }
    }
    ids
}

fn runs_of(spec: &Path) -> Vec<Run> {
    plan::runs(&Spec::read(spec).expect("the SPEC reads")).expect("the runs")
}

#[test]
fn the_runs_are_exactly_the_product_of_the_axes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prompts.txt"),
        "a dog\n\n# a comment\na cat\n  a red tomato  \n",
    )
    .unwrap();
    let spec = write_spec(
        dir.path(),
        r#"out = "res"
models = ["tiny-rn", "tiny-vit", ["tiny-rn", "tiny-vit"]]
presets = ["constrained", "unconstrained"]
prompts_file = "prompts.txt"
param = ["pixels", "fft-decorrelated"]
augment = [["jitter:4", "flip:0.5"], []]
seeds = [1, 2, 3]
steps = 7"#,
    );
    let runs = runs_of(&spec);
    assert_eq!(runs.len(), 3 * 2 * 2 * 2 * 3 * 3);
    let mut seen = BTreeSet::new();
    for r in &runs {
        let key = (
            r.model.label(),
            r.preset.to_string(),
            r.settings.param.to_string(),
            r.settings.augment.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
            r.prompt.clone(),
            r.seed,
        );
        assert!(seen.insert(key.clone()), "{key:?} twice");
        assert_eq!(r.settings.steps, 7);
        assert!(
            r.name.starts_with(&format!("{}-", r.preset))
                && r.name.ends_with(&format!("-s{}", r.seed))
        );
    }
    let mut expected = BTreeSet::new();
    for m in ["tiny-rn", "tiny-vit", "tiny-rn+tiny-vit"] {
        for p in ["constrained", "unconstrained"] {
            for param in ["pixels", "fft-decorrelated"] {
                for aug in ["jitter:4 flip:0.5", ""] {
                    for prompt in ["a dog", "a cat", "a red tomato"] {
                        for seed in [1, 2, 3] {
                            expected.insert((
                                m.to_string(),
                                p.to_string(),
                                param.to_string(),
                                aug.to_string(),
                                prompt.to_string(),
                                seed,
                            ));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(seen, expected);
    let ids: BTreeSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), runs.len(), "run ids are unique");
    // Runs that differ only in prompt and seed share a batch; batches never mix settings.
    let batches: Vec<Vec<Run>> = plan::batches(runs.iter().cloned(), 4).collect();
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), runs.len());
    assert_eq!(batches.len(), 24 * 3, "24 settings × 9 runs in batches of 4, 4, 1");
    for b in &batches {
        assert!(b.iter().all(|r| r.batch_key == b[0].batch_key));
    }
    // The command line lists the same runs.
    let out = sweep(&spec, &["--dry-run"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: BTreeSet<String> =
        text(&out.stdout).lines().map(|l| l.split('\t').next().unwrap().to_string()).collect();
    assert_eq!(listed, ids.iter().map(|s| s.to_string()).collect());
    assert!(text(&out.stderr).contains("216 run(s): 216 to do"), "{}", text(&out.stderr));
    assert!(!dir.path().join("res").exists(), "a dry run writes nothing");
}

#[test]
fn shards_partition_the_runs_and_keep_them_as_prompts_are_added() {
    let dir = tempfile::tempdir().unwrap();
    let body = |prompts: &str| {
        format!("models = [\"tiny-rn\", \"tiny-vit\"]\npresets = [\"constrained\", \"unconstrained\"]\nprompts = [{prompts}]\nseeds = [1, 2]")
    };
    let spec = write_spec(dir.path(), &body("\"a\", \"b\", \"c\", \"d\", \"e\""));
    let runs = runs_of(&spec);
    assert_eq!(runs.len(), 40);
    for n in [2u64, 3, 7] {
        let mut owner: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..n {
            let out = sweep(&spec, &["--dry-run", "--shard", &format!("{i}/{n}")], dir.path());
            assert!(out.status.success(), "{}", text(&out.stderr));
            for line in text(&out.stdout).lines() {
                let id = line.split('\t').next().unwrap().to_string();
                assert!(owner.insert(id, i).is_none(), "a run in two shards of {n}");
            }
        }
        let all: BTreeSet<&String> = owner.keys().collect();
        assert_eq!(all, runs.iter().map(|r| &r.id).collect(), "no run in none of {n} shards");
        // Not all in one shard.
        assert!((0..n).all(|i| owner.values().any(|&s| s == i)), "every shard of {n} has runs");
        // Adding prompts keeps every run's id and shard.
        let bigger = tempfile::tempdir().unwrap();
        let spec2 =
            write_spec(bigger.path(), &body("\"z\", \"a\", \"b\", \"c\", \"d\", \"e\", \"f\""));
        let runs2 = runs_of(&spec2);
        assert_eq!(runs2.len(), 56);
        for r in &runs {
            let same = runs2.iter().find(|s| s.id == r.id).expect("the run is still there");
            assert_eq!((same.prompt.as_str(), same.seed), (r.prompt.as_str(), r.seed));
            assert_eq!(same.shard(n), owner[&r.id]);
        }
    }
    let shard: Shard = "1/3".parse().unwrap();
    assert_eq!(
        runs.iter().filter(|r| shard.holds(r)).count() as u64,
        runs.iter().filter(|r| r.shard(3) == 1).count() as u64
    );
}

#[test]
fn a_second_invocation_does_nothing_and_a_run_redone_alone_is_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        r#"out = "res"
models = ["tiny-rn"]
presets = ["constrained", "unconstrained"]
prompts = ["a dog", "a cat", "a red tomato"]
seeds = [5, 6]
augment = [["jitter:4", "noise:0.02", "flip:0.5"]]
steps = 6"#,
    );
    let out = sweep(&spec, &["--batch-prompts", "3"], dir.path());
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let res = dir.path().join("res");
    let first = tree(&res);
    let ids = record_ids(&res);
    assert_eq!(ids.len(), 12);
    assert!(ids.values().all(|&n| n == 1));
    assert_eq!(first.keys().filter(|k| k.ends_with(".png")).count(), 12);

    let again = sweep(&spec, &["--batch-prompts", "3"], dir.path());
    assert!(again.status.success());
    assert!(
        text(&again.stdout).contains("nothing to do: all 12 run(s)"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(tree(&res), first, "the second invocation changed nothing");

    assert_status(&spec, dir.path(), "12 run(s): 12 done, 0 pending, 0 failed");

    // Two runs lose their record (one keeps its PNG): they, alone, are redone — each in a batch of
    // its own, padded — and write the same bytes as in their batch of three.
    let dir_rn = res.join("tiny-rn");
    let mut names: Vec<String> = first
        .keys()
        .filter(|k| k.ends_with(".json"))
        .map(|k| k.trim_start_matches("tiny-rn/").trim_end_matches(".json").to_string())
        .collect();
    names.sort();
    let (a, b) = (&names[1], &names[8]);
    for ext in ["png", "json", "csv"] {
        std::fs::remove_file(dir_rn.join(format!("{a}.{ext}"))).unwrap();
    }
    std::fs::remove_file(dir_rn.join(format!("{b}.json"))).unwrap();
    let redo = sweep(&spec, &["--batch-prompts", "3"], dir.path());
    assert!(redo.status.success(), "{}", text(&redo.stderr));
    assert!(
        text(&redo.stdout).contains("2 pending run(s) of 12 in 2 batch(es)"),
        "{}",
        text(&redo.stdout)
    );
    let after = tree(&res);
    for stem in [a, b] {
        let png = format!("tiny-rn/{stem}.png");
        assert!(after[&png] == first[&png], "{png} redone alone differs from its batch's");
    }
    assert_eq!(record_ids(&res), ids);
}

/// SIGTERM to the parent of `--workers` (issue 26, class 3): it passes the signal on, each worker
/// saves the images it reached (marked interrupted) and stops as a single run does, and the parent
/// exits 130 — no worker is left running, nothing says "Broken pipe" or "panicked".
#[test]
fn a_signal_to_the_parent_stops_its_workers_with_their_results_saved() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        r#"out = "res"
models = ["tiny-rn"]
prompts = ["a dog", "a cat", "a red tomato", "a blue car"]
seeds = [1, 2]
steps = 1000000"#,
    );
    let (child, pids, reader) = start_workers(&spec, &["--batch-prompts", "4"], dir.path());
    let workers: Vec<u32> = (0..2)
        .map(|_| pids.recv_timeout(Duration::from_secs(120)).expect("a worker starts").1)
        .collect();
    // The workers in their first batches (of up to 4 runs): result locks are taken.
    let dir_rn = dir.path().join("res/tiny-rn");
    let start = Instant::now();
    let locks = || {
        std::fs::read_dir(&dir_rn).map_or(0, |d| {
            d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".lock")).count()
        })
    };
    while locks() < 2 {
        assert!(start.elapsed() < Duration::from_secs(120), "the batches did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let running = locks();
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let (status, _) = processes::wait(child, Duration::from_secs(120));
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    for pid in workers {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "worker {pid} still runs\n{err}");
    }
    for bad in ["Broken pipe", "panicked", "died"] {
        assert!(!err.contains(bad), "{bad}:\n{err}");
    }
    // Every run that had started saved the images it reached, marked interrupted; no lock is left.
    let files = tree(&dir.path().join("res"));
    assert!(
        files.keys().all(|k| !k.ends_with(".lock") && !k.contains(".tmp-")),
        "{:?}",
        files.keys()
    );
    let records: Vec<serde_json::Value> = files
        .into_iter()
        .filter(|(p, _)| p.ends_with(".json") && !p.starts_with(".sweep"))
        .map(|(_, bytes)| serde_json::from_slice(&bytes).unwrap())
        .collect();
    assert!(
        records.len() >= running,
        "{} records, {running} runs had started\n{err}",
        records.len()
    );
    for r in &records {
        assert_eq!(r["interrupted"], true, "{r}");
        assert!(r["steps_done"].as_u64().unwrap() < 1_000_000, "{r}");
    }
    assert_status(&spec, dir.path(), "8 run(s): 0 done, 8 pending");
}

/// A worker killed in the middle of its batch: the parent says so and fails; the next invocation
/// finishes every run, each exactly once, and leaves no temporary files.
#[test]
fn a_killed_worker_is_reported_and_a_rerun_completes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        r#"out = "res"
models = ["tiny-rn"]
prompts = ["a dog", "a cat", "a red tomato", "a blue car"]
seeds = [1, 2, 3]
steps = 150"#,
    );
    let (child, pids, reader) = start_workers(&spec, &[], dir.path());
    let pid = std::iter::from_fn(|| pids.recv_timeout(Duration::from_secs(120)).ok())
        .find_map(|(k, pid)| (k == 0).then_some(pid))
        .expect("worker 0 starts");
    // Mid-batch: its batch's result locks are taken once its first batch has started.
    let dir_rn = dir.path().join("res/tiny-rn");
    let start = Instant::now();
    while !std::fs::read_dir(&dir_rn)
        .is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".lock")))
    {
        assert!(start.elapsed() < Duration::from_secs(120), "no batch started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    let (status, _) = processes::wait(child, Duration::from_secs(300));
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("worker 0") && err.contains("died (killed by signal 9)"), "{err}");
    assert!(err.contains("rerun the same command"), "{err}");
    let res = dir.path().join("res");
    let partial = record_ids(&res).len();
    assert!(partial < 12, "worker 0 was killed before its runs were done");

    let rerun = sweep(&spec, &[], dir.path());
    assert!(rerun.status.success(), "{}\n{}", text(&rerun.stdout), text(&rerun.stderr));
    assert!(
        text(&rerun.stdout).contains(&format!("{} pending run(s) of 12", 12 - partial)),
        "{}",
        text(&rerun.stdout)
    );
    let ids = record_ids(&res);
    assert_eq!(ids.len(), 12);
    assert!(ids.values().all(|&n| n == 1), "{ids:?}");
    let files = tree(&res);
    assert_eq!(files.keys().filter(|k| k.ends_with(".png")).count(), 12);
    assert!(
        files.keys().all(|k| !k.contains(".tmp-") && !k.ends_with(".lock")),
        "{:?}",
        files.keys()
    );
    assert_status(&spec, dir.path(), "12 run(s): 12 done, 0 pending, 0 failed");
}

#[test]
fn a_failing_run_is_recorded_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.pt"), b"PK\x03\x04 not a checkpoint at all").unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            "out = \"res\"\nmodels = [\"broken\", \"tiny-vit\"]\nprompts = [\"a dog\", \"a cat\"]\nsteps = 3\n\n[weights]\nbroken = \"broken.pt\"\ntiny-vit = \"{}\"\n",
            fixture("tiny-vit.pt")
        ),
    )
    .unwrap();
    let out = sweep(&spec, &[], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("2 of 4 run(s) done, 2 failed"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("broken.pt"), "{}", text(&out.stderr));
    assert_eq!(record_ids(&dir.path().join("res")).len(), 2);
    let status = sweep(&spec, &["--status"], dir.path());
    let s = text(&status.stdout);
    assert!(s.starts_with("4 run(s): 2 done, 0 pending, 2 failed"), "{s}");
    let failed: Vec<&str> = s.lines().filter(|l| l.starts_with("failed\t")).collect();
    assert_eq!(failed.len(), 2, "{s}");
    assert!(failed.iter().all(|l| l.contains("\tbroken\t") && l.contains("broken.pt")), "{s}");
}

/// Bad SPECs and flags: one `error:` line naming what is wrong, exit 2, nothing created.
#[test]
fn bad_input_is_refused_before_anything_starts() {
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "models = [\"tiny-rn\"]\nprompts = [\"a\"]\nstep = 3",
            vec![],
            "unknown key `step` (did you mean `steps`?)",
        ),
        (
            "models = [\"tiny-rn\"]\nprompts = [\"a\"]\nsteps = \"many\"",
            vec![],
            "`steps`: expected a whole number of steps, found the string \"many\"",
        ),
        (
            "models = [\"tiny-rn\"]\nprompts = [\"a\"]\nsteps = 0",
            vec![],
            "`steps`: the number of steps must be at least 1",
        ),
        (
            "models = [\"tiny-rn\"]\nprompts = [\"a\"]\nseeds = []",
            vec![],
            "`seeds`: an empty list makes no runs",
        ),
        ("models = []\nprompts = [\"a\"]", vec![], "`models`: an empty list makes no runs"),
        (
            "models = [\"tiny-rn\"]\nprompts_file = \"missing.txt\"",
            vec![],
            "`prompts_file`: cannot read",
        ),
        ("models = [\"tiny-rn\"]\nprompts_file = \"empty.txt\"", vec![], "has no prompts"),
        ("models = [\"RN51\"]\nprompts = [\"a\"]", vec![], "RN51"),
        (
            "models = [\"tiny-rn\"]\nprompts = [\"a\"]\nparam = [\"pixels\", 3]",
            vec![],
            "`param`: item 2: expected a string, found the integer 3",
        ),
        (
            "models = [\"tiny-rn\"]\nprompts = [\"a\"]\naugment = [\"jitter:x\"]",
            vec![],
            "`augment`",
        ),
        (
            "models = [\"tiny-rn\"]\nprompts = [\"a\"]\nseeds = [1, 2]\nname = \"fixed\"",
            vec![],
            "two runs would write the same files (fixed_tiny-rn_a.png under tiny-rn)",
        ),
        (
            "models = [\"tiny-rn\"]\nprompts = [\"a\"]\nname = \"{nope}\"",
            vec![],
            "unknown placeholder {nope}",
        ),
        (
            "models = [\"tiny-rn\"]\nprompts = [\"a\"]\nepsilon = 0.03",
            vec![],
            "`epsilon` needs `init`",
        ),
        ("models = [\"tiny-rn\"\nprompts = [\"a\"]", vec![], "not valid TOML"),
        ("models = [\"tiny-rn\"]\nprompts = [\"a\"]", vec!["--shard", "2/2"], "outside 0 <= I < N"),
        (
            "models = [\"tiny-rn\"]\nprompts = [\"a\"]",
            vec!["--slurm"],
            "`sbatch` is not on the PATH",
        ),
        ("models = [\"tiny-rn\"]\nprompts = [\"a\"]", vec!["--gpus", "all"], "--gpus runs on CUDA"),
        ("models = [\"tiny-rn\"]\nprompts = [\"a\"]", vec!["--workers", "0"], "--workers"),
    ];
    let long = format!("models = [\"tiny-rn\"]\nprompts = [\"{}\"]", "word ".repeat(100));
    let mut cases = cases;
    cases.push((&long, vec![], "prompt 1"));
    for (body, flags, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.txt"), "\n# nothing\n").unwrap();
        let spec = write_spec(dir.path(), &format!("out = \"res\"\n{body}"));
        let spec_arg = spec.display().to_string();
        let mut args = vec!["sweep", spec_arg.as_str(), "--device", "cpu"];
        args.extend(flags.iter());
        let out = Command::new(env!("CARGO_BIN_EXE_clip"))
            .args(&args)
            .env("HOME", dir.path())
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body} {flags:?}: {err}");
        assert!(err.contains(expected), "{body} {flags:?}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(!dir.path().join("res").exists(), "{body}: nothing is created");
    }
}

/// Issue 26, class 2: a control character in any field written into the Slurm script (the SPEC's
/// `out`, `--partition`, `--time`, `--sbatch-arg`) would end its `#SBATCH` line and run as a
/// command when the task starts: refused (one `error:` line naming the field, exit 2), nothing
/// created; without one, hostile values are written quoted (`slurm.rs`'s tests run such a script).
#[test]
fn slurm_fields_with_control_characters_are_refused() {
    let cases: [(&str, &[&str], &str); 5] = [
        ("out = \"res\\ntouch pwned\"", &[], "error: out: "),
        ("out = \"res\"", &["--partition", "gpu\ntouch pwned"], "error: --partition: "),
        ("out = \"res\"", &["--time", "1:00\rtouch pwned"], "error: --time: "),
        (
            "out = \"res\"",
            &["--sbatch-arg", "--mem=1G", "--sbatch-arg", "a\u{1b}b"],
            "error: --sbatch-arg: ",
        ),
        ("out = \"res\\\\x\"", &[], "holds a backslash"),
    ];
    for (out, flags, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let spec =
            write_spec(dir.path(), &format!("{out}\nmodels = [\"tiny-rn\"]\nprompts = [\"a\"]"));
        let before: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        let spec_arg = spec.display().to_string();
        let mut args = vec!["sweep", spec_arg.as_str(), "--device", "cpu", "--slurm", "--print"];
        args.extend(flags.iter());
        let result = clip(&args, dir.path());
        let err = text(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(expected), "{flags:?}: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
        let after: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(before, after, "{flags:?}: nothing is created");
    }
}

/// A sweep never replaces a result it did not make: `clip generate`'s file of the same name stays
/// as it was, and the run is recorded as failed with the reason.
#[test]
fn another_runs_result_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let res = dir.path().join("res").display().to_string();
    let weights = fixture("tiny-vit.pt");
    let generated = clip(
        &["generate", "--weights", &weights, "--device", "cpu", "--seed", "1", "--steps", "3"]
            .into_iter()
            .chain(["--name", "mine", "--prompt", "a dog", "--out", &res])
            .collect::<Vec<_>>(),
        dir.path(),
    );
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    let before = tree(&dir.path().join("res"));
    let spec = write_spec(
        dir.path(),
        "out = \"res\"\nmodels = [\"tiny-vit\"]\nprompts = [\"a dog\"]\nsteps = 3\nname = \"mine\"",
    );
    let out = sweep(&spec, &[], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("holds a result that is not a sweep run's"),
        "{}",
        text(&out.stderr)
    );
    let after = tree(&dir.path().join("res"));
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{path} was changed");
    }
    assert_status(&spec, dir.path(), "1 run(s): 0 done, 0 pending, 1 failed");
}

/// The plan is streamed: `--status` and `--dry-run` of a 100 000-run SPEC list every run (memory
/// does not grow with the runs: BENCHMARKS.md measures 10⁶ and 10⁷); a product above a billion runs
/// is refused before anything is written.
#[test]
fn a_large_plan_is_streamed_and_a_product_too_large_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prompts: String = (0..1000).map(|i| format!("prompt number {i}\n")).collect();
    std::fs::write(dir.path().join("prompts.txt"), prompts).unwrap();
    let seeds: Vec<String> = (0..100).map(|s| s.to_string()).collect();
    let body = format!(
        "out = \"res\"\nmodels = [\"tiny-rn\"]\nprompts_file = \"prompts.txt\"\nsteps = 2\n\
         seeds = [{}]",
        seeds.join(", ")
    );
    let spec = write_spec(dir.path(), &body);
    assert_status(&spec, dir.path(), "100000 run(s): 0 done, 100000 pending, 0 failed");
    let listed = sweep(&spec, &["--dry-run"], dir.path());
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let lines: Vec<String> = text(&listed.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 100_000);
    let last: Vec<&str> = lines[99_999].split('\t').collect();
    assert_eq!(&last[1..3], ["pending", "tiny-rn"]);
    assert!(last[3].starts_with("constrained-") && last[3].ends_with("-s99"), "{last:?}");
    assert_eq!(&last[4..], ["99", "prompt number 999"]);
    let ids: BTreeSet<&str> = lines.iter().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(ids.len(), 100_000, "every run once");
    assert!(
        text(&listed.stderr).contains("100000 run(s): 100000 to do, in 33334 batch(es) of up to 3"),
        "{}",
        text(&listed.stderr)
    );
    assert!(!dir.path().join("res").exists(), "--status and --dry-run write nothing");

    // 1 000 prompts × 1 000 seeds × 1 001 step counts: over a billion runs.
    let seeds: Vec<String> = (0..1000).map(|s| s.to_string()).collect();
    let steps: Vec<String> = (1..=1001).map(|s| s.to_string()).collect();
    let body = format!(
        "out = \"res\"\nmodels = [\"tiny-rn\"]\nprompts_file = \"prompts.txt\"\nseeds = [{}]\n\
         steps = [{}]",
        seeds.join(", "),
        steps.join(", ")
    );
    let spec = write_spec(dir.path(), &body);
    let out = sweep(&spec, &[], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "the SPEC's axes multiply to more than 1000000000 runs (1 × 1 × 1 × 1 × 1 × 1001 × 1 \
             × 1 × 1 × 1 × 1 × 1 × 1 × 1 × 1000 × 1000): split it into smaller sweeps"
        ),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("res").exists());
}

/// Two `[weights]` checkpoints of one architecture, even with the same file name, each get their
/// own results, named by their keys; two keys that would make one folder name are refused.
#[test]
fn checkpoints_of_one_architecture_get_their_own_results() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["a", "b"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::copy(fixture("tiny-rn.pt"), dir.path().join(sub).join("model.pt")).unwrap();
    }
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        "out = \"res\"\nmodels = [\"first\", \"second\"]\nprompts = [\"a dog\"]\nsteps = 2\n\n\
         [weights]\nfirst = \"a/model.pt\"\nsecond = \"b/model.pt\"\n",
    )
    .unwrap();
    let out = sweep(&spec, &[], dir.path());
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let files = tree(&dir.path().join("res"));
    for key in ["first", "second"] {
        let stem = |ext: &str| {
            files.keys().find(|f| f.starts_with(&format!("{key}/")) && f.ends_with(ext)).cloned()
        };
        let record = stem(&format!("_{key}_a_dog.json")).expect("its record");
        let record: serde_json::Value = serde_json::from_slice(&files[&record]).unwrap();
        assert_eq!(record["model"], key, "{record}");
        assert!(stem(&format!("_{key}_a_dog.png")).is_some(), "{:?}", files.keys());
    }
    assert_status(&spec, dir.path(), "2 run(s): 2 done");

    std::fs::write(
        &spec,
        "out = \"res\"\nmodels = [\"a b\"]\nprompts = [\"a dog\"]\n\n\
         [weights]\n\"a b\" = \"a/model.pt\"\na-b = \"b/model.pt\"\n",
    )
    .unwrap();
    let out = sweep(&spec, &[], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("`a b` and `a-b` would both name their results a-b"),
        "{}",
        text(&out.stderr)
    );
}

/// Two sweeps of one SPEC on one `out` at once share the runs: a run the other is running is left
/// to it, one it has finished is not redone; both end with exit 0 and every run is done once.
#[test]
fn two_sweeps_on_one_out_share_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "out = \"res\"\nmodels = [\"tiny-rn\"]\nprompts = [\"a dog\", \"a cat\", \"a red \
         tomato\", \"a blue car\"]\nsteps = 3000",
    );
    let start = |spec: &Path| {
        Command::new(env!("CARGO_BIN_EXE_clip"))
            .args(["sweep", &spec.display().to_string(), "--device", "cpu"])
            .args(["--batch-prompts", "1"])
            .env("HOME", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = start(&spec);
    // The first holds its first run's lock before the second starts.
    let results = dir.path().join("res/tiny-rn");
    let begun = Instant::now();
    while std::fs::read_dir(&results).map_or(0, |d| {
        d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".lock")).count()
    }) == 0
    {
        assert!(begun.elapsed() < Duration::from_secs(120), "the first sweep did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = start(&spec);
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    let said = format!(
        "first:\n{}{}\nsecond:\n{}{}",
        text(&first.stdout),
        text(&first.stderr),
        text(&second.stdout),
        text(&second.stderr)
    );
    assert_eq!(first.status.code(), Some(0), "{said}");
    assert_eq!(second.status.code(), Some(0), "{said}");
    assert!(said.contains("left to another process"), "{said}");
    let ids = record_ids(&dir.path().join("res"));
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.values().all(|&n| n == 1), "{ids:?}");
    let done = |out: &Output| -> usize {
        let stdout = text(&out.stdout);
        let at = stdout.find("(this invocation: ").expect("a summary") + 18;
        stdout[at..].split(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(done(&first) + done(&second), 4, "no run done twice\n{said}");
    assert_status(&spec, dir.path(), "4 run(s): 4 done, 0 pending, 0 failed");
}
