//! `clip compare`'s settings: the `clip` binary's flags (clap) and the Python module's keyword
//! arguments (serde, the same names in `snake_case`), one type; each value is parsed and checked
//! by one function whichever front end gave it.

use super::{CompareOptions, ProbeList, RealPhoto, ZeroShotChoice};
use crate::device::DeviceChoice;
use clip_core::clip::excerpt::excerpt;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Images per forward pass, by default.
const DEFAULT_BATCH_SIZE: u64 = 16;
/// The contact sheet's cells, by default.
const DEFAULT_CELL_SIZE: u32 = 160;

#[derive(clap::Args, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareArgs {
    /// The experiment's output root (e.g. `results`): every `<stem>.png` with its `<stem>.json`
    /// below it is scored, with its `<stem>.csv` history plotted (and, for a run that began from a
    /// photo, its `<stem>.start.png` start image beside it).
    #[arg(value_name = "RESULTS_DIR")]
    #[serde(skip)]
    pub results_dir: PathBuf,
    /// Weights of a scoring model, e.g. `ViT-B/32=ViT-B-32.pt`; repeat for several. NAME may be any
    /// name; a released model without this flag is taken from ~/.cache/clip/ (downloaded if needed).
    #[arg(long = "weights", value_name = "NAME=PATH", value_parser = Shown(parse_weights))]
    #[serde(default, deserialize_with = "weights_list")]
    pub weights: Vec<(String, PathBuf)>,
    /// Scoring models, comma-separated, in column order (default: the names given with --weights,
    /// or RN50,ViT-B/32,ViT-L/14).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    #[serde(default, deserialize_with = "comma_separated")]
    pub models: Vec<String>,
    /// A real photo and its prompt, scored for reference, e.g. `dog.jpg="A cute golden retriever"`;
    /// repeat for several. Split at the first `=`.
    #[arg(long = "real", value_name = "PHOTO=PROMPT", value_parser = Shown(|s: &str| s.parse::<RealPhoto>()))]
    #[serde(default, deserialize_with = "real_list")]
    pub real: Vec<RealPhoto>,
    /// Where the models run: cpu (fp32), cuda (fp16, as clip.load) or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    #[serde(default)]
    pub device: DeviceChoice,
    /// Images per forward pass.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_SIZE, value_parser = Shown(|s: &str| number(s).and_then(batch_size)))]
    #[serde(default = "default_batch_size", deserialize_with = "checked_batch_size")]
    pub batch_size: u64,
    /// Side of each image in contact_sheet.png, in pixels.
    #[arg(long, value_name = "PX", default_value_t = DEFAULT_CELL_SIZE, value_parser = Shown(|s: &str| number(s).and_then(cell_size)))]
    #[serde(default = "default_cell_size", deserialize_with = "checked_cell_size")]
    pub cell_size: u32,
    /// Robustness probes, comma-separated: each image is scored again after each one, under every
    /// model (robustness.csv, robustness.png). jpeg:Q (quality 1-100), blur:SIGMA (torchvision's
    /// gaussian_blur, kernel 2*ceil(3*SIGMA)+1), down:K (Pillow bicubic down by K and back up),
    /// rotate:DEG (mean of +DEG and -DEG, bilinear, black corners), noise:SD (Gaussian, in [0, 1]
    /// units, fixed seed per image); `none` for no probes.
    #[arg(
        long,
        value_name = "LIST",
        default_value = super::DEFAULT_PROBES,
        value_parser = Shown(|s: &str| s.parse::<ProbeList>().map_err(|e| e.to_string()))
    )]
    #[serde(default, deserialize_with = "probe_list")]
    pub probes: ProbeList,
    /// Zero-shot verdicts (zeroshot.csv, the contact sheet, the Findings): imagenet (OpenAI's
    /// 1 000 classes and 80 templates), a labels file (one class name a line), or none. Default:
    /// imagenet for the models whose class weights are cached (`clip classify` or an earlier
    /// `--zero-shot imagenet` made them), or every model on CUDA; given explicitly, the class
    /// weights are computed (and cached) where missing — minutes per model on a CPU.
    #[arg(
        long,
        value_name = "imagenet|FILE|none",
        value_parser = Shown(parse_zero_shot)
    )]
    #[serde(default, deserialize_with = "zero_shot")]
    pub zero_shot: Option<ZeroShotChoice>,
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.trim().parse().map_err(|e| format!("{e}: {}", excerpt(s)))
}

/// `batch_size`: at least 1.
fn batch_size(n: u64) -> Result<u64, String> {
    if n >= 1 {
        Ok(n)
    } else {
        Err("must be at least 1 image".to_string())
    }
}

