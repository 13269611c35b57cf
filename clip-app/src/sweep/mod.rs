//! `clip sweep SPEC.toml`: a grid of runs — the Cartesian product of the SPEC's axes (`spec.rs`,
//! `plan.rs`) — batched, resumable and shardable, here (`local.rs`: this process, one worker per
//! GPU, or CPU workers) or as a Slurm job array (`slurm.rs`).
//!
//! - Batched: runs that differ only in prompt and seed share one optimisation of `--batch-prompts`
//!   rows (default 32 on CUDA, 3 on the CPU); each run draws from its own seed (keyed draws) and
//!   every batch has the same width (the last padded), so a run's result does not depend on its
//!   batch-mates, its shard or the number of workers, and a run redone alone is the same, bit for
//!   bit on the CPU (where each worker computes on one thread for that reason).
//! - Resumable, idempotent: a run is done when its record (with its run id) is there
//!   (`state.rs`); an invocation does only the rest, and an interrupted batch is redone whole.
//! - `--shard I/N`: the runs whose id mod N is I — stable as prompts are added.

pub mod local;
pub mod plan;
pub mod slurm;
pub mod spec;
pub mod state;

use super::cli::{UsageError, USAGE_EXIT};
use super::device::DeviceChoice;
use super::interrupt;
use plan::{Plan, Run, Shard};
use spec::Spec;
use state::{RunState, States};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tch::Device;

/// Rows per optimisation unless `--batch-prompts` says otherwise.
pub const DEFAULT_BATCH_CUDA: usize = 32;
pub const DEFAULT_BATCH_CPU: usize = 3;
/// Most array tasks `--slurm` makes unless `--tasks` says otherwise.
pub const DEFAULT_MAX_TASKS: usize = 100;

/// `clip sweep`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// The sweep: a TOML file whose keys are `clip generate`'s settings; a list makes an axis.
    #[arg(value_name = "SPEC.toml")]
    pub spec: PathBuf,
    /// Print how many runs are done, pending and failed (and the failed runs' errors); run nothing.
    #[arg(long, conflicts_with_all = ["dry_run", "slurm"])]
    pub status: bool,
    /// List the runs (id, state, model, name, seed, prompt; tab-separated) without running them.
    #[arg(long, conflicts_with = "slurm")]
    pub dry_run: bool,
    /// Only shard I of N: the runs whose id mod N is I (0 <= I < N).
    #[arg(long, value_name = "I/N", value_parser = parse_shard, conflicts_with = "slurm")]
    pub shard: Option<Shard>,
    /// One worker process per GPU (all, or a list such as 0,1), each on its own part of the runs.
    #[arg(long, value_name = "all|0,1,…", conflicts_with_all = ["workers", "slurm"])]
    pub gpus: Option<String>,
    /// N worker processes on the CPU (each on one thread), each on its own part of the runs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256), conflicts_with = "slurm")]
    pub workers: Option<u64>,
    /// Rows per optimisation batch (runs that differ only in prompt and seed share one); default 32
    /// on CUDA, 3 on the CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub batch_prompts: Option<u64>,
    /// Where the runs compute: cpu, cuda or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The output directory, instead of the SPEC's `out`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Submit the sweep to Slurm as a job array (task i runs `--shard i/N`); writes
    /// <out>/sweep.sbatch.
    #[arg(long)]
    pub slurm: bool,
    /// Slurm: the partition.
    #[arg(long, value_name = "P", requires = "slurm")]
    pub partition: Option<String>,
    /// Slurm: GPUs per array task (more than 1: one worker per GPU inside the task).
    #[arg(long, value_name = "G", default_value_t = 0, requires = "slurm")]
    pub gpus_per_task: usize,
    /// Slurm: at most K array tasks at once.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..), requires = "slurm")]
    pub array_parallel: Option<u64>,
    /// Slurm: each task's time limit (e.g. 04:00:00).
    #[arg(long, value_name = "T", requires = "slurm")]
    pub time: Option<String>,
    /// Slurm: an extra `#SBATCH` line (repeatable), e.g. --sbatch-arg=--mem=32G.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true, requires = "slurm")]
    pub sbatch_arg: Vec<String>,
    /// Slurm: array tasks (shards); default one per batch of the runs, at most 100.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000), requires = "slurm")]
    pub tasks: Option<u64>,
    /// Slurm: write and print the script, submit nothing.
    #[arg(long, requires = "slurm")]
    pub print: bool,
    /// Slurm: wait for the array to end, then print --status.
    #[arg(long, requires = "slurm", conflicts_with = "print")]
    pub wait: bool,
    /// Internal: this process is worker K of G of the shard (`--gpus`, `--workers`).
    #[arg(long, value_name = "K/G", value_parser = parse_shard, hide = true)]
    pub worker: Option<Shard>,
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse()
}

