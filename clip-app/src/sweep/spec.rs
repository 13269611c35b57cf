//! The sweep's SPEC file: TOML whose keys are `clip generate`'s settings. A key given a list is an
//! axis (the runs are the Cartesian product of the axes); a single value is the same for every
//! run. Read strictly: an unknown key is named with the nearest valid one, a value of the wrong
//! type or out of range is named with its key, an empty list is refused (it would make no runs).
//!
//! Paths in the file (`prompts_file`, `[weights]`, `init`, `out`) are relative to the file's
//! directory.
//!
//! Three keys hold lists themselves, so their axes are lists of lists: `augment` (a pipeline is a
//! list of spec strings; `augment = ["jitter:8", "flip:0.5"]` is one pipeline, `augment =
//! [["jitter:8"], []]` two), `negative` (a set of negative prompts; the same rule) and `models`
//! (an entry that is a list is an ensemble: `models = ["RN50", ["RN50", "ViT-B/32"]]`, or a table
//! `{ members = [...], weights = [...] }` for weighted members).

use crate::cli::UsageError;
use crate::request::parse::{
    parse_canvas, parse_decay, parse_epsilon, parse_keep, parse_learning_rate, parse_model_weight,
    parse_name, parse_negative_weight, parse_param, parse_preset, parse_steps, parse_tv_weight,
};
use clip_core::clip::model::Precision;
use clip_core::clip::released::{self, ReleasedModel};
use clip_core::clip::tokenizer::Tokenizer;
use clip_core::engine::augment::{self, Augment};
use clip_core::engine::optimize::{Keep, Preset};
use clip_core::engine::param::{Canvas, Param};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Value;

/// Every key a SPEC may have.
pub const KEYS: &[&str] = &[
    "out",
    "name",
    "models",
    "weights",
    "presets",
    "prompts",
    "prompts_file",
    "negative",
    "negative_weight",
    "param",
    "decay",
    "augment",
    "steps",
    "learning_rate",
    "tv_weight",
    "keep",
    "size",
    "init",
    "epsilon",
    "seeds",
    "precision",
];

/// One model of a run: released, or a checkpoint named in the `[weights]` table.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelRef {
    Released(&'static ReleasedModel),
    Weights { name: String, path: PathBuf },
}

impl ModelRef {
    /// How the SPEC names it.
    pub fn name(&self) -> &str {
        match self {
            Self::Released(m) => m.name,
            Self::Weights { name, .. } => name,
        }
    }

    /// What makes it this model in a run's id: the released name, or the table name and path.
    fn identity(&self) -> String {
        match self {
            Self::Released(m) => format!("released:{}", m.name),
            Self::Weights { name, path } => format!("weights:{name}={}", path.display()),
        }
    }
}

/// One value of the `models` axis: one model, or an ensemble with its members' weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelChoice {
    pub members: Vec<ModelRef>,
    /// One per member; empty: all equal.
    pub weights: Vec<f64>,
}

impl ModelChoice {
    /// `RN50`, or `RN50+ViT-B/32` for an ensemble (with `*w` for weighted members).
    pub fn label(&self) -> String {
        self.joined(|m| m.name().to_string())
    }

    /// What makes it this choice in a run's id.
    pub(super) fn identity(&self) -> String {
        self.joined(ModelRef::identity)
    }

    /// The members as `name(member)`, weighted ones with `*w`, joined by `+`.
    fn joined(&self, name: impl Fn(&ModelRef) -> String) -> String {
        let parts: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| match self.weights.get(i) {
                Some(w) => format!("{}*{w}", name(m)),
                None => name(m),
            })
            .collect();
        parts.join("+")
    }

    /// The largest input resolution of its members, when all are released models.
    pub fn known_resolution(&self) -> Option<i64> {
        let mut res = 0;
        for m in &self.members {
            match m {
                ModelRef::Released(r) => res = res.max(r.input_resolution()),
                ModelRef::Weights { .. } => return None,
            }
        }
        Some(res)
    }
}

