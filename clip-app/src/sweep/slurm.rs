//! `clip sweep SPEC --slurm`: the sweep as a Slurm job array. Task `i` of `N` runs
//! `clip sweep SPEC --shard i/N`, so Slurm is the distributed engine: it queues, places and
//! restarts the tasks; each task does its stable share of the runs and skips what is done. The
//! results land in the one output tree (shared storage), which `--status` and `clip compare` read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What the array job is asked for.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub gpus_per_task: usize,
    /// At most this many tasks at once (`--array=…%K`).
    pub array_parallel: Option<usize>,
    pub time: Option<String>,
    pub sbatch_args: Vec<String>,
    pub tasks: usize,
}

/// The job script. `sweep_args`: what each task passes to `clip sweep` besides `--shard`.
pub fn script(
    exe: &Path,
    workdir: &Path,
    job_name: &str,
    log_dir: &Path,
    sweep_args: &[String],
    options: &SlurmOptions,
) -> String {
    let n = options.tasks.max(1);
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        "# Written by `clip sweep --slurm`: task i of this array runs shard i of the sweep.".into(),
        format!("#SBATCH --job-name={}", shell_word_free(job_name)),
        format!(
            "#SBATCH --array=0-{}{}",
            n - 1,
            options.array_parallel.map(|k| format!("%{k}")).unwrap_or_default()
        ),
        "#SBATCH --ntasks=1".into(),
        format!("#SBATCH --output={}", log_dir.join("%A_%a.out").display()),
    ];
    if let Some(p) = &options.partition {
        lines.push(format!("#SBATCH --partition={p}"));
    }
    if options.gpus_per_task > 0 {
        lines.push(format!("#SBATCH --gres=gpu:{}", options.gpus_per_task));
    }
    if let Some(t) = &options.time {
        lines.push(format!("#SBATCH --time={t}"));
    }
    for a in &options.sbatch_args {
        lines.push(format!("#SBATCH {a}"));
    }
    lines.push("set -euo pipefail".into());
    lines.push(format!("cd {}", quote(&workdir.display().to_string())));
    let mut command = vec![quote(&exe.display().to_string()), "sweep".to_string()];
    command.extend(sweep_args.iter().map(|a| quote(a)));
    command.push("--shard".into());
    command.push(format!("\"$SLURM_ARRAY_TASK_ID/{n}\""));
    if options.gpus_per_task > 1 {
        // The task's GPUs (Slurm sets CUDA_VISIBLE_DEVICES): one worker on each.
        command.push("--gpus".into());
        command.push("all".into());
    }
    lines.push(format!("exec {}", command.join(" ")));
    lines.join("\n") + "\n"
}

/// Single-quoted for the shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn shell_word_free(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' })
        .collect()
}

/// Submits `script` with `sbatch --parsable`; returns the job id.
pub fn submit(script: &Path) -> anyhow::Result<String> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| anyhow::anyhow!("running sbatch: {e}"))?;
    if !output.status.success() {
        anyhow::bail!(
            "sbatch refused {}: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // `--parsable`: "jobid" or "jobid;cluster".
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        anyhow::bail!("sbatch printed no job id: {:?}", text.trim());
    }
    Ok(id)
}

/// Waits until no task of job `id` is pending or running (polling `squeue`).
pub fn wait(id: &str, every: Duration) -> anyhow::Result<()> {
    loop {
        let output = Command::new("squeue")
            .args(["-h", "-j", id, "-o", "%i %T"])
            .output()
            .map_err(|e| anyhow::anyhow!("running squeue: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        // A finished job leaves the queue ("Invalid job id" once it is purged).
        if text.trim().is_empty() {
            return Ok(());
        }
        if crate::interrupt::requested() {
            anyhow::bail!(crate::interrupt::Interrupted {
                during: "waiting for the Slurm job (it goes on; `scancel` stops it)".to_string()
            });
        }
        std::thread::sleep(every);
    }
}

/// The directory of the tasks' logs.
pub fn log_dir(out: &Path) -> PathBuf {
    super::state::sweep_dir(out).join("slurm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_runs_shard_i_of_n() {
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            gpus_per_task: 2,
            array_parallel: Some(4),
            time: Some("02:00:00".into()),
            sbatch_args: vec!["--mem=32G".into()],
            tasks: 8,
        };
        let s = script(
            Path::new("/opt/clip"),
            Path::new("/work dir"),
            "sweep 1",
            Path::new("/r/.sweep/slurm"),
            &["/r/spec.toml".into(), "--out".into(), "/r".into()],
            &options,
        );
        assert!(s.contains("#SBATCH --array=0-7%4\n"), "{s}");
        assert!(s.contains("#SBATCH --partition=gpu\n#SBATCH --gres=gpu:2\n"), "{s}");
        assert!(s.contains("#SBATCH --time=02:00:00\n#SBATCH --mem=32G\n"), "{s}");
        assert!(s.contains("cd '/work dir'\n"), "{s}");
        assert!(s.contains(
            "exec /opt/clip sweep /r/spec.toml --out /r --shard \"$SLURM_ARRAY_TASK_ID/8\" --gpus all\n"
        ), "{s}");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
