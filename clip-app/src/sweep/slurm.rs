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

/// Refuses what cannot be written into the job script safely: a control character (a newline
/// would end an `#SBATCH` line and start a command) in any field, and a backslash in the log
/// directory (it turns off Slurm's `%A`/`%a` in `--output`). `fields`: (what, value), `what`
/// naming the flag or SPEC key for the message.
pub fn check_fields<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    for (what, value) in fields {
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(format!(
                "{what}: {:?} holds the control character {c:?}, which cannot be written into the \
                 Slurm script",
                clip_core::clip::excerpt::excerpt(value)
            ));
        }
    }
    Ok(())
}

/// The job script. `sweep_args`: what each task passes to `clip sweep` besides `--shard`.
/// Every value is quoted: `#SBATCH` values as Slurm's directive parser reads them (`directive`),
/// the command line for bash (`quote`); fields with control characters are refused before
/// (`check_fields`).
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
        format!(
            "#SBATCH --output={}",
            directive(&format!("{}/%A_%a.out", log_dir.display().to_string().replace('%', "%%")))
        ),
    ];
    if let Some(p) = &options.partition {
        lines.push(format!("#SBATCH --partition={}", directive(p)));
    }
    if options.gpus_per_task > 0 {
        lines.push(format!("#SBATCH --gres=gpu:{}", options.gpus_per_task));
    }
    if let Some(t) = &options.time {
        lines.push(format!("#SBATCH --time={}", directive(t)));
    }
    for a in &options.sbatch_args {
        lines.push(format!("#SBATCH {}", directive(a)));
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
    if plain_word(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// One value of an `#SBATCH` line, as Slurm's directive parser (`_get_argument` in
/// `src/sbatch/opt.c`) reads it back: plain words as they are; anything else in double quotes,
/// inside which a backslash makes the next character literal (a quote, a backslash), `#` does not
/// start a comment and spaces do not end the word.
pub fn directive(s: &str) -> String {
    if plain_word(s) {
        return s.to_string();
    }
    let mut quoted = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// A word that neither bash nor Slurm's directive parser reads specially: written as it is.
fn plain_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c))
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

    /// Slurm's reading of an `#SBATCH` line's arguments (`_get_argument`, `src/sbatch/opt.c`): a
    /// backslash makes the next character literal, `"` or `'` open a quoted stretch closed by the
    /// same quote, outside quotes white space ends an argument and `#` ends the line.
    fn slurm_reads(line: &str) -> Vec<String> {
        let (mut args, mut arg) = (Vec::new(), None::<String>);
        let (mut quote, mut escape) = (None, false);
        for c in line.chars() {
            if escape {
                escape = false;
            } else if c == '\\' {
                escape = true;
                arg.get_or_insert_with(String::new);
                continue;
            } else if let Some(q) = quote {
                if c == q {
                    quote = None;
                    continue;
                }
            } else if c == '"' || c == '\'' {
                quote = Some(c);
                arg.get_or_insert_with(String::new);
                continue;
            } else if c == '#' {
                break;
            } else if c.is_whitespace() {
                args.extend(arg.take());
                continue;
            }
            arg.get_or_insert_with(String::new).push(c);
        }
        args.extend(arg);
        args
    }

    /// Hostile values in every field: each `#SBATCH` line reads back as the value given (the
    /// log path with `%` doubled, as Slurm's file patterns want it), and the script, run by bash
    /// with a stand-in `clip`, runs nothing but the stand-in, with exactly the arguments given.
    #[test]
    fn hostile_values_stay_values() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("pwned");
        let inject = format!("x\"; touch {} #", canary.display());
        let hostile = [
            format!("a b 'c' \"d\" $(touch {0}) `touch {0}` $HOME # e \\ %x", canary.display()),
            inject.clone(),
            "--mem=\"32 G\"".to_string(),
        ];
        let out = dir.path().join("out dir 100% $(x) 'q' \"dq\" #h");
        let log_dir = out.join(".sweep/slurm");
        let work = dir.path().join("work $(touch pwned) 'x'");
        std::fs::create_dir_all(&work).unwrap();
        let args_file = dir.path().join("args");
        let exe = dir.path().join("stand-in clip 'x'");
        std::fs::write(
            &exe,
            format!(
                "#!/bin/bash\nprintf '%s\\0' \"$@\" > {}\n",
                quote(&args_file.display().to_string())
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let options = SlurmOptions {
            partition: Some(hostile[0].clone()),
            gpus_per_task: 0,
            array_parallel: None,
            time: Some(hostile[1].clone()),
            sbatch_args: vec![hostile[2].clone(), hostile[1].clone()],
            tasks: 3,
        };
        let sweep_args = vec![hostile[0].clone(), "--out".to_string(), out.display().to_string()];
        let text = script(&exe, &work, "job", &log_dir, &sweep_args, &options);
        let directives: Vec<Vec<String>> =
            text.lines().filter_map(|l| l.strip_prefix("#SBATCH ")).map(slurm_reads).collect();
        let log_pattern = format!("{}/%A_%a.out", log_dir.display().to_string().replace('%', "%%"));
        let expected = [
            "--job-name=job".to_string(),
            "--array=0-2".into(),
            "--ntasks=1".into(),
            format!("--output={log_pattern}"),
            format!("--partition={}", hostile[0]),
            format!("--time={}", hostile[1]),
            hostile[2].clone(),
            hostile[1].clone(),
        ];
        let expected: Vec<Vec<String>> = expected.into_iter().map(|a| vec![a]).collect();
        assert_eq!(directives, expected, "{text}");
        let path = dir.path().join("sweep.sbatch");
        std::fs::write(&path, &text).unwrap();
        let status = std::process::Command::new("bash")
            .arg(&path)
            .env("SLURM_ARRAY_TASK_ID", "1")
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "{text}");
        assert!(!canary.exists() && !work.join("pwned").exists(), "a value ran as a command");
        let args = std::fs::read_to_string(&args_file).unwrap();
        let args: Vec<&str> = args.trim_end_matches('\0').split('\0').collect();
        let mut expected: Vec<String> = vec!["sweep".into()];
        expected.extend(sweep_args);
        expected.extend(["--shard".into(), "1/3".into()]);
        assert_eq!(args, expected);
    }

    #[test]
    fn control_characters_are_refused_naming_the_field() {
        assert!(check_fields([("--time", "1:00"), ("out", "/r/a b")]).is_ok());
        for value in ["a\nb", "a\rb", "x\u{1b}[31m", "tab\there", "nul\0"] {
            let err = check_fields([("--time", "1:00"), ("--partition", value)]).unwrap_err();
            assert!(err.starts_with("--partition: ") && err.contains("control character"), "{err}");
        }
    }
}