/// A SPEC, read and checked. Each axis holds its values in the file's order; `None` stands for
/// "the preset's value" (the key was not given).
#[derive(Debug, Clone)]
pub struct Spec {
    /// The SPEC file, absolute.
    pub path: PathBuf,
    pub out: PathBuf,
    /// The `name` template, if given.
    pub name: Option<String>,
    pub models: Vec<ModelChoice>,
    pub presets: Vec<Preset>,
    pub prompts: Vec<String>,
    pub negative: Vec<Vec<String>>,
    pub negative_weight: Vec<Option<f64>>,
    pub param: Vec<Option<Param>>,
    pub decay: Vec<Option<f64>>,
    pub augment: Vec<Option<Vec<Augment>>>,
    pub steps: Vec<Option<usize>>,
    pub learning_rate: Vec<Option<f64>>,
    pub tv_weight: Vec<Option<f64>>,
    pub keep: Vec<Option<Keep>>,
    pub size: Vec<Option<Canvas>>,
    pub init: Vec<Option<PathBuf>>,
    pub epsilon: Vec<Option<f64>>,
    /// `None`: the key was not given (every run seed 0, and no `-s<seed>` in default names).
    pub seeds: Option<Vec<u64>>,
    pub precision: Option<Precision>,
}

/// The error for the SPEC at `path`: a usage error (exit 2).
fn bad(path: &Path, message: String) -> anyhow::Error {
    UsageError(format!("{}: {message}", path.display())).into()
}

/// What a TOML value is, for messages.
fn kind(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {s:?}"),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::Boolean(b) => format!("{b}"),
        Value::Datetime(d) => format!("the date {d}"),
        Value::Array(_) => "a list".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

/// The valid key nearest to `key`, if any is near.
pub fn nearest_key(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

/// Reads one TOML value as a string.
fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("expected a string, found {}", kind(other))),
    }
}

/// A number (integer or float) as text, for the flags' parsers.
fn number_text(v: &Value) -> Result<String, String> {
    match v {
        Value::Integer(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        // Fractions such as "8/255" for epsilon, and numbers written as strings.
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("expected a number, found {}", kind(other))),
    }
}

struct Reader<'a> {
    path: &'a Path,
    dir: PathBuf,
    table: toml::Table,
}

