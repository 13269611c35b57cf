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
use std::collections::{BTreeMap, HashMap, HashSet};
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

    /// Its results' token (their folder and the middle of their names): known before loading for
    /// every sweep run (a released model's, or its `[weights]` key's).
    pub fn token(&self) -> Option<String> {
        crate::run::known_token(&model_sources(&self.model))
    }

    /// The stem of its result files with the models' `token`.
    pub fn stem(&self, token: &str) -> String {
        output::file_stem(&self.name, token, &self.prompt)
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

/// Most runs a SPEC may make: its plan is streamed (memory does not grow with the runs), but a
/// billion runs is decades of compute; a larger product is surely a mistake.
pub const MAX_RUNS: u64 = 1_000_000_000;

/// The runs of a SPEC, made as they are read (never all held at once): the Cartesian product of
/// its axes in the product's order — models, presets, param, decay, augment, steps, learning
/// rate, TV weight, keep, size, negatives, negative weight, init, epsilon, then prompts and seeds
/// innermost.
pub struct Plan<'a> {
    spec: &'a Spec,
    seeds: Vec<u64>,
    /// The settings axes' lengths, outermost first.
    lengths: [usize; 14],
    /// Points of the settings' product (variants); each makes prompts × seeds runs.
    variants: u64,
}

impl<'a> Plan<'a> {
    /// The plan of `spec`; refuses (exit 2) a product of more than [`MAX_RUNS`] runs.
    pub fn new(spec: &'a Spec) -> anyhow::Result<Self> {
        let seeds = spec.seeds.clone().unwrap_or_else(|| vec![0]);
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
        let product =
            |counts: &[usize]| counts.iter().try_fold(1u64, |n, &len| n.checked_mul(len as u64));
        let variants = product(&lengths);
        let runs =
            variants.and_then(|v| product(&[spec.prompts.len(), seeds.len()])?.checked_mul(v));
        match runs {
            Some(n) if n <= MAX_RUNS => {}
            _ => {
                let sizes: Vec<String> = lengths
                    .iter()
                    .chain([&spec.prompts.len(), &seeds.len()])
                    .map(usize::to_string)
                    .collect();
                return Err(UsageError(format!(
                    "the SPEC's axes multiply to more than {MAX_RUNS} runs ({}): split it into \
                     smaller sweeps",
                    sizes.join(" × ")
                ))
                .into());
            }
        }
        Ok(Self { spec, seeds, lengths, variants: variants.unwrap_or(0) })
    }

    /// How many runs: variants × prompts × seeds.
    pub fn len(&self) -> u64 {
        self.variants * self.per_variant() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn per_variant(&self) -> usize {
        self.spec.prompts.len() * self.seeds.len()
    }

    /// The points of the settings' product, in order.
    pub fn variants(&self) -> impl Iterator<Item = Variant<'_>> + '_ {
        (0..self.variants).map(move |point| self.variant(point))
    }

    /// Every run, in the product's order.
    pub fn runs(&self) -> impl Iterator<Item = Run> + '_ {
        let per = self.per_variant();
        self.variants().enumerate().flat_map(move |(v, variant)| {
            (0..per).map(move |i| {
                variant.run(v * per + i, i / variant.seeds.len(), i % variant.seeds.len())
            })
        })
    }

    /// Variant number `point` (a mixed-radix counter over the axes, the last turning fastest).
    fn variant(&self, point: u64) -> Variant<'_> {
        let spec = self.spec;
        let mut at = [0usize; 14];
        let mut rest = point;
        for (slot, &len) in at.iter_mut().zip(&self.lengths).rev() {
            *slot = (rest % len as u64) as usize;
            rest /= len as u64;
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
        Variant::new(spec, &self.seeds, &spec.models[m], preset, &defaults, settings, ne, ini)
    }

