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
use crate::output::OutputError;
use crate::reporter::{print_line, Reporter};
use crate::run::{self, Batch, Hooks, ModelCache, PromptResult, RowSpec, RunRequest};
use clip_core::clip::torch_error;
use clip_core::engine::optimize::StepStats;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::process::CommandExt;
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
    /// Runs another process (a second sweep on the same `out`) was running or had finished.
    pub elsewhere: usize,
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
        let elsewhere = match self.tally.elsewhere {
            0 => String::new(),
            n => format!(", {n} by another process"),
        };
        self.bar.set_message(format!(
            "runs {}/{} done, {} failed{elsewhere}",
            self.tally.done, self.runs, self.tally.failed
        ));
    }

    /// `n` more prompt-steps done.
    pub fn steps(&mut self, n: u64) {
        if self.machine {
            print_line(&format!("{PROGRESS_TAG} steps={n} done=0 failed=0"));
        }
        self.bar.inc(n);
    }

    /// Runs finished.
    pub fn finished(&mut self, done: usize, failed: usize) {
        self.tally.done += done;
        self.tally.failed += failed;
        if self.machine {
            print_line(&format!("{PROGRESS_TAG} steps=0 done={done} failed={failed}"));
        }
        self.message();
    }

    /// Runs another process is running or has finished: counted apart, their steps as gone by.
    pub fn elsewhere(&mut self, runs: &[Run]) {
        let steps: u64 = runs.iter().map(|r| r.settings.steps as u64).sum();
        self.count_elsewhere(steps, runs.len());
        if self.machine {
            print_line(&format!(
                "{PROGRESS_TAG} steps={steps} done=0 failed=0 elsewhere={}",
                runs.len()
            ));
        }
    }

    fn count_elsewhere(&mut self, steps: u64, runs: usize) {
        self.tally.elsewhere += runs;
        self.bar.inc(steps);
        self.message();
    }

    /// A line for the user (above the bar; on stdout without one).
    pub fn say(&self, line: &str) {
        if self.bar.is_hidden() {
            print_line(line);
        } else {
            self.bar.println(line);
        }
    }

    /// A worker's `@sweep` line (`steps=… done=… failed=…`) counted in.
    fn worker_progress(&mut self, k: usize, fields: &str) {
        let value = |name: &str| -> u64 {
            fields
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let elsewhere = value("elsewhere") as usize;
        if elsewhere > 0 {
            self.count_elsewhere(value("steps"), elsewhere);
            return;
        }
        self.steps(value("steps"));
        let (d, f) = (value("done") as usize, value("failed") as usize);
        if d + f > 0 {
            self.finished(d, f);
            if self.lines {
                let t = self.tally();
                self.say(&format!(
                    "runs {}/{} done, {} failed (worker {k}: {d} more done, {f} failed)",
                    t.done, self.runs, t.failed
                ));
            }
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

/// A batch's reporter: its steps (times its runs) counted into the sweep's progress.
struct BatchSteps<'a> {
    report: &'a mut Report,
    runs: u64,
    last_step: usize,
}

impl Reporter for BatchSteps<'_> {
    fn steps(&mut self, chunk: &[StepStats]) {
        if let Some(last) = chunk.last() {
            self.report.steps((last.step - self.last_step) as u64 * self.runs);
            self.last_step = last.step;
        }
    }
}

/// Runs `batches` (`total` of them, as they come) one after the other in this process.
pub fn run_batches(
    batches: impl Iterator<Item = Vec<Run>>,
    total: usize,
    options: &Options,
    report: &mut Report,
) -> Tally {
    let mut models = ModelCache::new();
    for (b, batch) in batches.enumerate() {
        if interrupt::requested() {
            report.tally.interrupted = true;
            break;
        }
        // Another sweep on the same `out` may have finished some of them since the scan.
        let (batch, finished): (Vec<Run>, Vec<Run>) =
            batch.into_iter().partition(|r| !state::done_now(&options.out, r));
        if !finished.is_empty() {
            report.elsewhere(&finished);
        }
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let (result, last_step) = run_batch(&batch, options, &mut models, report);
        let first = &batch[0];
        let names = if batch.iter().all(|r| r.name == first.name) { "" } else { " …" };
        let what =
            format!("{} {}{names} ({} run(s))", first.model.label(), first.name, batch.len());
        let batch_of = format!("batch {}/{total}: {what}", b + 1);
        // Steps not reported (the loop ended early) still count as this batch's.
        let unreported = first.settings.steps.saturating_sub(last_step) as u64 * batch.len() as u64;
        match result {
            Ok(results) => {
                report.steps(unreported);
                let interrupted = settle(&batch, &results, options, report);
                if interrupted {
                    report.say(&format!(
                        "{batch_of} interrupted: saved, marked interrupted; the next invocation \
                         redoes it"
                    ));
                    report.tally.interrupted = true;
                    break;
                }
                if report.lines {
                    report.say(&format!(
                        "{batch_of} done in {:.1} s ({}/{} runs done, {} failed)",
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
            Err(err) if is_busy(&err) => {
                // Another process holds a result's lock, or finished a run meanwhile: the batch
                // is its (a partly finished batch is redone whole by the next invocation).
                report.elsewhere(&batch);
                report.say(&format!(
                    "{batch_of} left to another process ({})",
                    interrupt::error_line(&err)
                ));
            }
            Err(err) => {
                let message = interrupt::error_line(&err);
                for run in &batch {
                    let _ = state::record_failure(&options.out, run, &message);
                }
                report.steps(unreported);
                report.finished(0, batch.len());
                report.say(&format!("{batch_of} failed: {message}"));
            }
        }
    }
    report.tally()
}

/// Whether `err` says another process is running the batch, or has finished a run of it since
/// this one looked.
fn is_busy(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<OutputError>(),
            Some(OutputError::Busy { .. } | OutputError::Finished { .. })
        )
    })
}

/// One batch run through the engine, its steps counted into `report`; a libtorch panic is an
/// error. Also: the last step reported.
fn run_batch(
    batch: &[Run],
    options: &Options,
    models: &mut ModelCache,
    report: &mut Report,
) -> (anyhow::Result<Vec<PromptResult>>, usize) {
    let spec = batch_spec(batch, options);
    let rows: Vec<RowSpec> = batch
        .iter()
        .map(|r| RowSpec { seed: r.seed, name: r.name.clone(), run_id: r.id.clone() })
        .collect();
    let mut steps = BatchSteps { report, runs: batch.len() as u64, last_step: 0 };
    let hooks = Hooks { models, reporter: &mut steps, stop: &interrupt::requested };
    let width = options.width.max(batch.len());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run::run_batch(&spec, Batch { rows, width }, hooks)
    }));
    let result = match outcome {
        Ok(result) => result,
        Err(payload) => Err(anyhow::anyhow!(torch_error::payload_text(&*payload))),
    };
    (result, steps.last_step)
}

