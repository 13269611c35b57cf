//! Running a sweep's pending runs here: batch after batch in this process, or (`--gpus`,
//! `--workers`) in one worker process per GPU or per CPU worker, each on its own part of the shard,
//! their progress gathered into one bar.
//!
//! A batch's runs share one optimisation (`run::run_batch`): each its own seed (keyed draws), the
//! batch padded to the sweep's width, the models loaded once per process. A batch that fails
//! (unreadable weights, a libtorch error, out of memory) has each of its runs recorded as failed
//! with the error, and the sweep goes on; Ctrl-C saves the batch's images marked interrupted
//! (redone whole by the next invocation) and stops.

use super::plan::{Run, Shard};
use super::state::{self, frozen_error};
use crate::device::DeviceChoice;
use crate::interrupt;
use crate::run::{self, Batch, Hooks, ModelCache, RowSpec, RunRequest};
use clip_core::clip::torch_error;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// How the runs go.
#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub device: DeviceChoice,
    /// Rows per optimisation.
    pub width: usize,
    /// Report progress as `@sweep` lines on stdout (a worker's, for its parent).
    pub machine_progress: bool,
}

/// What became of the runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub done: usize,
    pub failed: usize,
    pub interrupted: bool,
}

/// Where progress goes: a bar on a terminal, lines otherwise, or `@sweep` lines for a parent.
pub struct Report {
    bar: ProgressBar,
    lines: bool,
    machine: bool,
    runs: usize,
    tally: Tally,
}

/// The `@sweep` line a worker prints: prompt-steps, runs done and runs failed since the last.
pub const PROGRESS_TAG: &str = "@sweep";

impl Report {
    pub fn new(runs: usize, prompt_steps: u64, machine: bool) -> Self {
        let bar = if !machine && std::io::stderr().is_terminal() {
            let style = ProgressStyle::with_template(
                "{bar:30} {percent}%  {per_sec} prompt-steps  eta {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(prompt_steps).with_style(style)
        } else {
            ProgressBar::hidden()
        };
        let lines = !machine && bar.is_hidden();
        let report = Self { bar, lines, machine, runs, tally: Tally::default() };
        report.message();
        report
    }

    fn message(&self) {
        self.bar.set_message(format!(
            "runs {}/{} done, {} failed",
            self.tally.done, self.runs, self.tally.failed
        ));
    }

    /// `n` more prompt-steps done.
    pub fn steps(&mut self, n: u64) {
        if self.machine {
            println!("{PROGRESS_TAG} steps={n} done=0 failed=0");
        }
        self.bar.inc(n);
    }

    /// Runs finished.
    pub fn finished(&mut self, done: usize, failed: usize) {
        self.tally.done += done;
        self.tally.failed += failed;
        if self.machine {
            println!("{PROGRESS_TAG} steps=0 done={done} failed={failed}");
        }
        self.message();
    }

    /// A line for the user (above the bar; on stdout without one).
    pub fn say(&self, line: &str) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The request of a batch (its runs share everything but prompt, seed and name).
fn batch_spec(batch: &[Run], options: &Options) -> RunRequest {
    let mut request = batch[0].request(&options.out);
    request.prompts = batch.iter().map(|r| r.prompt.clone()).collect();
    request.device = options.device;
    request
}

/// Runs `batches` one after the other in this process.
pub fn run_batches(batches: &[Vec<Run>], options: &Options, report: &mut Report) -> Tally {
    let mut models = ModelCache::new();
    let total = batches.len();
    for (b, batch) in batches.iter().enumerate() {
        if interrupt::requested() {
            report.tally.interrupted = true;
            break;
        }
        let started = Instant::now();
        let spec = batch_spec(batch, options);
        let rows: Vec<RowSpec> = batch
            .iter()
            .map(|r| RowSpec { seed: r.seed, name: r.name.clone(), run_id: r.id.clone() })
            .collect();
        let n = batch.len() as u64;
        let mut last_step = 0usize;
        let outcome = {
            let mut on_stats = |chunk: &[clip_core::engine::optimize::StepStats]| {
                if let Some(last) = chunk.last() {
                    report.steps((last.step - last_step) as u64 * n);
                    last_step = last.step;
                }
            };
            let hooks =
                Hooks { models: &mut models, on_stats: &mut on_stats, stop: &interrupt::requested };
            let width = options.width.max(batch.len());
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run::run_batch(&spec, Batch { rows, width }, hooks)
            }))
        };
        let first = &batch[0];
        let names = if batch.iter().all(|r| r.name == first.name) { "" } else { " …" };
        let what =
            format!("{} {}{names} ({} run(s))", first.model.label(), first.name, batch.len());
        let result = match outcome {
            Ok(result) => result,
            Err(payload) => Err(anyhow::anyhow!(torch_error::payload_text(&*payload))),
        };
        match result {
            Ok(results) => {
                let mut done = 0;
                let mut failed = 0;
                let mut interrupted = false;
                for (run, result) in batch.iter().zip(&results) {
                    if result.record.interrupted {
                        interrupted = true;
                    } else if let Some(step) = result.record.frozen_at_step {
                        failed += 1;
                        let _ =
                            state::record_failure(&options.out, run, &frozen_error(step as u64));
                    } else {
                        done += 1;
                        state::clear_failure(&options.out, run);
                    }
                }
                // Steps not reported (the loop ended early) still count as this batch's.
                let steps = first.settings.steps;
                report.steps(steps.saturating_sub(last_step) as u64 * n);
                report.finished(done, failed);
                if interrupted {
                    report.say(&format!(
                        "batch {}/{total}: {what} interrupted: saved, marked interrupted; the next \
                         invocation redoes it",
                        b + 1
                    ));
                    report.tally.interrupted = true;
                    break;
                }
                if report.lines {
                    report.say(&format!(
                        "batch {}/{total}: {what} done in {:.1} s ({}/{} runs done, {} failed)",
                        b + 1,
                        started.elapsed().as_secs_f64(),
                        report.tally.done,
                        report.runs,
                        report.tally.failed
                    ));
                }
            }
            Err(err) if interrupt::is_interrupted(&err) => {
                report.tally.interrupted = true;
                break;
            }
            Err(err) => {
                let message = interrupt::error_line(&err);
                for run in batch {
                    let _ = state::record_failure(&options.out, run, &message);
                }
                report.steps(first.settings.steps.saturating_sub(last_step) as u64 * n);
                report.finished(0, batch.len());
                report.say(&format!("batch {}/{total}: {what} failed: {message}", b + 1));
            }
        }
    }
    report.tally()
}

