//! `clip compare`'s flags, shared by the `clip` binary and the Python module (which parses its
//! keyword arguments through them, for the same checks and messages).

use super::{CompareOptions, ProbeList, RealPhoto};
use crate::device::DeviceChoice;
use clip_core::clip::excerpt::excerpt;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The experiment's output root (e.g. `results`): every `<stem>.png` with its `<stem>.json`
    /// below it is scored, with its `<stem>.csv` history plotted (and, for a run that began from a
    /// photo, its `<stem>.start.png` start image beside it).
    #[arg(value_name = "RESULTS_DIR")]
    pub results_dir: PathBuf,
    /// Weights of a scoring model, e.g. `ViT-B/32=ViT-B-32.pt`; repeat for several. NAME may be any
    /// name; a released model without this flag is taken from ~/.cache/clip/ (downloaded if needed).
    #[arg(long = "weights", value_name = "NAME=PATH", value_parser = Shown(parse_weights))]
    pub weights: Vec<(String, PathBuf)>,
    /// Scoring models, comma-separated, in column order (default: the names given with --weights,
    /// or RN50,ViT-B/32,ViT-L/14).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub models: Vec<String>,
    /// A real photo and its prompt, scored for reference, e.g. `dog.jpg="A cute golden retriever"`;
    /// repeat for several. Split at the first `=`.
    #[arg(long = "real", value_name = "PHOTO=PROMPT", value_parser = Shown(|s: &str| s.parse::<RealPhoto>()))]
    pub real: Vec<RealPhoto>,
    /// Where the models run: cpu (fp32), cuda (fp16, as clip.load) or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Images per forward pass.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Side of each image in contact_sheet.png, in pixels.
    #[arg(long, value_name = "PX", default_value_t = 160, value_parser = clap::value_parser!(u32).range(64..=1024))]
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
    pub zero_shot: Option<super::ZeroShotChoice>,
}

/// `--zero-shot`: a labels file is read here, so an empty or unreadable one is a usage error.
fn parse_zero_shot(s: &str) -> Result<super::ZeroShotChoice, String> {
    let choice: super::ZeroShotChoice = s.parse()?;
    if let super::ZeroShotChoice::Labels(spec) = &choice {
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