    /// Refuses (exit 2) two runs that would write the same files (the same models, name and
    /// prompt): the `name` template must tell them apart. Remembers 8 bytes per variant and seed
    /// (the names; the prompts are told apart once), never the runs.
    pub fn check_unique_files(&self) -> anyhow::Result<()> {
        let mut parts: HashMap<String, &String> = HashMap::new();
        for prompt in &self.spec.prompts {
            let part = output::prompt_file_part(prompt);
            if let Some(first) = parts.insert(part.clone(), prompt) {
                return Err(UsageError(format!(
                    "the prompts {first:?} and {prompt:?} would share result files ({part})"
                ))
                .into());
            }
        }
        let fingerprint = |variant: &Variant, s: usize| {
            let text = format!("{}\n{}", variant.model.identity(), variant.name(s));
            u64::from_str_radix(&sha256_hex(text.as_bytes())[..16], 16).unwrap_or(0)
        };
        let mut seen: HashSet<u64> = HashSet::new();
        for (v, variant) in self.variants().enumerate() {
            for s in 0..self.seeds.len() {
                if seen.insert(fingerprint(&variant, s)) {
                    continue;
                }
                // Rare: find the earlier run of that name (a 64-bit fingerprint can collide).
                let same = self.variants().take(v + 1).enumerate().find_map(|(w, earlier)| {
                    (0..self.seeds.len())
                        .find(|&t| {
                            (w, t) != (v, s)
                                && earlier.model.identity() == variant.model.identity()
                                && earlier.name(t) == variant.name(s)
                        })
                        .map(|t| (earlier, t))
                });
                if let Some((earlier, t)) = same {
                    let collide =
                        variant.changed && earlier.changed && variant.hash == earlier.hash;
                    return Err(same_files(&variant.run(0, 0, s), &earlier.run(0, 0, t), collide));
                }
            }
        }
        Ok(())
    }
}

/// The error for two runs (of the first prompt) that would write the same files.
/// `hashes_collide`: their settings differ but hash to the same 6 digits.
fn same_files(run: &Run, other: &Run, hashes_collide: bool) -> anyhow::Error {
    let stem = run.stem(&run.token().unwrap_or_else(|| "model".to_string()));
    let differ: Vec<&str> = run
        .batch_key
        .lines()
        .zip(other.batch_key.lines())
        .filter(|(a, b)| a != b)
        .filter_map(|(a, _)| a.split('=').next())
        .chain((run.seed != other.seed).then_some("seed"))
        .collect();
    let remedy = if hashes_collide && !differ.is_empty() {
        // Likely from some thousands of variants on (6 hex digits: 16.7 M values).
        "their names' 6-digit hashes of the settings collide: name the runs by the settings that \
         vary, e.g. name = \"{preset}-{steps}-{learning_rate}\""
    } else {
        "put {hash} or {seed} in `name`, or leave `name` out"
    };
    UsageError(format!(
        "two runs would write the same files ({stem}.png under {}): they differ in {} — {remedy}",
        run.model.label(),
        if differ.is_empty() { "nothing".to_string() } else { differ.join(", ") }
    ))
    .into()
}

/// Every run of `spec`, held in a list (for tests and small sweeps; the sweep itself streams
/// [`Plan::runs`]). Refuses (exit 2) two runs that would write the same files.
pub fn runs(spec: &Spec) -> anyhow::Result<Vec<Run>> {
    let plan = Plan::new(spec)?;
    plan.check_unique_files()?;
    Ok(plan.runs().collect())
}

/// One point of the settings' product: its runs are its prompts × seeds.
pub struct Variant<'a> {
    spec: &'a Spec,
    seeds: &'a [u64],
    pub model: &'a ModelChoice,
    pub preset: Preset,
    pub settings: Settings,
    negatives: &'a Vec<String>,
    init: &'a Option<PathBuf>,
    /// The first six hex digits of the SHA-256 of the settings that differ from the preset's.
    hash: String,
    /// Whether any setting differs from the preset's.
    changed: bool,
    /// The canonical description of the settings (each run adds its prompt and seed).
    pub key: String,
}