impl Reader<'_> {
    /// `prompts` and the `negative` axis, each text checked against CLIP's 77-token context.
    fn texts(&self) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
        let prompts = self.prompts()?;
        let tokenizer = Tokenizer::new()?;
        for (i, p) in prompts.iter().enumerate() {
            if let Err(e) = tokenizer.tokenize(std::slice::from_ref(p), false) {
                return Err(bad(self.path, format!("prompt {}: {e}", i + 1)));
            }
        }
        let negative = match self.list_axis("negative")? {
            None => vec![Vec::new()],
            Some(axis) => {
                for set in &axis {
                    if let Err(e) = tokenizer.tokenize(set, false) {
                        return Err(self.err("negative", e.to_string()));
                    }
                }
                axis
            }
        };
        Ok((prompts, negative))
    }

    fn err(&self, key: &str, message: String) -> anyhow::Error {
        bad(self.path, format!("`{key}`: {message}"))
    }

    /// An axis of scalars: a list (each element one value) or one value.
    fn axis<T>(
        &self,
        key: &str,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> anyhow::Result<Vec<Option<T>>> {
        match self.table.get(key) {
            None => Ok(vec![None]),
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    return Err(self.err(key, "an empty list makes no runs: give at least one value, or leave the key out".into()));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        parse(v)
                            .map(Some)
                            .map_err(|m| self.err(key, format!("item {}: {m}", i + 1)))
                    })
                    .collect()
            }
            Some(v) => Ok(vec![Some(parse(v).map_err(|m| self.err(key, m))?)]),
        }
    }

    /// An axis of lists (`augment`, `negative`): a list of lists is the axis; a list of scalars
    /// (or `[]`) is one value.
    fn list_axis(&self, key: &str) -> anyhow::Result<Option<Vec<Vec<String>>>> {
        let strings = |items: &[Value], at: &str| -> anyhow::Result<Vec<String>> {
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    string(v).map_err(|m| self.err(key, format!("{at}item {}: {m}", i + 1)))
                })
                .collect()
        };
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) if items.iter().any(|v| v.is_array()) => {
                if !items.iter().all(|v| v.is_array()) {
                    return Err(self.err(
                        key,
                        "mixes lists and single values: give a list of lists (an axis) or one list"
                            .into(),
                    ));
                }
                let axis: Vec<Vec<String>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        strings(v.as_array().expect("a list"), &format!("list {}, ", i + 1))
                    })
                    .collect::<anyhow::Result<_>>()?;
                Ok(Some(axis))
            }
            Some(Value::Array(items)) => Ok(Some(vec![strings(items, "")?])),
            Some(Value::String(s)) => Ok(Some(vec![vec![s.clone()]])),
            Some(other) => {
                Err(self.err(key, format!("expected a list of strings, found {}", kind(other))))
            }
        }
    }

    /// A key whose value is one string, if given.
    fn single_string(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(v) => string(v).map(Some).map_err(|m| self.err(key, m)),
        }
    }

    /// `[weights]`: table name -> path, each an existing file. A name is its results' folder and
    /// file-name part (made a token as `output::token_for_name` does): two names may not make one.
    fn weights(&self) -> anyhow::Result<BTreeMap<String, PathBuf>> {
        let mut weights: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut tokens: BTreeMap<String, &str> = BTreeMap::new();
        match self.table.get("weights") {
            None => {}
            Some(Value::Table(t)) => {
                for (k, v) in t {
                    let token = crate::output::token_for_name(k);
                    if let Some(other) = tokens.insert(token.clone(), k) {
                        return Err(self.err(
                            "weights",
                            format!(
                                "`{other}` and `{k}` would both name their results {token}: \
                                 rename one (letters, digits, -, +, . and _ are kept)"
                            ),
                        ));
                    }
                    let p = string(v).map_err(|m| self.err("weights", format!("`{k}`: {m}")))?;
                    let p = self.resolve(&p);
                    if !p.is_file() {
                        return Err(
                            self.err("weights", format!("`{k}`: {} is not a file", p.display()))
                        );
                    }
                    weights.insert(k.clone(), p);
                }
            }
            Some(other) => {
                return Err(self.err(
                    "weights",
                    format!("expected a table of name = \"path\", found {}", kind(other)),
                ))
            }
        }
        Ok(weights)
    }

    /// The prompts: a list, or a file of one per line (blank lines and `#` comments skipped), each
    /// once.
    fn prompts(&self) -> anyhow::Result<Vec<String>> {
        let prompts: Vec<String> =
            match (self.table.get("prompts"), self.single_string("prompts_file")?) {
                (Some(_), Some(_)) => {
                    return Err(bad(self.path, "give `prompts` or `prompts_file`, not both".into()))
                }
                (None, None) => {
                    return Err(bad(
                        self.path,
                        "no prompts: give `prompts` (a list) or `prompts_file` (one per line)"
                            .into(),
                    ))
                }
                (Some(_), None) => {
                    self.axis("prompts", string)?.into_iter().map(|p| p.expect("given")).collect()
                }
                (None, Some(file)) => {
                    let file = self.resolve(&file);
                    let text = clip_core::clip::files::read_regular_text(&file).map_err(|e| {
                        self.err("prompts_file", format!("cannot read {}: {e}", file.display()))
                    })?;
                    let prompts: Vec<String> = text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_string)
                        .collect();
                    if prompts.is_empty() {
                        return Err(self.err(
                            "prompts_file",
                            format!(
                                "{} has no prompts (one per line; blank lines and # comments are \
                             skipped)",
                                file.display()
                            ),
                        ));
                    }
                    prompts
                }
            };
        let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, p) in prompts.iter().enumerate() {
            if let Some(&j) = first.get(p.as_str()) {
                return Err(bad(
                    self.path,
                    format!("prompt {} is prompt {} again ({p:?}): each prompt once", i + 1, j + 1),
                ));
            }
            first.insert(p, i);
        }
        Ok(prompts)
    }

    /// `models`: released names, `[weights]` names, ensembles (lists or `{ members, weights }`
    /// tables), each member once per ensemble.
    fn models(&self) -> anyhow::Result<Vec<ModelChoice>> {
        let weights = self.weights()?;
        let choice = |v: &Value| model_choice(v, &weights);
        let models: Vec<ModelChoice> = match self.table.get("models") {
            None => {
                return Err(bad(
                    self.path,
                    "no `models`: give a list of released names (e.g. models = [\"RN50\"]) or \
                 names from a [weights] table"
                        .into(),
                ))
            }
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(self.err("models", "an empty list makes no runs".into()))
            }
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    choice(v).map_err(|m| self.err("models", format!("item {}: {m}", i + 1)))
                })
                .collect::<anyhow::Result<_>>()?,
            Some(v) => vec![choice(v).map_err(|m| self.err("models", m))?],
        };
        for m in &models {
            for (i, a) in m.members.iter().enumerate() {
                if m.members[..i].contains(a) {
                    return Err(self.err(
                        "models",
                        format!("the ensemble {} has {} twice", m.label(), a.name()),
                    ));
                }
            }
        }
        Ok(models)
    }

    /// `seeds`: whole numbers >= 0, each once; `None` when not given.
    fn seeds(&self) -> anyhow::Result<Option<Vec<u64>>> {
        let seeds = match self.table.get("seeds") {
            None => None,
            Some(_) => Some(
                self.axis("seeds", |v| match v {
                    Value::Integer(i) if *i >= 0 => Ok(*i as u64),
                    other => Err(format!("expected a whole number >= 0, found {}", kind(other))),
                })?
                .into_iter()
                .map(|s| s.expect("given"))
                .collect::<Vec<_>>(),
            ),
        };
        if let Some(seeds) = &seeds {
            let mut seen = std::collections::HashSet::new();
            for s in seeds {
                if !seen.insert(s) {
                    return Err(self.err("seeds", format!("seed {s} is given twice")));
                }
            }
        }
        Ok(seeds)
    }

    /// `precision`: fp16 or fp32; `None` when not given.
    fn precision(&self) -> anyhow::Result<Option<Precision>> {
        let precision = match self.single_string("precision")?.as_deref() {
            None => None,
            Some("fp16") => Some(Precision::Fp16),
            Some("fp32") => Some(Precision::Fp32),
            Some(other) => {
                return Err(self.err("precision", format!("{other:?} is neither fp16 nor fp32")))
            }
        };
        Ok(precision)
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

impl Spec {
    /// Reads and checks the SPEC at `path`: keys, types, ranges, the models' names, the prompts
    /// (each must fit CLIP's 77 tokens), the paths it names.
    pub fn read(path: &Path) -> anyhow::Result<Spec> {
        let text = clip_core::clip::files::read_regular_text(path).map_err(|e| {
            UsageError(format!("cannot read the sweep SPEC {}: {e}", path.display()))
        })?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let message = e.message().to_string();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            bad(path, format!("not valid TOML{at}: {message}"))
        })?;
        let path = std::path::absolute(path).unwrap_or(path.to_path_buf());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                let hint = match nearest_key(key) {
                    Some(k) => format!(" (did you mean `{k}`?)"),
                    None => format!("; valid keys: {}", KEYS.join(", ")),
                };
                return Err(bad(&path, format!("unknown key `{key}`{hint}")));
            }
        }
        let r = Reader { path: &path, dir, table };
        Self::from_reader(&r)
    }

    /// `epsilon` needs a start photo for every run, and a start photo the pixel parameterisation.
    fn check_start_photo(&self) -> anyhow::Result<()> {
        if self.epsilon.iter().any(Option::is_some) && self.init.iter().any(Option::is_none) {
            return Err(bad(
                &self.path,
                "`epsilon` needs `init` (a photo) for every run: the budget is around the start photo"
                    .into(),
            ));
        }
        if self.init.iter().any(Option::is_some) {
            if let Some(p) = self.param.iter().flatten().find(|p| **p != Param::Pixels) {
                return Err(bad(
                    &self.path,
                    format!("`init` needs `param = \"pixels\"`, not {p}: a photo is a start for the pixels themselves"),
                ));
            }
        }
        Ok(())
    }

    fn from_reader(r: &Reader) -> anyhow::Result<Spec> {
        let out = r.resolve(&r.single_string("out")?.unwrap_or_else(|| "results".to_string()));
        let name = r.single_string("name")?;
        if let Some(template) = &name {
            check_template(template).map_err(|m| r.err("name", m))?;
        }

        let models = r.models()?;

        let presets: Vec<Preset> = r
            .axis("presets", |v| string(v).and_then(|s| parse_preset(&s)))?
            .into_iter()
            .map(|p| p.unwrap_or(Preset::Constrained))
            .collect();

        let (prompts, negative) = r.texts()?;
        let augment = match r.list_axis("augment")? {
            None => vec![None],
            Some(axis) => axis
                .iter()
                .map(|p| augment::parse_pipeline(p).map(Some).map_err(|m| r.err("augment", m)))
                .collect::<anyhow::Result<_>>()?,
        };
        let via = |f: fn(&str) -> Result<f64, String>| {
            move |v: &Value| number_text(v).and_then(|t| f(&t))
        };
        let steps = r.axis("steps", |v| match v {
            Value::Integer(_) => parse_steps(&number_text(v)?).map(|n| n as usize),
            other => Err(format!("expected a whole number of steps, found {}", kind(other))),
        })?;
        let size = r.axis("size", |v| match v {
            Value::Integer(i) => parse_canvas(&i.to_string()),
            Value::String(s) => parse_canvas(s),
            other => Err(format!("expected N or \"WxH\", found {}", kind(other))),
        })?;
        let init = r.axis("init", |v| {
            let p = r.resolve(&string(v)?);
            if p.is_file() {
                Ok(p)
            } else {
                Err(format!("{} is not a file", p.display()))
            }
        })?;
        let seeds = r.seeds()?;
        let precision = r.precision()?;
        let spec = Spec {
            path: r.path.to_path_buf(),
            out,
            name,
            models,
            presets,
            prompts,
            negative,
            negative_weight: r.axis("negative_weight", via(parse_negative_weight))?,
            param: r.axis("param", |v| string(v).and_then(|s| parse_param(&s)))?,
            decay: r.axis("decay", via(parse_decay))?,
            augment,
            steps,
            learning_rate: r.axis("learning_rate", via(parse_learning_rate))?,
            tv_weight: r.axis("tv_weight", via(parse_tv_weight))?,
            keep: r.axis("keep", |v| string(v).and_then(|s| parse_keep(&s)))?,
            size,
            init,
            epsilon: r.axis("epsilon", |v| number_text(v).and_then(|t| parse_epsilon(&t)))?,
            seeds,
            precision,
        };
        spec.check_start_photo()?;
        Ok(spec)
    }
}

