//! A run's progress as the user sees it — a progress bar on a terminal, the seed's log lines on
//! stdout, warnings on stderr — and the history of its steps kept for the CSV, bounded.
//!
//! The history keeps every step up to [`MAX_HISTORY_ROWS`]; a longer run (`--steps` of a billion
//! is the natural "until I press Ctrl-C") keeps every second step of it, then every fourth, and
//! so on, so memory never grows with the step count beyond the bound. The record states the
//! interval (`history_every`).

use clip_core::clip::excerpt::excerpt;
use clip_core::engine::optimize::StepStats;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// Most steps the history holds (the seed's 10 000 steps are all kept).
pub const MAX_HISTORY_ROWS: usize = 10_000;

/// Every step's statistics up to a bound, then thinned: rows at steps that are multiples of
/// `every`, plus the last step seen.
#[derive(Debug, Default)]
pub struct History {
    rows: Vec<StepStats>,
    every: usize,
    last: Option<StepStats>,
}

impl History {
    pub fn new() -> Self {
        Self { rows: Vec::new(), every: 1, last: None }
    }

    pub fn push(&mut self, stats: &StepStats) {
        if stats.step.is_multiple_of(self.every) {
            if self.rows.len() == MAX_HISTORY_ROWS {
                self.every *= 2;
                let every = self.every;
                self.rows.retain(|r| r.step % every == 0);
            }
            if stats.step.is_multiple_of(self.every) {
                self.rows.push(stats.clone());
            }
        }
        self.last = Some(stats.clone());
    }

    /// Steps between rows.
    pub fn every(&self) -> usize {
        self.every
    }

    /// The rows in order, ending with the last step seen.
    pub fn rows(&self) -> impl Iterator<Item = &StepStats> {
        let tail = self.last.as_ref().filter(|l| self.rows.last().is_none_or(|r| r.step != l.step));
        self.rows.iter().chain(tail)
    }
}

/// The progress bar (only on a terminal), the seed's log lines and the bounded history.
pub struct Progress<'a> {
    prompts: &'a [String],
    show_tv: bool,
    tv_weight: f64,
    steps: usize,
    log_every: usize,
    bar: ProgressBar,
    pub history: History,
    /// Prompts already reported as stopped by a non-finite loss.
    frozen: Vec<bool>,
    quiet: bool,
}

impl<'a> Progress<'a> {
    /// `show_tv`: the log lines show the weighted TV (the seed's constrained lines do).
    pub fn new(
        prompts: &'a [String],
        steps: usize,
        tv_weight: f64,
        show_tv: bool,
        log_every: usize,
    ) -> Self {
        let bar = if std::io::stdout().is_terminal() {
            let style = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  similarity {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(steps as u64).with_style(style)
        } else {
            ProgressBar::hidden()
        };
        Self {
            prompts,
            show_tv,
            tv_weight,
            steps,
            log_every: log_every.max(1),
            bar,
            history: History::new(),
            frozen: vec![false; prompts.len()],
            quiet: false,
        }
    }

    /// No bar, no log lines, no warnings: the history only (a sweep's batch, whose progress the
    /// sweep shows).
    pub fn quiet(prompts: &'a [String], steps: usize) -> Self {
        Self {
            prompts,
            show_tv: false,
            tv_weight: 0.0,
            steps,
            log_every: usize::MAX,
            bar: ProgressBar::hidden(),
            history: History::new(),
            frozen: vec![true; prompts.len()],
            quiet: true,
        }
    }

    pub fn update(&mut self, chunk: &[StepStats]) {
        for stats in chunk {
            if let Some(reason) = &stats.eager_fallback {
                warn_eager_fallback(&self.bar, reason);
            }
            for (i, sim) in stats.similarity.iter().enumerate() {
                if !sim.is_finite() && i < self.prompts.len() {
                    self.announce_frozen(i, stats.step);
                }
            }
            if !self.quiet && (stats.step % self.log_every == 0 || stats.step == self.steps) {
                for (i, prompt) in self.prompts.iter().enumerate() {
                    let mut line = format!(
                        "Step {} | Sim Loss {:.4}",
                        stats.step,
                        1.0 - stats.similarity[i] as f64
                    );
                    if self.show_tv {
                        line.push_str(&format!(
                            " | TV Loss {:.4}",
                            stats.tv[i] as f64 * self.tv_weight
                        ));
                    }
                    line.push_str(&format!(" | {prompt}"));
                    self.println(&line);
                }
            }
            self.history.push(stats);
        }
        if let Some(last) = chunk.last() {
            let sims: Vec<String> = last.similarity.iter().map(|s| format!("{s:.4}")).collect();
            self.bar.set_message(sims.join(" "));
            self.bar.set_position(last.step as u64);
        }
    }

    /// Says once per prompt, on stderr, that it stopped at `step` (a non-finite loss or gradient).
    pub fn announce_frozen(&mut self, index: usize, step: usize) {
        let Some(flag) = self.frozen.get_mut(index) else { return };
        if std::mem::replace(flag, true) {
            return;
        }
        let message = format!(
            "warning: prompt {} stopped at step {step}: its loss or gradient is not finite \
             (NaN/Inf, e.g. fp16 overflow); it keeps its last good image, the others go on",
            excerpt(&self.prompts[index])
        );
        self.bar.suspend(|| eprintln!("{message}"));
    }

    fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Says on stderr that a run's steps go on eagerly, and why (the executor fell back from the CUDA
/// graph: `StepStats::eager_fallback`).
pub fn warn_eager_fallback(bar: &ProgressBar, reason: &str) {
    bar.suspend(|| eprintln!("warning: no CUDA graph, every further step runs eagerly: {reason}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(step: usize) -> StepStats {
        StepStats { step, similarity: vec![step as f32], tv: vec![0.0], ..Default::default() }
    }

    #[test]
    fn the_history_is_bounded_and_keeps_the_last_step() {
        let mut history = History::new();
        for step in 1..=10_000 {
            history.push(&stats(step));
        }
        assert_eq!(history.every(), 1);
        assert_eq!(history.rows().count(), 10_000);
        for step in 10_001..=25_003 {
            history.push(&stats(step));
        }
        assert_eq!(history.every(), 4);
        let steps: Vec<usize> = history.rows().map(|r| r.step).collect();
        assert!(steps.len() <= MAX_HISTORY_ROWS + 1);
        assert!(steps.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(steps[..3], [4, 8, 12]);
        assert_eq!(*steps.last().unwrap(), 25_003);
        assert!(steps[..steps.len() - 1].iter().all(|s| s % 4 == 0));
    }
}
