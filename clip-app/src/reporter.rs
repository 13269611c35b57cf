//! What a run tells its user while it runs — the banner, the steps, prompts that stopped, the
//! loop's summary, each result saved, notes — through one trait that each front end provides:
//! the CLI's [`Console`] (a bar on a terminal, the seed's log lines on stdout, warnings on
//! stderr), a sweep's (its own progress over all runs), Python's (the progress callback). The run
//! itself prints nothing: it tells its reporter.

use crate::progress::warn_eager_fallback;
use crate::run::PromptResult;
use clip_core::clip::excerpt::excerpt;
use clip_core::engine::optimize::{Outcome, StepStats};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A line on stdout; a closed pipe is ignored (`println!` would panic): printing never
/// decides whether a result is saved.
pub fn print_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The optimisation about to start.
pub struct Started<'a> {
    pub prompts: &'a [String],
    pub steps: usize,
    pub tv_weight: f64,
    /// The seed's log lines every this many steps (and at the last).
    pub log_every: usize,
}

/// Receives what a run has to say. Every method has a default: the banner, steps, stopped prompts,
/// the summary and the saved results are silent; notes and the CUDA graph fallback go to stderr
/// (a user should see those whatever the front end).
pub trait Reporter {
    /// Before a model loads: the run's settings in one line.
    fn banner(&mut self, _line: &str) {}

    /// The optimisation starts.
    fn started(&mut self, _run: &Started) {}

    /// The statistics of the steps since the last read-back (the real prompts' only).
    fn steps(&mut self, _chunk: &[StepStats]) {}

    /// Prompt `index` stopped at `step`: its loss or gradient is not finite.
    fn frozen(&mut self, _index: usize, _prompt: &str, _step: usize) {}

    /// The executor fell back from a CUDA graph to eager steps, for `reason`.
    fn eager_fallback(&mut self, reason: &str) {
        warn_eager_fallback(&ProgressBar::hidden(), reason);
    }

    /// The optimisation ended (all steps done, or stopped) after `steps` planned.
    fn finished(&mut self, _outcome: &Outcome, _steps: usize) {}

    /// One prompt's result is written.
    fn saved(&mut self, _result: &PromptResult) {}

    /// Something the user should know that changes nothing (e.g. stale temporaries removed).
    fn note(&mut self, message: &str) {
        eprintln!("note: {message}");
    }
}

/// A reporter that keeps to the defaults: notes and warnings only.
pub struct Silent;

impl Reporter for Silent {}

/// The CLI's reporter: the banner and the seed's log lines on stdout (through the bar on a
/// terminal), the bar, the stopped prompts and notes on stderr, the loop's summary and each
/// result's "Final Similarity" line on stdout.
#[derive(Default)]
pub struct Console {
    bar: Option<ProgressBar>,
    prompts: Vec<String>,
    steps: usize,
    tv_weight: f64,
    log_every: usize,
    /// Prompts already reported as stopped.
    frozen: Vec<bool>,
}

impl Console {
    pub fn new() -> Self {
        Self::default()
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => print_line(line),
        }
    }

    fn eprintln(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// The seed's `Step N | Sim Loss x | TV Loss y | prompt` lines of one step.
    fn log_lines(&self, stats: &StepStats) {
        for (i, prompt) in self.prompts.iter().enumerate() {
            let mut line =
                format!("Step {} | Sim Loss {:.4}", stats.step, 1.0 - stats.similarity[i] as f64);
            if self.tv_weight > 0.0 {
                line.push_str(&format!(" | TV Loss {:.4}", stats.tv[i] as f64 * self.tv_weight));
            }
            line.push_str(&format!(" | {prompt}"));
            self.println(&line);
        }
    }
}

impl Reporter for Console {
    fn banner(&mut self, line: &str) {
        self.println(line);
    }

    fn started(&mut self, run: &Started) {
        let bar = if std::io::stdout().is_terminal() {
            let style = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  similarity {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(run.steps as u64).with_style(style)
        } else {
            ProgressBar::hidden()
        };
        *self = Self {
            bar: Some(bar),
            prompts: run.prompts.to_vec(),
            steps: run.steps,
            tv_weight: run.tv_weight,
            log_every: run.log_every.max(1),
            frozen: vec![false; run.prompts.len()],
        };
    }

    fn steps(&mut self, chunk: &[StepStats]) {
        for stats in chunk {
            for (i, sim) in stats.similarity.iter().enumerate() {
                if !sim.is_finite() && i < self.prompts.len() {
                    let prompt = self.prompts[i].clone();
                    self.frozen(i, &prompt, stats.step);
                }
            }
            if stats.step.is_multiple_of(self.log_every) || stats.step == self.steps {
                self.log_lines(stats);
            }
        }
        if let (Some(last), Some(bar)) = (chunk.last(), &self.bar) {
            let sims: Vec<String> = last.similarity.iter().map(|s| format!("{s:.4}")).collect();
            bar.set_message(sims.join(" "));
            bar.set_position(last.step as u64);
        }
    }

    fn frozen(&mut self, index: usize, prompt: &str, step: usize) {
        let Some(flag) = self.frozen.get_mut(index) else { return };
        if std::mem::replace(flag, true) {
            return;
        }
        self.eprintln(&format!(
            "warning: prompt {} stopped at step {step}: its loss or gradient is not finite \
             (NaN/Inf, e.g. fp16 overflow); it keeps its last good image, the others go on",
            excerpt(prompt)
        ));
    }

    fn eager_fallback(&mut self, reason: &str) {
        let hidden = ProgressBar::hidden();
        warn_eager_fallback(self.bar.as_ref().unwrap_or(&hidden), reason);
    }

    fn finished(&mut self, outcome: &Outcome, steps: usize) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let done = outcome.steps_done;
        print_line(&format!(
            "{done} steps in {:.1} s ({:.2} steps/s); steps: {}",
            outcome.loop_seconds,
            outcome.steps_per_second(done),
            outcome.execution
        ));
        if outcome.interrupted {
            print_line(&format!(
                "interrupted at step {done} of {steps}: saving the images reached"
            ));
        }
    }

    fn saved(&mut self, result: &PromptResult) {
        print_line(&format!(
            "{}  ({} -> {})",
            crate::run::final_line(&result.record),
            excerpt(&result.record.prompt),
            result.png.display()
        ));
    }

    fn note(&mut self, message: &str) {
        self.eprintln(&format!("note: {message}"));
    }
}
