//! The runs of a SPEC: the Cartesian product of its axes, each run with its settings, seed, result
//! name and id; shards (a stable share by run id); batches (runs that differ only in prompt and
//! seed, in the product's order).
//!
//! A run's id is the first 16 hex digits of the SHA-256 of a canonical description of everything
//! that makes its result: the models (released names, or the `[weights]` names and paths), the
//! preset and every effective setting, the negatives, the start photo, the precision, the prompt
//! and the seed — not the output directory, the device, the batch or the shard. Adding prompts or
//! seeds adds runs without changing the others' ids, so finished work is recognised, and shards
//! (`id mod N`) keep their runs.

use super::spec::{render_template, ModelChoice, ModelRef, Spec};
use crate::cli::UsageError;
use crate::output::{self, sha256_hex};
use clip_core::clip::model::Precision;
use clip_core::engine::augment::Augment;
use clip_core::engine::optimize::{Preset, Settings};
use clip_core::engine::param::Canvas;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// One run of the sweep.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    /// Its place in the product (the SPEC's order).
    pub index: usize,
    pub model: ModelChoice,
    pub preset: Preset,
    pub settings: Settings,
    pub negatives: Vec<String>,
    pub init: Option<PathBuf>,
    pub prompt: String,
    pub seed: u64,
    /// The first part of its file names and its record's `mode`.
    pub name: String,
    /// Runs with the same key differ only in prompt, seed and name: they can share a batch.
    pub batch_key: String,
    pub precision: Option<Precision>,
}

impl Run {
    /// The run's request: its models, prompt, settings and start photo, results under `out`, on
    /// the device chosen at run time. Its seed is the row's (keyed draws), not the request's.
    pub fn request(&self, out: &std::path::Path) -> crate::request::RunRequest {
        crate::request::RunRequest {
            models: model_sources(&self.model),
            model_weights: self.model.weights.clone(),
            prompts: vec![self.prompt.clone()],
            negatives: self.negatives.clone(),
            init: self.init.clone(),
            name: self.name.clone(),
            preset: Some(self.preset),
            settings: self.settings.clone(),
            precision: self.precision,
            device: crate::device::DeviceChoice::Auto,
            seed: None,
            out: out.to_path_buf(),
            log_every: usize::MAX,
        }
    }

    /// The run's shard among `n`: its id's value mod `n`.
    pub fn shard(&self, n: u64) -> u64 {
        id_value(&self.id) % n
    }
}

/// The id's 64-bit value.
pub fn id_value(id: &str) -> u64 {
    u64::from_str_radix(&id[..16.min(id.len())], 16).unwrap_or(0)
}

/// A share of the runs: `index` of `count` (0 <= index < count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("{s:?} is not I/N (e.g. 0/4)"))?;
        let i: u64 =
            i.trim().parse().map_err(|_| format!("{:?} is not a whole number", i.trim()))?;
        let n: u64 =
            n.trim().parse().map_err(|_| format!("{:?} is not a whole number", n.trim()))?;
        if n == 0 {
            return Err("the number of shards N must be at least 1".into());
        }
        if i >= n {
            return Err(format!(
                "shard {i} of {n} is outside 0 <= I < N: shards are 0 to {}",
                n - 1
            ));
        }
        Ok(Self { index: i, count: n })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether `run` is in this shard.
    pub fn holds(&self, run: &Run) -> bool {
        run.shard(self.count) == self.index
    }

    /// Whether `run` is in sub-share `sub` of this shard (a worker's part of it): the id's value
    /// divided by this shard's count, mod the sub-share's count, so the parts partition the shard.
    pub fn holds_part(&self, sub: &Shard, run: &Run) -> bool {
        self.holds(run) && (id_value(&run.id) / self.count) % sub.count == sub.index
    }

    pub const ALL: Shard = Shard { index: 0, count: 1 };
}

fn number(x: f64) -> String {
    // Shortest text that reads back as the same f64.
    format!("{x:?}")
}

fn augment_text(pipeline: &[Augment]) -> String {
    pipeline.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ")
}