/// A finished batch's runs recorded as done or failed (a frozen prompt is a failure) and
/// counted; `true` when the batch was interrupted (its runs are redone next time).
fn settle(batch: &[Run], results: &[PromptResult], options: &Options, report: &mut Report) -> bool {
    let (mut done, mut failed, mut interrupted) = (0, 0, false);
    for (run, result) in batch.iter().zip(results) {
        if result.record.interrupted {
            interrupted = true;
        } else if let Some(step) = result.record.frozen_at_step {
            failed += 1;
            let _ = state::record_failure(&options.out, run, &frozen_error(step as u64));
        } else {
            done += 1;
            state::clear_failure(&options.out, run);
        }
    }
    report.finished(done, failed);
    interrupted
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
        children.push(spawn_worker(&exe, base_args, device_arg, k, w, tx.clone())?);
    }
    drop(tx);
    let mut open = workers.len();
    while open > 0 {
        let Ok((k, line)) = rx.recv() else { break };
        match line {
            None => open -= 1,
            Some(line) => match line.strip_prefix(PROGRESS_TAG) {
                Some(fields) => report.worker_progress(k, fields),
                None => report.say(&format!("[worker {k}] {line}")),
            },
        }
    }
    let mut died = Vec::new();
    for (k, (mut child, place)) in children.into_iter().enumerate() {
        let status = child.wait()?;
        interrupt::stop_forwarding_to(child.id());
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
    if interrupt::requested() {
        report.tally.interrupted = true;
    }
    report.finish();
    let _ = std::io::stdout().flush();
    Ok((report.tally(), died))
}

/// Worker `k` started on its part (in its own process group, signals passed on to it), its
/// stdout's lines sent to `tx` as `(k, Some(line))` and `(k, None)` at its end. Also: where it
/// runs ("GPU 1", "the CPU").
fn spawn_worker(
    exe: &Path,
    base_args: &[String],
    device_arg: &str,
    k: usize,
    w: &WorkerPlan,
    tx: std::sync::mpsc::Sender<(usize, Option<String>)>,
) -> anyhow::Result<(std::process::Child, String)> {
    let mut cmd = Command::new(exe);
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
    // Its own process group: a Ctrl-C at the terminal reaches it once, passed on by the
    // parent (with a SIGTERM to the parent alone), not twice.
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    interrupt::forward_signals_to(child.id());
    eprintln!("sweep: worker {k} (pid {}) on {place}: {} pending run(s)", child.id(), w.runs);
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((k, Some(line))).is_err() {
                break;
            }
        }
        let _ = tx.send((k, None));
    });
    Ok((child, place))
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