impl<'a> Variant<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        spec: &'a Spec,
        seeds: &'a [u64],
        model: &'a ModelChoice,
        preset: Preset,
        defaults: &Settings,
        settings: Settings,
        negatives: usize,
        init: usize,
    ) -> Self {
        let (negatives, init) = (&spec.negative[negatives], &spec.init[init]);
        let lines = settings_lines(preset, &settings, negatives, init, spec.precision);
        let default_lines = settings_lines(preset, defaults, &[], &None, spec.precision);
        // The name's hash: the settings that differ from the preset's, and the ensemble's weights.
        let mut changed: Vec<String> = lines
            .iter()
            .zip(&default_lines)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| format!("{}={}", a.0, a.1))
            .collect();
        if !model.weights.is_empty() {
            changed.push(format!("model_weights={:?}", model.weights));
        }
        let hash = sha256_hex(changed.join("\n").as_bytes())[..6].to_string();
        let mut key = format!("v1\nmodel={}\n", model.identity());
        for (k, v) in &lines {
            key.push_str(&format!("{k}={v}\n"));
        }
        Self {
            spec,
            seeds,
            model,
            preset,
            settings,
            negatives,
            init,
            hash,
            changed: !changed.is_empty(),
            key,
        }
    }

    /// The name of its runs with seed number `s`.
    fn name(&self, s: usize) -> String {
        let seed = self.seeds[s];
        match &self.spec.name {
            Some(template) => {
                let mut values: BTreeMap<&str, String> = BTreeMap::new();
                values.insert("preset", self.preset.to_string());
                values.insert("hash", self.hash.clone());
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
                render_template(template, &values)
            }
            None => {
                let mut name = self.preset.to_string();
                if self.changed {
                    name.push('-');
                    name.push_str(&self.hash);
                }
                if self.spec.seeds.is_some() {
                    name.push_str(&format!("-s{seed}"));
                }
                name
            }
        }
    }

    /// Its first run (the first prompt and seed), which stands for its settings; none without
    /// prompts.
    pub fn first_run(&self) -> Option<Run> {
        (!self.spec.prompts.is_empty() && !self.seeds.is_empty()).then(|| self.run(0, 0, 0))
    }

    /// Its run of prompt number `p` and seed number `s`, `index` in the product.
    fn run(&self, index: usize, p: usize, s: usize) -> Run {
        let (prompt, seed) = (&self.spec.prompts[p], self.seeds[s]);
        let id_text = format!(
            "{}prompt={}\nseed={seed}\n",
            self.key,
            serde_json::to_string(prompt).unwrap_or_default()
        );
        Run {
            id: sha256_hex(id_text.as_bytes())[..16].to_string(),
            index,
            model: self.model.clone(),
            preset: self.preset,
            settings: self.settings.clone(),
            negatives: self.negatives.clone(),
            init: self.init.clone(),
            prompt: prompt.clone(),
            seed,
            name: self.name(s),
            batch_key: self.key.clone(),
            precision: self.spec.precision,
        }
    }
}

/// Runs grouped into batches of at most `width` that differ only in prompt and seed, in the
/// product's order, as they come: a variant's runs are consecutive in the product, and two
/// variants never share a key (they would write the same files).
pub fn batches<I: Iterator<Item = Run>>(runs: I, width: usize) -> Batches<I> {
    Batches { runs: runs.peekable(), width: width.max(1) }
}

/// See [`batches`].
pub struct Batches<I: Iterator<Item = Run>> {
    runs: std::iter::Peekable<I>,
    width: usize,
}

impl<I: Iterator<Item = Run>> Iterator for Batches<I> {
    type Item = Vec<Run>;
    fn next(&mut self) -> Option<Vec<Run>> {
        let first = self.runs.next()?;
        let mut batch = vec![first];
        while batch.len() < self.width {
            match self.runs.next_if(|r| r.batch_key == batch[0].batch_key) {
                Some(run) => batch.push(run),
                None => break,
            }
        }
        Some(batch)
    }
}