/// The settings' lines of a run's canonical description, in a fixed order.
fn settings_lines(
    preset: Preset,
    settings: &Settings,
    negatives: &[String],
    init: &Option<PathBuf>,
    precision: Option<Precision>,
) -> Vec<(&'static str, String)> {
    vec![
        ("preset", preset.to_string()),
        ("param", settings.param.to_string()),
        ("decay", number(settings.decay)),
        ("augment", augment_text(&settings.augment)),
        ("steps", settings.steps.to_string()),
        ("learning_rate", number(settings.learning_rate)),
        ("tv_weight", number(settings.tv_weight)),
        ("keep", settings.keep.to_string()),
        ("size", settings.canvas.map_or("model".to_string(), |c| c.to_string())),
        ("negative", serde_json::to_string(negatives).unwrap_or_default()),
        ("negative_weight", number(settings.negative_weight)),
        ("init", init.as_ref().map_or("none".to_string(), |p| p.display().to_string())),
        ("epsilon", settings.epsilon.map_or("none".to_string(), number)),
        ("precision", precision.map_or("auto".to_string(), |p| p.to_string())),
    ]
}

/// Every run of `spec`, in the product's order: models, presets, param, decay, augment, steps,
/// learning rate, TV weight, keep, size, negatives, negative weight, init, epsilon, then prompts
/// and seeds innermost. Refuses (exit 2) two runs that would write the same files.
pub fn runs(spec: &Spec) -> anyhow::Result<Vec<Run>> {
    let seeds = spec.seeds.clone().unwrap_or_else(|| vec![0]);
    // The axes' lengths, outermost first; each point of the product is read off a mixed-radix
    // counter (the last axis turning fastest).
    let lengths = [
        spec.models.len(),
        spec.presets.len(),
        spec.param.len(),
        spec.decay.len(),
        spec.augment.len(),
        spec.steps.len(),
        spec.learning_rate.len(),
        spec.tv_weight.len(),
        spec.keep.len(),
        spec.size.len(),
        spec.negative.len(),
        spec.negative_weight.len(),
        spec.init.len(),
        spec.epsilon.len(),
    ];
    let points: usize = lengths.iter().product();
    let mut runs = Vec::new();
    for point in 0..points {
        let mut at = [0usize; 14];
        let mut rest = point;
        for (slot, len) in at.iter_mut().zip(&lengths).rev() {
            *slot = rest % len;
            rest /= len;
        }
        let [m, pr, pa, de, au, st, lr, tv, ke, si, ne, nw, ini, ep] = at;
        let preset = spec.presets[pr];
        let defaults = preset.settings();
        let settings = Settings {
            param: spec.param[pa].unwrap_or(defaults.param),
            decay: spec.decay[de].unwrap_or(defaults.decay),
            augment: spec.augment[au].clone().unwrap_or(defaults.augment.clone()),
            steps: spec.steps[st].unwrap_or(defaults.steps),
            learning_rate: spec.learning_rate[lr].unwrap_or(defaults.learning_rate),
            tv_weight: spec.tv_weight[tv].unwrap_or(defaults.tv_weight),
            keep: spec.keep[ke].unwrap_or(defaults.keep),
            canvas: spec.size[si].or(defaults.canvas),
            negative_weight: spec.negative_weight[nw].unwrap_or(defaults.negative_weight),
            epsilon: spec.epsilon[ep],
            ..defaults.clone()
        };
        let variant = Variant {
            spec,
            model: &spec.models[m],
            preset,
            defaults: &defaults,
            settings,
            negatives: &spec.negative[ne],
            init: &spec.init[ini],
        };
        variant.push_runs(&seeds, &mut runs);
    }
    check_unique_files(&runs)?;
    Ok(runs)
}

/// One point of the settings' product: its runs are its prompts × seeds.
struct Variant<'a> {
    spec: &'a Spec,
    model: &'a ModelChoice,
    preset: Preset,
    defaults: &'a Settings,
    settings: Settings,
    negatives: &'a Vec<String>,
    init: &'a Option<PathBuf>,
}