/// The sweep, as the flags ask. Exit status: 0 every run done; 1 some failed (recorded) or a
/// worker died; 2 bad input (nothing started); 130 Ctrl-C.
pub fn main(args: &SweepArgs) -> anyhow::Result<ExitCode> {
    match sweep(args) {
        Err(err) if super::cli::is_usage_error(&err) => {
            eprintln!("error: {}", interrupt::error_line(&err));
            Ok(ExitCode::from(USAGE_EXIT))
        }
        other => other,
    }
}

/// One field of `--dry-run`'s tab-separated lines: a backslash, tab, newline or carriage return as
/// `\\`, `\t`, `\n`, `\r`, any other control character as `\xNN`, so that a line is one run
/// and a tab separates fields.
pub fn tsv_field(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// The GPUs `--gpus` names.
fn gpu_list(text: &str) -> anyhow::Result<Vec<usize>> {
    let count = if tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
    if count == 0 {
        return Err(usage(format!("--gpus {text}: no CUDA device is available here")));
    }
    if text.trim() == "all" {
        return Ok((0..count).collect());
    }
    let mut gpus = Vec::new();
    for part in text.split(',') {
        let g: usize = part.trim().parse().map_err(|_| {
            usage(format!(
                "--gpus {text}: {:?} is not a GPU number (give all, or e.g. 0,1)",
                part.trim()
            ))
        })?;
        if g >= count {
            return Err(usage(format!(
                "--gpus {text}: there is no GPU {g} (this machine has {count})"
            )));
        }
        if gpus.contains(&g) {
            return Err(usage(format!("--gpus {text}: GPU {g} is given twice")));
        }
        gpus.push(g);
    }
    Ok(gpus)
}

impl SweepArgs {
    /// Prompts per batch: `--batch-prompts`, or the device's default.
    fn batch_width(&self, device: Device) -> usize {
        self.batch_prompts.map(|n| n as usize).unwrap_or(match device {
            Device::Cpu => DEFAULT_BATCH_CPU,
            _ => DEFAULT_BATCH_CUDA,
        })
    }
}

fn sweep(args: &SweepArgs) -> anyhow::Result<ExitCode> {
    let spec = Spec::read(&args.spec)?;
    let out = match &args.out {
        Some(o) => std::path::absolute(o).unwrap_or(o.clone()),
        None => spec.out.clone(),
    };
    let plan = Plan::new(&spec)?;
    plan.check_unique_files()?;
    check_settings(&plan, &out)?;
    let share = Share::of(args);

    if args.slurm {
        return submit_slurm(args, &spec, &plan, &out);
    }
    let gpus = gpus(args)?;

    let states = States::scan(&out);
    if args.status {
        print_status(&spec, share.runs(&plan), &states, &share.scope);
        return Ok(ExitCode::SUCCESS);
    }
    let device = match (&gpus, args.device) {
        (Some(_), _) => Device::Cuda(0),
        (None, choice) => choice.resolve().map_err(|e| usage(e.to_string()))?,
    };
    let width = args.batch_width(device);
    let pending = || share.runs(&plan).filter(|r| states.of(r) != RunState::Done);
    if args.dry_run {
        let runs = print_dry_run(share.runs(&plan), &states);
        let count = Count::of(pending(), width);
        eprintln!(
            "{runs} run(s){}: {} to do, in {} batch(es) of up to {width}; results in {}",
            share.scope,
            count.runs,
            count.batches,
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runs = share.runs(&plan).count();
    let count = Count::of(pending(), width);
    if count.runs == 0 {
        println!(
            "sweep: nothing to do: all {runs} run(s){} of {} are done (in {})",
            share.scope,
            spec.path.display(),
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    interrupt::install();
    let options = local::Options {
        out: out.clone(),
        device: match device {
            Device::Cpu => DeviceChoice::Cpu,
            _ => DeviceChoice::Cuda,
        },
        width,
        machine_progress: args.worker.is_some(),
    };
    let workers = gpus.as_ref().map(Vec::len).or(args.workers.map(|n| n as usize)).unwrap_or(1);
    let (tally, died) = if workers > 1 && args.worker.is_none() {
        let sweep =
            Sweep { spec: &spec, out: &out, shard: share.shard, scope: &share.scope, width };
        run_on_workers(args, &sweep, pending(), (count.runs, runs), gpus.as_deref(), workers)?
    } else {
        if args.worker.is_none() {
            println!(
                "sweep: {} pending run(s){} of {runs} in {} batch(es) of {width}; results in {}",
                count.runs,
                share.scope,
                count.batches,
                out.display()
            );
        }
        let batches = plan::batches(pending(), width);
        (run_here(batches, &count, &options, device), Vec::new())
    };
    for line in &died {
        eprintln!("error: {line}");
    }
    if args.worker.is_none() {
        print_summary(args, share.runs(&plan), &out, &share.scope, &tally);
    }
    Ok(exit_code(&tally, &died))
}

/// What a stream of runs holds: how many, their prompt-steps, and the batches they make.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    runs: usize,
    prompt_steps: u64,
    batches: usize,
}

impl Count {
    /// Counts `runs` in the batches [`plan::batches`] makes of them, one batch held at a time.
    fn of(runs: impl Iterator<Item = Run>, width: usize) -> Self {
        plan::batches(runs, width).fold(Self::default(), |count, batch| Self {
            runs: count.runs + batch.len(),
            prompt_steps: count.prompt_steps
                + batch.iter().map(|r| r.settings.steps as u64).sum::<u64>(),
            batches: count.batches + 1,
        })
    }
}

/// The batches run in this process, with the sweep's progress.
fn run_here(
    batches: impl Iterator<Item = Vec<Run>>,
    count: &Count,
    options: &local::Options,
    device: Device,
) -> local::Tally {
    if device == Device::Cpu {
        // Bit-for-bit results whatever the batch: one thread (see the module's notes).
        tch::set_num_threads(1);
    }
    let mut report = local::Report::new(count.runs, count.prompt_steps, options.machine_progress);
    let tally = local::run_batches(batches, count.batches, options, &mut report);
    report.finish();
    tally
}

/// 130 when interrupted, 1 when a run failed or a worker died, else 0.
fn exit_code(tally: &local::Tally, died: &[String]) -> ExitCode {
    if tally.interrupted {
        ExitCode::from(interrupt::INTERRUPTED_EXIT)
    } else if tally.failed > 0 || !died.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// This invocation's share of the runs: its shard (and worker), and how messages name it.
struct Share {
    shard: Shard,
    worker: Option<Shard>,
    scope: String,
}

impl Share {
    fn of(args: &SweepArgs) -> Self {
        let scope = match (args.shard, args.worker) {
            (None, None) => String::new(),
            (Some(s), None) => format!(" (shard {s})"),
            (s, Some(w)) => format!(" (shard {}, worker {w})", s.unwrap_or(Shard::ALL)),
        };
        Self { shard: args.shard.unwrap_or(Shard::ALL), worker: args.worker, scope }
    }

    fn holds(&self, run: &Run) -> bool {
        match &self.worker {
            Some(part) => self.shard.holds_part(part, run),
            None => self.shard.holds(run),
        }
    }

    /// The runs of the share, streamed from `plan`.
    fn runs<'p>(&'p self, plan: &'p Plan) -> impl Iterator<Item = Run> + 'p {
        plan.runs().filter(|r| self.holds(r))
    }
}

/// `--gpus`, checked: `None` when not given.
fn gpus(args: &SweepArgs) -> anyhow::Result<Option<Vec<usize>>> {
    if args.gpus.is_some() && args.device == DeviceChoice::Cpu {
        return Err(usage("--gpus runs on CUDA: not with --device cpu (use --workers N)".into()));
    }
    args.gpus.as_deref().map(gpu_list).transpose()
}

/// What one sweep invocation works on.
struct Sweep<'a> {
    spec: &'a Spec,
    out: &'a std::path::Path,
    shard: Shard,
    scope: &'a str,
    width: usize,
}

/// The pending runs on `workers` child processes (one per GPU of `gpus`, else on the CPU), each
/// its share by id; what they did and which of them died.
fn run_on_workers(
    args: &SweepArgs,
    sweep: &Sweep,
    pending: impl Iterator<Item = Run>,
    (pending_count, runs): (usize, usize),
    gpus: Option<&[usize]>,
    workers: usize,
) -> anyhow::Result<(local::Tally, Vec<String>)> {
    let mut base = vec![
        "sweep".to_string(),
        sweep.spec.path.display().to_string(),
        "--out".to_string(),
        sweep.out.display().to_string(),
        "--batch-prompts".to_string(),
        sweep.width.to_string(),
    ];
    if let Some(s) = args.shard {
        base.extend(["--shard".to_string(), s.to_string()]);
    }
    let mut plans: Vec<local::WorkerPlan> = (0..workers)
        .map(|k| local::WorkerPlan {
            part: Shard { index: k as u64, count: workers as u64 },
            gpu: gpus.map(|g| g[k]),
            runs: 0,
            prompt_steps: 0,
        })
        .collect();
    for run in pending {
        if let Some(plan) = plans.iter_mut().find(|p| sweep.shard.holds_part(&p.part, &run)) {
            plan.runs += 1;
            plan.prompt_steps += run.settings.steps as u64;
        }
    }
    let device_arg = if gpus.is_some() { "cuda" } else { "cpu" };
    println!(
        "sweep: {pending_count} pending run(s){} of {runs} on {workers} workers, batches of {}; \
         results in {}",
        sweep.scope,
        sweep.width,
        sweep.out.display()
    );
    local::run_workers(&base, &plans, device_arg)
}

/// `--dry-run`: one tab-separated line per run (id, state, model, name, seed, prompt), as the
/// runs come; how many.
fn print_dry_run(runs: impl Iterator<Item = Run>, states: &States) -> usize {
    let mut count = 0;
    let stdout = std::io::stdout();
    let mut stdout = std::io::BufWriter::new(stdout.lock());
    for run in runs {
        count += 1;
        let label = run.model.label();
        let fields =
            [run.id.as_str(), states.of(&run).word(), &label, &run.name, &run.seed.to_string()];
        let mut line: Vec<String> = fields.iter().map(|f| tsv_field(f)).collect();
        line.push(tsv_field(&run.prompt));
        if writeln!(stdout, "{}", line.join("\t")).is_err() {
            break; // a closed pipe (`| head`): nothing more to say
        }
    }
    let _ = stdout.flush();
    count
}

/// The end of a sweep: what is done, failed and pending on disk (after this invocation's
/// `tally`), and the first failed runs' errors.
fn print_summary(
    args: &SweepArgs,
    runs: impl Iterator<Item = Run>,
    out: &std::path::Path,
    scope: &str,
    tally: &local::Tally,
) {
    let states = States::scan(out);
    let (mut total, mut done, mut failed) = (0usize, 0usize, Vec::new());
    for run in runs {
        total += 1;
        match states.of(&run) {
            RunState::Done => done += 1,
            RunState::Failed(e) => failed.push(format!(
                "failed: {} {} {} {:?}: {e}",
                run.id,
                run.model.label(),
                run.name,
                run.prompt
            )),
            RunState::Pending => {}
        }
    }
    let elsewhere = match tally.elsewhere {
        0 => String::new(),
        n => format!(", {n} left to another process running them"),
    };
    println!(
        "sweep: {done} of {total} run(s){scope} done, {} failed, {} pending (this invocation: {} \
         done, {} failed{elsewhere})",
        failed.len(),
        total - done - failed.len(),
        tally.done,
        tally.failed
    );
    for line in failed.iter().take(10) {
        eprintln!("{line}");
    }
    if failed.len() > 10 {
        eprintln!(
            "… and {} more: `clip sweep {} --status` lists them",
            failed.len() - 10,
            args.spec.display()
        );
    }
}

/// Each distinct request is validated before anything starts (exit 2), the setting named by its
/// SPEC key; its settings are checked against the models' resolution (for checkpoints of unknown
/// architecture, when their batch loads).
fn check_settings(plan: &Plan, out: &std::path::Path) -> anyhow::Result<()> {
    for run in plan.variants().filter_map(|v| v.first_run()) {
        let which = || format!("the runs of {} {}", run.model.label(), run.name);
        run.request(out)
            .validate()
            .map_err(|e| usage(format!("{}: {}: {}", which(), e.setting.key(), e.problem)))?;
        if let Some(res) = run.model.known_resolution() {
            run.settings.validate(res).map_err(|e| usage(format!("{}: {e}", which())))?;
        }
    }
    Ok(())
}

fn print_status(spec: &Spec, runs: impl Iterator<Item = Run>, states: &States, scope: &str) {
    let mut counts = [0usize; 3];
    let mut failed = Vec::new();
    let mut total = 0usize;
    for run in runs {
        total += 1;
        match states.of(&run) {
            RunState::Done => counts[0] += 1,
            RunState::Pending => counts[1] += 1,
            RunState::Failed(e) => {
                counts[2] += 1;
                failed.push((run, e));
            }
        }
    }
    println!(
        "{total} run(s){scope}: {} done, {} pending, {} failed ({})",
        counts[0],
        counts[1],
        counts[2],
        spec.path.display()
    );
    for (run, e) in failed {
        println!(
            "failed\t{}\t{}\t{}\t{}\t{:?}\t{e}",
            run.id,
            run.model.label(),
            run.name,
            run.seed,
            run.prompt
        );
    }
}

/// Every value written into the Slurm script, refused when it holds a control character (or,
/// `out`, a backslash).
fn check_slurm_fields(args: &SweepArgs, spec: &Spec, out: &std::path::Path) -> anyhow::Result<()> {
    let out_text = out.display().to_string();
    let spec_text = spec.path.display().to_string();
    let mut fields = vec![("out", out_text.as_str()), ("the SPEC's path", spec_text.as_str())];
    fields.extend(args.partition.as_deref().map(|p| ("--partition", p)));
    fields.extend(args.time.as_deref().map(|t| ("--time", t)));
    fields.extend(args.sbatch_arg.iter().map(|a| ("--sbatch-arg", a.as_str())));
    slurm::check_fields(fields).map_err(usage)?;
    if out_text.contains('\\') {
        return Err(usage(format!(
            "out: {out_text:?} holds a backslash, which turns off Slurm's %A and %a in the \
             tasks' log names: use an output directory without one with --slurm"
        )));
    }
    Ok(())
}

/// The arguments each array task gives `clip sweep` (its shard is the task's index).
fn task_args(args: &SweepArgs, spec: &Spec, out: &std::path::Path) -> Vec<String> {
    let mut sweep_args =
        vec![spec.path.display().to_string(), "--out".to_string(), out.display().to_string()];
    if let Some(b) = args.batch_prompts {
        sweep_args.extend(["--batch-prompts".to_string(), b.to_string()]);
    }
    if args.device != DeviceChoice::Auto {
        let d = if args.device == DeviceChoice::Cpu { "cpu" } else { "cuda" };
        sweep_args.extend(["--device".to_string(), d.to_string()]);
    }
    sweep_args
}

fn submit_slurm(
    args: &SweepArgs,
    spec: &Spec,
    plan: &Plan,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    if !args.print && !local::on_path("sbatch") {
        return Err(usage(
            "--slurm: `sbatch` is not on the PATH (run on a Slurm login node, or use --print to \
             write the script only)"
                .into(),
        ));
    }
    if args.wait && !local::on_path("squeue") {
        return Err(usage("--wait: `squeue` is not on the PATH".into()));
    }
    check_slurm_fields(args, spec, out)?;
    // For the number of tasks only: each task resolves its own default on its own device.
    let width =
        args.batch_width(if args.gpus_per_task > 0 { Device::Cuda(0) } else { Device::Cpu });
    let tasks = match args.tasks {
        Some(n) => n as usize,
        None => (plan.len() as usize).div_ceil(width).clamp(1, DEFAULT_MAX_TASKS),
    };
    let log_dir = slurm::log_dir(out);
    std::fs::create_dir_all(&log_dir)?;
    let sweep_args = task_args(args, spec, out);
    let options = slurm::SlurmOptions {
        partition: args.partition.clone(),
        gpus_per_task: args.gpus_per_task,
        array_parallel: args.array_parallel.map(|k| k as usize),
        time: args.time.clone(),
        sbatch_args: args.sbatch_arg.clone(),
        tasks,
    };
    let exe = std::env::current_exe()?;
    let workdir = std::env::current_dir()?;
    let job_name = format!(
        "clip-sweep-{}",
        spec.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    );
    let text = slurm::script(&exe, &workdir, &job_name, &log_dir, &sweep_args, &options);
    let path = out.join("sweep.sbatch");
    super::output::write_atomic(&path, text.as_bytes())?;
    if args.print {
        print!("{text}");
        eprintln!(
            "wrote {} ({tasks} array task(s)); submit it with `sbatch {}`",
            path.display(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let id = slurm::submit(&path)?;
    println!(
        "sweep: submitted Slurm array job {id} ({tasks} task(s)) from {}; logs in {}; `clip sweep {} \
         --status` shows the progress",
        path.display(),
        log_dir.display(),
        args.spec.display()
    );
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    interrupt::install();
    slurm::wait(&id, Duration::from_millis(500))?;
    let states = States::scan(out);
    print_status(spec, plan.runs(), &states, "");
    if plan.runs().all(|r| states.of(&r) == RunState::Done) {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}
