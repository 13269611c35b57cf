//! The record of one prompt's run: the request, the outcome and the float scores, before the
//! files are written (their hashes, re-scores and distances are filled in as they are).

use super::*;
use crate::output::{self, InitRecord, MemberRecord, RunRecord};
use clip_core::engine::optimize::Keep;

impl Saving<'_> {
    /// Prompt `i`'s record before its files are written: the request, the outcome and the float
    /// scores (the PNG's hash and re-scores, the start's distances and the wall time come after).
    pub(super) fn record(&self, i: usize, stem: &str) -> RunRecord {
        let (spec, resolved, loaded, outcome) =
            (self.spec, self.resolved, self.loaded, self.outcome);
        let settings = &spec.settings;
        let resolution = loaded.resolution();
        let done = outcome.steps_done;
        let best = outcome.best.as_ref().and_then(|b| b.get(i).copied());
        let member_initial: Vec<f64> = self.scores.initial.iter().map(|s| s[i]).collect();
        let member_unquantized: Vec<f64> = self.scores.unquantized.iter().map(|s| s[i]).collect();
        let (weights, weights_sha256) = match loaded.members.as_slice() {
            [one] => (Some(one.weights.display().to_string()), Some(one.weights_sha256.clone())),
            _ => (None, None),
        };
        let row = resolved.rows.get(i);
        let mut record = RunRecord {
            schema: output::SCHEMA,
            prompt: resolved.prompts[i].clone(),
            model: loaded.name.clone(),
            mode: resolved.names[i].clone(),
            preset: spec.preset,
            image: format!("{stem}.png"),
            image_sha256: String::new(),
            weights,
            weights_sha256,
            ensemble: Vec::new(),
            param: settings.param,
            decay: settings.decay,
            augment: settings.augment.clone(),
            size: settings.canvas_for(resolution),
            keep: settings.keep,
            views_per_image: settings.views_per_image(),
            steps: settings.steps,
            steps_done: done,
            interrupted: outcome.interrupted,
            frozen_at_step: outcome.frozen_at.get(i).copied().flatten(),
            learning_rate: settings.learning_rate,
            tv_weight: settings.tv_weight,
            negative_weight: (!spec.negatives.is_empty()).then_some(settings.negative_weight),
            negatives: Vec::new(),
            init: None,
            seed: row.map_or(resolved.seed, |r| r.seed),
            draws: row.map(|_| "keyed".to_string()),
            run_id: row.map(|r| r.run_id.clone()),
            device: device_name(resolved.device),
            precision: resolved.precision,
            resolution,
            batch_size: resolved.width,
            initial_similarity: self.weighted(&member_initial),
            final_similarity: f64::NAN,
            final_similarity_unquantized: self.weighted(&member_unquantized),
            best_step: best.filter(|_| settings.keep == Keep::Best).map(|b| b.0),
            best_similarity_loss: best.map(|b| b.1),
            history_every: self.history.every(),
            steps_per_second: outcome.steps_per_second(done),
            loop_seconds: outcome.loop_seconds,
            execution: outcome.execution.to_string(),
            wall_seconds: 0.0,
        };
        if self.ensemble() {
            record.ensemble = self.members(&member_initial, &member_unquantized);
        }
        if let (Some((photo, photo_sha256)), Some(_)) = (&self.start_photo, &loaded.start) {
            record.init = Some(InitRecord {
                photo: photo.display().to_string(),
                photo_sha256: photo_sha256.clone(),
                start_image: format!("{stem}{}", output::START_SUFFIX),
                start_image_sha256: String::new(),
                start_similarity: record.initial_similarity,
                start_similarity_by_model: self.by_model(&member_initial),
                epsilon: settings.epsilon,
                linf: f64::NAN,
                l2: f64::NAN,
            });
        }
        record
    }

    /// An ensemble's members, each with its float scores (its PNG score comes after).
    pub(super) fn members(&self, initial: &[f64], unquantized: &[f64]) -> Vec<MemberRecord> {
        let members = self.loaded.members.iter().enumerate();
        members
            .map(|(m, member)| MemberRecord {
                model: member.name.clone(),
                token: member.token.clone(),
                weights: member.weights.display().to_string(),
                weights_sha256: member.weights_sha256.clone(),
                weight: self.resolved.weights[m],
                resolution: member.model.model.config.image_resolution,
                initial_similarity: initial[m],
                final_similarity: f64::NAN,
                final_similarity_unquantized: unquantized[m],
            })
            .collect()
    }
}
