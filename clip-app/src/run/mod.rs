//! One generation run, as the experiment binaries and `clip generate` do it: resolve the request,
//! prepare the outputs, load the model, optimise, save.
//!
//! Each step is its own module, this one only orchestrating them (`run_inner`): `resolve.rs`
//! (prompts, seed, device, settings), `prepare.rs` (the result names, the refusal to replace
//! another prompt's record, the results' locks, the output directory — before the weights are
//! fetched and the optimisation starts), `load.rs` (the weights, downloaded if needed, checked
//! against the model a binary is for; the cache a sweep shares), `optimise.rs` (the engine, with
//! progress and Ctrl-C), `record.rs` (a prompt's record) and `save.rs` (PNG, JSON and CSV per
//! prompt, the PNG re-scored as the seed's "Final Similarity"). The request is validated first
//! (`RunRequest::validate`). Ctrl-C stops at the next safe point: while loading nothing is saved
//! and the directories the run created are removed while empty; during the optimisation the
//! images reached are saved, marked interrupted.
//!
//! Beyond the seed: several models (an ensemble: one image per prompt, its loss the weighted mean
//! of the models' losses, results in `<out>/ensemble-<token>+<token>…/`), negative prompts (each
//! re-scored on the saved PNG), and a photo as the start (resized and centre-cropped to the
//! canvas, optionally kept within an L∞ budget; the start saved beside the result as
//! `<stem>.start.png`, the distances measured on the saved PNG).

mod load;
mod optimise;
mod prepare;
mod record;
mod replace;
mod resolve;
mod save;

pub use load::ModelCache;
pub use optimise::ensemble_out_of_memory;
pub use save::final_line;
use {load::*, optimise::*, prepare::*, resolve::*, save::*};

use super::interrupt;
use super::output::RunRecord;
use super::reporter::{Console, Reporter};
pub use super::request::{ModelSource, RunRequest};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Tensor};

/// One prompt of a sweep's batch: its own seed (its draws keyed by it), result name and run id.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSpec {
    pub seed: u64,
    /// The first part of its file names and its record's `mode`.
    pub name: String,
    pub run_id: String,
}

/// How `clip sweep` runs a batch of runs that differ only in prompt and seed: each row its own
/// seed, name and run id; the batch padded to `width` rows with copies of its last (so every
/// batch of a sweep has the same shape and a run's result does not depend on how many
/// batch-mates it has).
pub struct Batch {
    /// One per prompt of the spec, in its order.
    pub rows: Vec<RowSpec>,
    /// The number of rows the optimisation runs (>= the prompts).
    pub width: usize,
}

/// How a caller other than the binaries drives runs (`clip sweep`, the Python module): models
/// loaded once and shared, its own reporter and stop.
pub struct Hooks<'a> {
    pub models: &'a mut ModelCache,
    /// What the run tells as it goes (the steps, the results saved, notes).
    pub reporter: &'a mut dyn Reporter,
    /// Asked after every step whether to stop there; the images reached are then saved, marked
    /// interrupted.
    pub stop: &'a dyn Fn() -> bool,
}

/// What a run produced for one prompt.
#[derive(Debug)]
pub struct PromptResult {
    /// The image [3, H, W] in [0, 1] on the CPU: a view of the optimisation's result (what the PNG
    /// holds before its 8-bit rounding).
    pub image: Tensor,
    pub png: PathBuf,
    pub json: PathBuf,
    pub csv: PathBuf,
    pub record: RunRecord,
}

/// The results token of an ensemble of members with these tokens.
pub fn ensemble_token<S: AsRef<str>>(tokens: &[S]) -> String {
    let parts: Vec<&str> = tokens.iter().map(AsRef::as_ref).collect();
    format!("ensemble-{}", parts.join("+"))
}

/// The token of the run when every member's is known before loading.
pub fn known_token(models: &[ModelSource]) -> Option<String> {
    let tokens: Option<Vec<String>> = models.iter().map(ModelSource::known_token).collect();
    let tokens = tokens?;
    match tokens.as_slice() {
        [one] => Some(one.to_string()),
        many => Some(ensemble_token(many)),
    }
}