/// `cell_size`: 64 to 1024 pixels.
fn cell_size(n: u32) -> Result<u32, String> {
    if (64..=1024).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be 64 to 1024 pixels, not {n}"))
    }
}

fn default_batch_size() -> u64 {
    DEFAULT_BATCH_SIZE
}

fn default_cell_size() -> u32 {
    DEFAULT_CELL_SIZE
}

fn checked_batch_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    batch_size(u64::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn checked_cell_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    cell_size(u32::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// Texts, each through `parse` (the flag's parser).
fn each<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts.iter().map(|t| parse(t).map_err(serde::de::Error::custom)).collect()
}

fn weights_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, PathBuf)>, D::Error> {
    each(d, parse_weights)
}

fn real_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RealPhoto>, D::Error> {
    each(d, |s| s.parse::<RealPhoto>())
}

/// Names, as a list or comma-separated (as the flag).
fn comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    Ok(texts.iter().flat_map(|t| t.split(',')).map(str::to_string).collect())
}

/// Probes as the flag's comma-separated text, or a list of probes.
fn probe_list<'de, D: Deserializer<'de>>(d: D) -> Result<ProbeList, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts.join(",").parse::<ProbeList>().map_err(serde::de::Error::custom)
}

fn zero_shot<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ZeroShotChoice>, D::Error> {
    parse_zero_shot(&String::deserialize(d)?).map(Some).map_err(serde::de::Error::custom)
}

/// `--zero-shot`: a labels file is read here, so an empty or unreadable one is a usage error.
fn parse_zero_shot(s: &str) -> Result<ZeroShotChoice, String> {
    let choice: ZeroShotChoice = s.parse()?;
    if let ZeroShotChoice::Labels(spec) = &choice {
        clip_core::clip::zeroshot::Labels::from_spec(spec).map_err(|e| e.to_string())?;
    }
    Ok(choice)
}

/// A flag's parser whose error shows the value cut to an excerpt: clap's own message for a bad
/// value repeats it whole (a 120 KB `--real` would fill the terminal). Still a usage error
/// (status 2).
#[derive(Clone)]
pub struct Shown<F>(pub F);

impl<T, F> clap::builder::TypedValueParser for Shown<F>
where
    F: Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let flag = arg.map_or(String::new(), |a| format!(" for '{a}'"));
        let text = value.to_string_lossy();
        (self.0)(&text).map_err(|message| {
            let message =
                format!("invalid value{flag}: {message}\n\nFor more information, try '--help'.\n");
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd)
        })
    }
}

fn parse_weights(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=PATH (e.g. RN50=RN50.pt), got {}", excerpt(s))),
    }
}

/// One checkpoint per model name: a second `--weights NAME=…` would silently replace the first.
fn weights_by_name(given: &[(String, PathBuf)]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut weights = BTreeMap::new();
    for (name, path) in given {
        if let Some(first) = weights.insert(name.clone(), path.clone()) {
            anyhow::bail!(
                "--weights {} is given twice ({} and {}): give each model name once",
                excerpt(name),
                first.display(),
                path.display()
            );
        }
    }
    Ok(weights)
}

impl CompareArgs {
    /// The comparison these flags ask for; `stop` is asked between files, batches and pictures.
    pub fn options(&self, stop: fn() -> bool) -> anyhow::Result<CompareOptions> {
        let weights = weights_by_name(&self.weights)?;
        let mut models: Vec<String> = self.models.iter().map(|m| m.trim().to_string()).collect();
        models.retain(|m| !m.is_empty());
        if models.is_empty() {
            models = if self.weights.is_empty() {
                super::DEFAULT_MODELS.iter().map(|m| m.name.to_string()).collect()
            } else {
                self.weights.iter().map(|(name, _)| name.clone()).collect()
            };
        }
        let mut unique = Vec::new();
        for m in models {
            if !unique.contains(&m) {
                unique.push(m);
            }
        }
        for name in weights.keys().filter(|n| !unique.contains(n)) {
            eprintln!("warning: --weights {name}=… is not among --models; not used");
        }
        let options = CompareOptions {
            results_dir: self.results_dir.clone(),
            models: unique,
            weights,
            real: self.real.clone(),
            device: self.device.resolve()?,
            batch_size: self.batch_size as usize,
            cell_size: self.cell_size,
            probes: self.probes.0.clone(),
            zero_shot: self.zero_shot.clone().unwrap_or_default(),
            stop,
        };
        Ok(options)
    }
}
