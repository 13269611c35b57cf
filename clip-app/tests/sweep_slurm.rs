//! `clip sweep --slurm` on a real Slurm: a one-node cluster (Debian's slurm-wlm and munge,
//! installed by `scripts/slurm-cluster.sh` when missing, which needs root) started in a temporary
//! directory, a small sweep (tiny random checkpoint, CPU; its output directory named with a space
//! and a `%`, which the script quotes for Slurm) submitted as an array of 2 tasks and
//! waited for; every run's outputs are checked, and the PNGs are byte-identical to a local run of
//! the same SPEC in 2 shards. The daemons are stopped by their PIDs when the test ends, passed or
//! failed.
//!
//! This test runs in CI (as root). A developer without root can skip it explicitly with
//! `CLIP_RS_SKIP_SLURM=1`; it never skips by itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The cluster, stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    conf: String,
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("clip-slurm-").tempdir().unwrap();
        let out = Command::new(repo().join("scripts/slurm-cluster.sh"))
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("scripts/slurm-cluster.sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let conf = stdout.trim().strip_prefix("SLURM_CONF=").map(str::to_string);
        match (out.status.success(), conf) {
            (true, Some(conf)) => Self { dir, conf },
            _ => {
                // Stop whatever did start before failing.
                let _ = Command::new(repo().join("scripts/slurm-cluster.sh"))
                    .arg("stop")
                    .arg(dir.path())
                    .status();
                panic!(
                    "the one-node Slurm did not start (it needs root to install slurm-wlm and \
                     munge; CLIP_RS_SKIP_SLURM=1 skips this test): {}\n{}",
                    stdout,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let status = Command::new(repo().join("scripts/slurm-cluster.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("warning: stopping the test's Slurm in {} failed", self.dir.path().display());
        }
    }
}

fn clip(args: &[&str], home: &Path, conf: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clip"));
    cmd.args(args).env("HOME", home).env("CLIP_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/none");
    if let Some(conf) = conf {
        cmd.env("SLURM_CONF", conf);
    }
    cmd.output().expect("clip runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The PNGs under `dir/<token>/`, by relative path.
fn pngs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in std::fs::read_dir(dir).unwrap().flatten() {
        if !sub.path().is_dir() || sub.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "png") {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_slurm_array_runs_the_sweep_as_a_local_two_shard_run_does() {
    if std::env::var_os("CLIP_RS_SKIP_SLURM").is_some() {
        eprintln!("note: CLIP_RS_SKIP_SLURM is set: the Slurm test is skipped");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            "out = \"slurm results 100%\"\nmodels = [\"tiny\"]\npresets = [\"constrained\", \"unconstrained\"]\nprompts = [\"a dog\", \"a cat\", \"a red tomato\"]\nseeds = [1, 2]\nsteps = 5\n\n[weights]\ntiny = \"{}\"\n",
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../clip-core/tests/fixtures/models/tiny-rn.pt")
                .display()
        ),
    )
    .unwrap();
    let spec_arg = spec.display().to_string();
    let cluster = Cluster::start();

    // `clip sweep SPEC --slurm` with 2 tasks, and then `last`.
    let slurm = |last: &str| {
        let args = ["sweep", &spec_arg, "--device", "cpu", "--batch-prompts", "3", "--slurm"];
        let args: Vec<&str> = args.into_iter().chain(["--tasks", "2", last]).collect();
        clip(&args, work.path(), Some(&cluster.conf))
    };

    // The script, printed and written without submitting.
    let printed = slurm("--print");
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    let script = text(&printed.stdout);
    assert!(script.contains("#SBATCH --array=0-1\n"), "{script}");
    assert!(script.contains("--shard \"$SLURM_ARRAY_TASK_ID/2\""), "{script}");
    let written = work.path().join("slurm results 100%/sweep.sbatch");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), script);

    // Submitted and waited for.
    let submitted = slurm("--wait");
    let (out, err) = (text(&submitted.stdout), text(&submitted.stderr));
    let logs: String = std::fs::read_dir(work.path().join("slurm results 100%/.sweep/slurm"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    format!(
                        "--- {}\n{}",
                        e.path().display(),
                        std::fs::read_to_string(e.path()).unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(submitted.status.success(), "{out}\n{err}\n{logs}");
    assert!(out.contains("submitted Slurm array job"), "{out}");
    assert!(out.contains("12 run(s): 12 done, 0 pending, 0 failed"), "{out}\n{logs}");
    // Both tasks ran a share: each log says it did its pending runs.
    let task_logs: Vec<_> = std::fs::read_dir(work.path().join("slurm results 100%/.sweep/slurm"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".out"))
        .collect();
    assert_eq!(task_logs.len(), 2, "{logs}");
    assert!(logs.contains("(shard 0/2)") && logs.contains("(shard 1/2)"), "{logs}");

    // Every run's outputs.
    let slurm_dir = work.path().join("slurm results 100%");
    let slurm_pngs = pngs(&slurm_dir);
    assert_eq!(slurm_pngs.len(), 12);
    for name in slurm_pngs.keys() {
        let stem = name.trim_end_matches(".png");
        for ext in ["json", "csv"] {
            assert!(slurm_dir.join(format!("{stem}.{ext}")).is_file(), "{stem}.{ext}");
        }
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(slurm_dir.join(format!("{stem}.json"))).unwrap())
                .unwrap();
        assert_eq!(record["interrupted"], false);
        assert_eq!(record["draws"], "keyed");
        assert!(record["run_id"].as_str().is_some_and(|id| id.len() == 16));
    }
    drop(cluster);

    // The same SPEC locally, in two shards, elsewhere: the same bytes.
    let local = work.path().join("local-results");
    let local_arg = local.display().to_string();
    for shard in ["0/2", "1/2"] {
        let o = clip(
            &[
                "sweep",
                &spec_arg,
                "--device",
                "cpu",
                "--batch-prompts",
                "3",
                "--shard",
                shard,
                "--out",
                &local_arg,
            ],
            work.path(),
            None,
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let local_pngs = pngs(&local);
    assert_eq!(local_pngs.keys().collect::<Vec<_>>(), slurm_pngs.keys().collect::<Vec<_>>());
    for (name, bytes) in &slurm_pngs {
        assert!(
            local_pngs[name] == *bytes,
            "{name}: the Slurm run's PNG differs from the local one's"
        );
    }
}
