//! The optimisation: the engine driven with the run's members, draws, progress and stop.

use super::*;
use crate::interrupt;
use crate::progress::Progress;
use clip_core::clip::torch_error;
use clip_core::engine::draws::{Draws, KeyedDraws, TorchDraws};
use clip_core::engine::objective::Member;
use clip_core::engine::optimize::{optimize_objective_until, Outcome, StepStats};
use tch::Tensor;

/// The optimisation, with the progress bar and log lines; Ctrl-C stops it after the current step.
pub(super) fn optimise(
    spec: &RunRequest,
    resolved: &Resolved,
    loaded: &Loaded,
    hooks: Option<Hooks>,
) -> anyhow::Result<(Outcome, crate::progress::History)> {
    let (mut on_stats, stop): (Option<StatsHook>, &dyn Fn() -> bool) = match hooks {
        Some(h) => (Some(h.on_stats), h.stop),
        None => (None, &interrupt::requested),
    };
    let settings = &spec.settings;
    let mut progress = if resolved.quiet {
        Progress::quiet(&resolved.prompts, settings.steps)
    } else {
        let tv = settings.tv_weight;
        Progress::new(&resolved.prompts, settings.steps, tv, tv > 0.0, spec.log_every)
    };
    let n = resolved.prompts.len();
    // A padded batch repeats its last prompt (and seed) up to the width; their results go.
    let rows: Vec<i64> = (0..resolved.width).map(|i| i.min(n - 1) as i64).collect();
    let padded = resolved.width > n;
    let pad = |t: &Tensor| {
        if padded {
            t.index_select(0, &Tensor::from_slice(&rows).to_device(t.device()))
        } else {
            t.shallow_clone()
        }
    };
    let texts: Vec<Tensor> = loaded.members.iter().map(|m| pad(&m.text)).collect();
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
                progress.update(chunk);
                if let Some(f) = on_stats.as_mut() {
                    f(chunk);
                }
            },
            stop,
        )
    };
    let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(outcome) => outcome?.first(n),
        Err(payload) => {
            let message = torch_error::payload_text(&*payload);
            match torch_error::out_of_memory(&message) {
                Some(oom) if loaded.ensemble() => {
                    let names: Vec<&str> = loaded.members.iter().map(|m| m.name.as_str()).collect();
                    anyhow::bail!(ensemble_out_of_memory(resolved.prompts.len(), &names, &oom))
                }
                _ => std::panic::resume_unwind(payload),
            }
        }
    };
    finish_progress(&mut progress, &outcome, resolved.quiet, settings.steps);
    Ok((outcome, progress.history))
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

/// The progress closed, the frozen prompts announced, and the loop's summary line.
pub(super) fn finish_progress(
    progress: &mut Progress,
    outcome: &Outcome,
    quiet: bool,
    steps: usize,
) {
    progress.finish();
    for (i, step) in outcome.frozen_at.iter().enumerate() {
        if let Some(step) = step {
            progress.announce_frozen(i, *step);
        }
    }
    let done = outcome.steps_done;
    if quiet {
        return;
    }
    println!(
        "{done} steps in {:.1} s ({:.2} steps/s); steps: {}",
        outcome.loop_seconds,
        outcome.steps_per_second(done),
        outcome.execution
    );
    if outcome.interrupted {
        println!("interrupted at step {done} of {steps}: saving the images reached");
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