/// The model sources of a run, for [`crate::run::RunRequest`].
pub fn model_sources(choice: &ModelChoice) -> Vec<crate::run::ModelSource> {
    use crate::run::ModelSource;
    choice
        .members
        .iter()
        .map(|m| match m {
            ModelRef::Released(r) => ModelSource::Released(r),
            // Named by its `[weights]` key: two checkpoints of one architecture never share
            // their results' folder.
            ModelRef::Weights { name, path } => {
                ModelSource::Weights { path: path.clone(), expect: None, name: Some(name.clone()) }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RunRequest;

    #[test]
    fn shards_parse_and_refuse_out_of_range() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().unwrap_err().contains("outside 0 <= I < N"));
        assert!("0/0".parse::<Shard>().is_err());
        assert!("a/2".parse::<Shard>().is_err());
        assert!("3".parse::<Shard>().is_err());
    }

    /// A run's key (its id) holds every field of the request that makes its result — read off
    /// the request's own type (its serde fields), so a setting added to `RunRequest` or
    /// `Settings` cannot silently give two different runs one id: it is either keyed or declared
    /// here as not making the result.
    #[test]
    fn every_field_of_the_request_is_in_the_run_key_or_said_not_to_make_the_result() {
        // Request fields keyed elsewhere than in `settings_lines`, or not making the result.
        const KEYED_APART: &[(&str, &str)] = &[
            ("models", "the key's `model=` line (members, files, weights)"),
            ("model_weights", "the key's `model=` line"),
            ("prompts", "each run's own `prompt=` line"),
            ("seed", "each run's own `seed=` line"),
            ("settings", "its fields, below"),
            ("name", "names the files, not the result"),
            ("out", "where the results go"),
            ("device", "where the sweep runs (the record states it)"),
            ("log_every", "console output only"),
        ];
        const NOT_IN_KEY: &[(&str, &str)] =
            &[("cuda_graph", "how the steps execute, not what they compute")];
        let mut settings = Preset::Constrained.settings();
        settings.epsilon = Some(0.1);
        settings.canvas = Some(Canvas { width: 224, height: 224 });
        let lines = settings_lines(Preset::Constrained, &settings, &[], &None, None);
        let keyed: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
        // Flag text where a name differs: the request's `negatives`, `canvas` are `negative`, `size`.
        let key_of = |field: &str| {
            match field {
                "negatives" => "negative",
                "canvas" => "size",
                other => other,
            }
            .to_string()
        };
        let fields = |value: serde_json::Value| -> Vec<String> {
            value.as_object().expect("an object").keys().cloned().collect()
        };
        let mut request = RunRequest::preset(Preset::Constrained, Vec::new(), vec!["a".into()]);
        request.settings = settings.clone();
        request.init = Some(PathBuf::from("photo.png"));
        request.precision = Some(Precision::Fp32);
        request.seed = Some(1);
        let request_fields = fields(serde_json::to_value(&request).expect("serialises"));
        let settings_fields = fields(serde_json::to_value(&settings).expect("serialises"));
        assert!(request_fields.len() >= 13 && settings_fields.len() >= 11, "{request_fields:?}");
        for field in request_fields {
            let apart = KEYED_APART.iter().any(|(f, _)| *f == field);
            assert!(
                apart || keyed.contains(&key_of(&field).as_str()),
                "the request's `{field}` is neither in the run key nor said to be keyed apart"
            );
        }
        for field in settings_fields {
            let said = NOT_IN_KEY.iter().any(|(f, _)| *f == field);
            assert!(
                said || keyed.contains(&key_of(&field).as_str()),
                "the setting `{field}` is neither in the run key nor said not to make the result"
            );
        }
    }
}