/// Runs every prompt of `spec` in one batch and writes their outputs, told on the console;
/// Ctrl-C stops it.
pub fn run(spec: &RunRequest) -> anyhow::Result<Vec<PromptResult>> {
    run_inner(spec, None, None)
}

/// Runs every prompt of `spec` in one batch, driven by `hooks` (models, reporter, stop).
pub fn run_with(spec: &RunRequest, hooks: Hooks) -> anyhow::Result<Vec<PromptResult>> {
    run_inner(spec, None, Some(hooks))
}

/// Runs a sweep's batch: as [`run_with`], each prompt with its row's seed, name and run id.
pub fn run_batch(
    spec: &RunRequest,
    batch: Batch,
    hooks: Hooks,
) -> anyhow::Result<Vec<PromptResult>> {
    if batch.rows.len() != spec.prompts.len() || batch.width < spec.prompts.len() {
        anyhow::bail!(
            "a batch of {} prompt(s) needs as many rows (not {}) and a width of at least that              (not {})",
            spec.prompts.len(),
            batch.rows.len(),
            batch.width
        );
    }
    run_inner(spec, Some(batch), Some(hooks))
}

fn run_inner(
    spec: &RunRequest,
    batch: Option<Batch>,
    hooks: Option<Hooks>,
) -> anyhow::Result<Vec<PromptResult>> {
    let started = Instant::now();
    match batch {
        Some(_) => spec.validate_shared()?,
        None => spec.validate()?,
    }
    let mut console = Console::new();
    let (models, reporter, stop): (_, &mut dyn Reporter, &dyn Fn() -> bool) = match hooks {
        Some(h) => (Some(h.models), h.reporter, h.stop),
        None => (None, &mut console, &interrupt::requested),
    };
    let resolved = resolve(spec, batch.as_ref())?;
    // The outputs are prepared before anything slow when the models' tokens are known.
    let early = match known_token(&spec.models) {
        Some(token) => {
            // A named checkpoint's token is known before its resolution.
            if let Some(resolution) = spec.known_resolution() {
                spec.settings.validate(resolution)?;
            }
            Some(prepare(spec, &resolved, &token, reporter)?)
        }
        None => None,
    };
    let loaded = load(spec, &resolved, models, reporter)?;
    let prepared = match early {
        Some(p) => p,
        None => prepare(spec, &resolved, &loaded.token, reporter)?,
    };
    // A result is replaced only by a run of its own settings.
    replace::check(spec, &resolved, &loaded, &prepared)?;
    // optimize_objective_until checks the settings against the models before any step.
    interrupt::check("before the optimisation")?;
    let optimised = optimise(spec, &resolved, &loaded, reporter, stop)?;
    let results = save(spec, &resolved, &loaded, &prepared, &optimised, started, reporter)?;
    prepared.new_dirs.keep();
    Ok(results)
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clip_core::clip::{released, torch_error};

    #[test]
    fn an_ensembles_out_of_memory_names_its_models_and_suggests_fewer_prompts() {
        let panic =
            "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried \
                     to allocate 2.00 GiB\\nException raised from malloc at …\")";
        let oom = torch_error::out_of_memory(panic).expect("an out-of-memory error");
        let message = ensemble_out_of_memory(6, &["RN50x64", "ViT-L/14@336px"], &oom);
        assert!(message.contains("RN50x64 + ViT-L/14@336px"), "{message}");
        assert!(message.contains("6 prompt(s)") && message.contains("fewer prompts"), "{message}");
        assert!(message.contains("Tried to allocate 2.00 GiB") && !message.contains("Exception"));
    }

    #[test]
    fn ensemble_tokens() {
        assert_eq!(ensemble_token(&["RN50", "ViT-B"]), "ensemble-RN50+ViT-B");
        let models = [
            ModelSource::Released(released::by_name("RN50").unwrap()),
            ModelSource::Released(released::by_name("ViT-B/32").unwrap()),
        ];
        assert_eq!(known_token(&models).as_deref(), Some("ensemble-RN50+ViT-B"));
        let unknown = ModelSource::file("/x.pt");
        assert_eq!(known_token(&[models[0].clone(), unknown]), None);
    }
}
