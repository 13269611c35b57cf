//! The history of a run's steps kept for the CSV, bounded (how the steps are shown is the
//! reporter's: `reporter.rs`), and the warning that the steps go on eagerly.
//!
//! The history keeps every step up to [`MAX_HISTORY_ROWS`]; a longer run (`--steps` of a billion
//! is the natural "until I press Ctrl-C") keeps every second step of it, then every fourth, and
//! so on, so memory never grows with the step count beyond the bound. The record states the
//! interval (`history_every`).

use clip_core::engine::optimize::StepStats;
use indicatif::ProgressBar;

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