/// One worker process of `--gpus` / `--workers`.
pub struct WorkerPlan {
    /// Its part of the shard.
    pub part: Shard,
    /// `CUDA_VISIBLE_DEVICES` for it, on a GPU.
    pub gpu: Option<usize>,
    /// Its pending runs and their prompt-steps, for the bar.
    pub runs: usize,
    pub prompt_steps: u64,
}

/// Starts one worker per plan (this program's `sweep` with `--worker`), gathers their progress
/// into one bar, and reports each that died. `base_args`: the arguments every worker gets
/// (`sweep SPEC --out … --batch-prompts … [--shard …]`). Returns the tally and the workers that
/// died.
pub fn run_workers(
    base_args: &[String],
    workers: &[WorkerPlan],
    device_arg: &str,
) -> anyhow::Result<(Tally, Vec<String>)> {
    let exe = std::env::current_exe()?;
    let runs: usize = workers.iter().map(|w| w.runs).sum();
    let steps: u64 = workers.iter().map(|w| w.prompt_steps).sum();
    let mut report = Report::new(runs, steps, false);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Option<String>)>();
    let mut children = Vec::new();
    for (k, w) in workers.iter().enumerate() {
        let mut cmd = Command::new(&exe);
        cmd.args(base_args)
            .arg("--worker")
            .arg(w.part.to_string())
            .arg("--device")
            .arg(device_arg)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let place = match w.gpu {
            Some(g) => {
                cmd.env("CUDA_VISIBLE_DEVICES", g.to_string());
                format!("GPU {g}")
            }
            None => "the CPU".to_string(),
        };
        let mut child = cmd.spawn()?;
        eprintln!("sweep: worker {k} (pid {}) on {place}: {} pending run(s)", child.id(), w.runs);
        let stdout = child.stdout.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((k, Some(line))).is_err() {
                    break;
                }
            }
            let _ = tx.send((k, None));
        });
        children.push((child, place));
    }
    drop(tx);
    let mut open = workers.len();
    while open > 0 {
        let Ok((k, line)) = rx.recv() else { break };
        match line {
            None => open -= 1,
            Some(line) => match line.strip_prefix(PROGRESS_TAG) {
                Some(fields) => {
                    let value = |name: &str| -> u64 {
                        fields
                            .split_whitespace()
                            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0)
                    };
                    report.steps(value("steps"));
                    let (d, f) = (value("done") as usize, value("failed") as usize);
                    if d + f > 0 {
                        report.finished(d, f);
                        if report.lines {
                            let t = report.tally();
                            report.say(&format!(
                                "runs {}/{} done, {} failed (worker {k}: {d} more done, {f} failed)",
                                t.done, report.runs, t.failed
                            ));
                        }
                    }
                }
                None => report.say(&format!("[worker {k}] {line}")),
            },
        }
    }
    let mut died = Vec::new();
    for (k, (mut child, place)) in children.into_iter().enumerate() {
        let status = child.wait()?;
        // 0: all done; 1: some runs failed (recorded); 130: Ctrl-C (saved, marked).
        match status.code() {
            Some(0) | Some(1) => {}
            Some(130) => report.tally.interrupted = true,
            _ => {
                let how = describe_exit(&status);
                died.push(format!(
                    "worker {k} (pid {}, {place}) died ({how}) before finishing its part {}: rerun \
                     the same command to finish it (done runs are kept)",
                    child.id(),
                    workers[k].part
                ));
            }
        }
    }
    report.finish();
    let _ = std::io::stdout().flush();
    Ok((report.tally(), died))
}

fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "an unknown status".to_string(),
    }
}

/// Whether an executable `name` is on the PATH.
pub fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path).any(|dir| {
        let p: &Path = &dir.join(name);
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}