impl Variant<'_> {
    fn push_runs(self, seeds: &[u64], runs: &mut Vec<Run>) {
        let spec = self.spec;
        let lines =
            settings_lines(self.preset, &self.settings, self.negatives, self.init, spec.precision);
        let defaults = settings_lines(self.preset, self.defaults, &[], &None, spec.precision);
        // The name's hash: the settings that differ from the preset's, and the ensemble's weights.
        let mut changed: Vec<String> = lines
            .iter()
            .zip(&defaults)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| format!("{}={}", a.0, a.1))
            .collect();
        if !self.model.weights.is_empty() {
            changed.push(format!("model_weights={:?}", self.model.weights));
        }
        let hash = sha256_hex(changed.join("\n").as_bytes())[..6].to_string();
        let mut key = format!("v1\nmodel={}\n", self.model.identity());
        for (k, v) in &lines {
            key.push_str(&format!("{k}={v}\n"));
        }
        for prompt in &spec.prompts {
            for &seed in seeds {
                let id_text = format!(
                    "{key}prompt={}\nseed={seed}\n",
                    serde_json::to_string(prompt).unwrap_or_default()
                );
                let id = sha256_hex(id_text.as_bytes())[..16].to_string();
                let mut values: BTreeMap<&str, String> = BTreeMap::new();
                values.insert("preset", self.preset.to_string());
                values.insert("hash", hash.clone());
                values.insert("seed", seed.to_string());
                values.insert("param", self.settings.param.to_string());
                values.insert("steps", self.settings.steps.to_string());
                values.insert("learning_rate", number(self.settings.learning_rate));
                values.insert("tv_weight", number(self.settings.tv_weight));
                values.insert(
                    "size",
                    self.settings.canvas.map_or("model".to_string(), |c: Canvas| c.to_string()),
                );
                values.insert("keep", self.settings.keep.to_string());
                let name = match &spec.name {
                    Some(template) => render_template(template, &values),
                    None => {
                        let mut name = self.preset.to_string();
                        if !changed.is_empty() {
                            name.push('-');
                            name.push_str(&hash);
                        }
                        if spec.seeds.is_some() {
                            name.push_str(&format!("-s{seed}"));
                        }
                        name
                    }
                };
                runs.push(Run {
                    id,
                    index: runs.len(),
                    model: self.model.clone(),
                    preset: self.preset,
                    settings: self.settings.clone(),
                    negatives: self.negatives.clone(),
                    init: self.init.clone(),
                    prompt: prompt.clone(),
                    seed,
                    name,
                    batch_key: key.clone(),
                    precision: spec.precision,
                });
            }
        }
    }
}

/// Two runs whose files would be the same (the same models, name and prompt) are refused: the
/// `name` template must tell them apart.
fn check_unique_files(runs: &[Run]) -> anyhow::Result<()> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (i, run) in runs.iter().enumerate() {
        let stem = output::file_stem(&run.name, "model", &run.prompt);
        if let Some(&j) = seen.get(&(run.model.identity(), stem.clone())) {
            let other = &runs[j];
            let differ: Vec<&str> = run
                .batch_key
                .lines()
                .zip(other.batch_key.lines())
                .filter(|(a, b)| a != b)
                .filter_map(|(a, _)| a.split('=').next())
                .chain((run.seed != other.seed).then_some("seed"))
                .collect();
            return Err(UsageError(format!(
                "two runs would write the same files ({stem}.png under {}): they differ in {} — \
                 put {{hash}} or {{seed}} in `name`, or leave `name` out",
                run.model.label(),
                if differ.is_empty() { "nothing".to_string() } else { differ.join(", ") }
            ))
            .into());
        }
        seen.insert((run.model.identity(), stem), i);
    }
    Ok(())
}

/// Runs grouped into batches of at most `width` that differ only in prompt and seed, in the
/// product's order.
pub fn batches(runs: &[Run], width: usize) -> Vec<Vec<Run>> {
    let mut groups: Vec<(String, Vec<Run>)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for run in runs {
        match at.get(&run.batch_key) {
            Some(&g) => groups[g].1.push(run.clone()),
            None => {
                at.insert(run.batch_key.clone(), groups.len());
                groups.push((run.batch_key.clone(), vec![run.clone()]));
            }
        }
    }
    groups
        .into_iter()
        .flat_map(|(_, runs)| runs.chunks(width.max(1)).map(<[Run]>::to_vec).collect::<Vec<_>>())
        .collect()
}

/// The model sources of a run, for [`crate::run::RunRequest`].
pub fn model_sources(choice: &ModelChoice) -> Vec<crate::run::ModelSource> {
    use crate::run::ModelSource;
    choice
        .members
        .iter()
        .map(|m| match m {
            ModelRef::Released(r) => ModelSource::Released(r),
            ModelRef::Weights { path, .. } => {
                ModelSource::Weights { path: path.clone(), expect: None }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_refuse_out_of_range() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().unwrap_err().contains("outside 0 <= I < N"));
        assert!("0/0".parse::<Shard>().is_err());
        assert!("a/2".parse::<Shard>().is_err());
        assert!("3".parse::<Shard>().is_err());
    }
}
