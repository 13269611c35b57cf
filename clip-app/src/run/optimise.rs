//! The optimisation: the engine driven with the run's members, draws, progress and stop.

use super::*;
use crate::progress::History;
use crate::reporter::{Reporter, Started};
use clip_core::clip::torch_error;
use clip_core::engine::draws::{Draws, KeyedDraws, TorchDraws};
use clip_core::engine::objective::Member;
use clip_core::engine::optimize::{optimize_objective_until, Outcome, StepStats};
use tch::Tensor;

/// What the optimisation gives the saving: its outcome and the steps' history (for the CSV).
pub(super) struct Optimised {
    pub(super) outcome: Outcome,
    pub(super) history: History,
}

/// The optimisation, told to `reporter` as it goes; `stop` is asked after every step.
pub(super) fn optimise(
    spec: &RunRequest,
    resolved: &Resolved,
    loaded: &Loaded,
    reporter: &mut dyn Reporter,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<Optimised> {
    let settings = &spec.settings;
    reporter.started(&Started {
        prompts: &resolved.prompts,
        steps: settings.steps,
        tv_weight: settings.tv_weight,
        log_every: spec.log_every,
    });
    let mut history = History::new();
    let n = resolved.prompts.len();
    // A padded batch repeats its last prompt (and seed) up to the width; their results go.
    let rows: Vec<i64> = (0..resolved.width).map(|i| i.min(n - 1) as i64).collect();
    let padded = resolved.width > n;
    let texts = padded_texts(loaded, &rows, padded);
    let members: Vec<Member> = loaded
        .members
        .iter()
        .zip(&texts)
        .zip(&resolved.weights)
        .map(|((m, text), &weight)| Member {
            model: &m.model.model,
            text,
            negatives: m.negatives.as_ref(),
            weight,
        })
        .collect();
    let mut draws = draws_for(resolved, &rows);
    let run = || {
        optimize_objective_until(
            &members,
            loaded.start.as_ref(),
            settings,
            draws.as_mut(),
            &mut |chunk| {
                let kept: Vec<StepStats>;
                let chunk = if padded {
                    kept = chunk.iter().map(|s| s.first(n)).collect();
                    &kept
                } else {
                    chunk
                };
                for stats in chunk {
                    if let Some(reason) = &stats.eager_fallback {
                        reporter.eager_fallback(reason);
                    }
                    history.push(stats);
                }
                reporter.steps(chunk);
            },
            stop,
        )
    };
    let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(outcome) => outcome?.first(n),
        Err(payload) => return Err(out_of_memory_or_panic(payload, loaded, n)),
    };
    for (i, step) in outcome.frozen_at.iter().enumerate() {
        if let Some(step) = step {
            reporter.frozen(i, &resolved.prompts[i], *step);
        }
    }
    reporter.finished(&outcome, settings.steps);
    Ok(Optimised { outcome, history })
}

/// Each member's text features, one row per optimisation row (`rows`: a padded batch repeats its
/// last prompt).
fn padded_texts(loaded: &Loaded, rows: &[i64], padded: bool) -> Vec<Tensor> {
    let pad = |t: &Tensor| {
        if padded {
            t.index_select(0, &Tensor::from_slice(rows).to_device(t.device()))
        } else {
            t.shallow_clone()
        }
    };
    loaded.members.iter().map(|m| pad(&m.text)).collect()
}

/// A libtorch panic during the optimisation: an ensemble that ran out of memory is an error
/// saying what to do; anything else goes on unwinding.
fn out_of_memory_or_panic(
    payload: Box<dyn std::any::Any + Send>,
    loaded: &Loaded,
    prompts: usize,
) -> anyhow::Error {
    let message = torch_error::payload_text(&*payload);
    match torch_error::out_of_memory(&message) {
        Some(oom) if loaded.ensemble() => {
            let names: Vec<&str> = loaded.members.iter().map(|m| m.name.as_str()).collect();
            anyhow::anyhow!(ensemble_out_of_memory(prompts, &names, &oom))
        }
        _ => std::panic::resume_unwind(payload),
    }
}

/// The run's random draws: torch's generator seeded with the run's seed, or (a sweep's batch)
/// each of the optimisation's `rows` keyed by its prompt's seed.
pub(super) fn draws_for(resolved: &Resolved, rows: &[i64]) -> Box<dyn Draws> {
    if resolved.rows.is_empty() {
        tch::manual_seed(resolved.seed as i64);
        Box::new(TorchDraws)
    } else {
        let seeds: Vec<u64> = rows.iter().map(|&i| resolved.rows[i as usize].seed).collect();
        Box::new(KeyedDraws::new(&seeds, resolved.device))
    }
}

/// The error for an ensemble that did not fit in the device's memory: the models, and what to do.
pub fn ensemble_out_of_memory(prompts: usize, models: &[&str], oom: &str) -> String {
    format!(
        "the device ran out of memory optimising {prompts} prompt(s) against the ensemble {} \
         ({oom}): run fewer prompts at once (fewer --prompt flags, or split them over several \
         runs), or fewer or smaller models",
        models.join(" + ")
    )
}
