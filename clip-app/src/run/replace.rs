//! Which earlier result a run may replace: only one of the same settings. A result's settings
//! key ([`SettingsKey`]) is what makes its image besides the seed — the models (by their weights'
//! SHA-256 and ensemble weights), the preset and every effective setting, the negatives, the
//! start photo (by its SHA-256) and its budget, the precision — read off a record (any schema)
//! or off a run about to start, so a run from a photo never replaces a run from noise of the
//! same name, nor a 10-step run a 10 000-step one. The same command again (a new seed included)
//! replaces its result, as before. A sweep run's result is replaced by that run alone (its run
//! id: `output::check_existing`).

use super::{Loaded, Prepared, Resolved};
use crate::interrupt;
use crate::output::{OutputError, RunRecord};
use crate::request::RunRequest;
use clip_core::clip::model::Precision;
use clip_core::clip::weights::download;
use clip_core::engine::augment::Augment;
use clip_core::engine::optimize::{Keep, Preset};
use clip_core::engine::param::{Canvas, Param};
use serde::Serialize;

/// Everything that makes a result's image besides its seed (and the device's last bits).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsKey {
    model: String,
    /// Per model: its name, its weights' SHA-256 and its normalised weight in the ensemble.
    members: Vec<(String, String, f64)>,
    preset: Option<Preset>,
    param: Param,
    decay: f64,
    augment: Vec<Augment>,
    size: Canvas,
    keep: Keep,
    steps: usize,
    learning_rate: f64,
    tv_weight: f64,
    negatives: Vec<String>,
    negative_weight: Option<f64>,
    /// The start photo's SHA-256 and the L∞ budget.
    init: Option<(String, Option<f64>)>,
    precision: Precision,
}

impl SettingsKey {
    /// The key of a result, from its record.
    pub fn of_record(r: &RunRecord) -> Self {
        let members = if r.ensemble.is_empty() {
            vec![(r.model.clone(), r.weights_sha256.clone().unwrap_or_default(), 1.0)]
        } else {
            let ensemble = r.ensemble.iter();
            ensemble.map(|m| (m.model.clone(), m.weights_sha256.clone(), m.weight)).collect()
        };
        Self {
            model: r.model.clone(),
            members,
            preset: r.preset,
            param: r.param,
            decay: r.decay,
            augment: r.augment.clone(),
            size: r.size,
            keep: r.keep,
            steps: r.steps,
            learning_rate: r.learning_rate,
            tv_weight: r.tv_weight,
            negatives: r.negatives.iter().map(|n| n.prompt.clone()).collect(),
            negative_weight: r.negative_weight,
            init: r.init.as_ref().map(|i| (i.photo_sha256.clone(), i.epsilon)),
            precision: r.precision,
        }
    }

    /// The settings that differ from `other`'s, by name.
    pub fn differences(&self, other: &Self) -> Vec<String> {
        let (a, b) = (serde_json::to_value(self), serde_json::to_value(other));
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else {
            return Vec::new();
        };
        a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect()
    }
}

/// The key of the results a run is about to write (its models loaded).
fn of_run(spec: &RunRequest, resolved: &Resolved, loaded: &Loaded) -> anyhow::Result<SettingsKey> {
    let s = &spec.settings;
    let members = match loaded.members.as_slice() {
        [one] => vec![(one.name.clone(), one.weights_sha256.clone(), 1.0)],
        many => many
            .iter()
            .zip(&resolved.weights)
            .map(|(m, &w)| (m.name.clone(), m.weights_sha256.clone(), w))
            .collect(),
    };
    let init = match &spec.init {
        Some(photo) => Some((download::sha256_file_with(photo, &interrupt::requested)?, s.epsilon)),
        None => None,
    };
    Ok(SettingsKey {
        model: loaded.name.clone(),
        members,
        preset: spec.preset,
        param: s.param,
        decay: s.decay,
        augment: s.augment.clone(),
        size: s.canvas_for(loaded.resolution()),
        keep: s.keep,
        steps: s.steps,
        learning_rate: s.learning_rate,
        tv_weight: s.tv_weight,
        negatives: spec.negatives.clone(),
        negative_weight: (!spec.negatives.is_empty()).then_some(s.negative_weight),
        init,
        precision: resolved.precision,
    })
}

/// Refuses, before the optimisation, to replace a result whose record has other settings than
/// this run's. A sweep's batch is not checked here: its rows' run ids decide (`prepare`).
pub(super) fn check(
    spec: &RunRequest,
    resolved: &Resolved,
    loaded: &Loaded,
    prepared: &Prepared,
) -> anyhow::Result<()> {
    if !resolved.rows.is_empty() {
        return Ok(());
    }
    let mut ours: Option<SettingsKey> = None;
    for stem in &prepared.stems {
        let path = prepared.dir.join(format!("{stem}.json"));
        let Ok(text) = std::fs::read(&path) else { continue };
        // What is not a record of this tool's was refused by `prepare`; a record this release
        // cannot read as one is left to it too.
        let Ok(theirs) = serde_json::from_slice::<RunRecord>(&text) else { continue };
        let theirs = SettingsKey::of_record(&theirs);
        let key = match &ours {
            Some(k) => k,
            None => ours.insert(of_run(spec, resolved, loaded)?),
        };
        let differ = key.differences(&theirs);
        if !differ.is_empty() {
            return Err(OutputError::OtherSettings { path, differ: differ.join(", ") }.into());
        }
    }
    Ok(())
}