/// The placeholders a `name` template may use.
pub const PLACEHOLDERS: &[&str] =
    &["preset", "hash", "seed", "param", "steps", "learning_rate", "tv_weight", "size", "keep"];

/// Checks a `name` template: its placeholders, and that its fixed text is a file-name token.
fn check_template(template: &str) -> Result<(), String> {
    let mut fixed = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        fixed.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("{template:?} has a `{{` without its `}}`"))?;
        let key = &rest[open + 1..open + close];
        if !PLACEHOLDERS.contains(&key) {
            return Err(format!(
                "unknown placeholder {{{key}}} in {template:?}; valid: {}",
                PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(" ")
            ));
        }
        fixed.push('x');
        rest = &rest[open + close + 1..];
    }
    fixed.push_str(rest);
    parse_name(&fixed).map(|_| ())
}

/// Fills a `name` template.
pub fn render_template(template: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// One item of `models`: a name, a list (an ensemble) or a table (an ensemble with weights).
fn model_choice(v: &Value, weights: &BTreeMap<String, PathBuf>) -> Result<ModelChoice, String> {
    let model_ref = |v: &Value| model_ref(v, weights);
    match v {
        Value::Array(items) => {
            let members = items.iter().map(model_ref).collect::<Result<Vec<_>, String>>()?;
            if members.is_empty() {
                return Err("an empty ensemble".into());
            }
            Ok(ModelChoice { members, weights: Vec::new() })
        }
        Value::Table(t) => ensemble_table(t, weights),
        other => Ok(ModelChoice { members: vec![model_ref(other)?], weights: Vec::new() }),
    }
}

/// A model's name: one of the `[weights]` table's, or a released model's.
fn model_ref(v: &Value, weights: &BTreeMap<String, PathBuf>) -> Result<ModelRef, String> {
    let n = string(v)?;
    if let Some(p) = weights.get(&n) {
        return Ok(ModelRef::Weights { name: n, path: p.clone() });
    }
    released::by_name(&n).map(ModelRef::Released).map_err(|e| {
        let table = if weights.is_empty() {
            String::new()
        } else {
            format!(
                " or a name in [weights] ({})",
                weights.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        format!("{e}{table}")
    })
}

/// `{ members = [...], weights = [...] }`: an ensemble with its members' weights.
fn ensemble_table(
    t: &toml::Table,
    weights: &BTreeMap<String, PathBuf>,
) -> Result<ModelChoice, String> {
    if let Some(k) = t.keys().find(|k| *k != "members" && *k != "weights") {
        return Err(format!("an ensemble's table has `members` and `weights`, not `{k}`"));
    }
    let members = match t.get("members") {
        Some(Value::Array(items)) if !items.is_empty() => {
            items.iter().map(|v| model_ref(v, weights)).collect::<Result<Vec<_>, String>>()?
        }
        _ => return Err("an ensemble's table needs `members`, a list of models".into()),
    };
    let member_weights = match t.get("weights") {
        None => Vec::new(),
        Some(Value::Array(ws)) => ws
            .iter()
            .map(|w| number_text(w).and_then(|t| parse_model_weight(&t)))
            .collect::<Result<Vec<_>, String>>()?,
        Some(other) => {
            return Err(format!("`weights` must be a list of numbers, not {}", kind(other)))
        }
    };
    if !member_weights.is_empty() && member_weights.len() != members.len() {
        return Err(format!(
            "{} weights for {} members: give one per member",
            member_weights.len(),
            members.len()
        ));
    }
    Ok(ModelChoice { members, weights: member_weights })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_keys_are_suggested() {
        assert_eq!(nearest_key("step"), Some("steps"));
        assert_eq!(nearest_key("seed"), Some("seeds"));
        assert_eq!(nearest_key("learning-rate"), Some("learning_rate"));
        assert_eq!(nearest_key("prompt_file"), Some("prompts_file"));
        assert_eq!(nearest_key("zzzzzzzz"), None);
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_template("{preset}-{hash}-s{seed}").is_ok());
        assert!(check_template("{nope}").unwrap_err().contains("unknown placeholder {nope}"));
        assert!(check_template("a/b").is_err());
        assert!(check_template("{preset").is_err());
    }
}
