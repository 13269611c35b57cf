//! Augmentation pipelines: an ordered list of augmentations applied to each step's view, every
//! image with its own draws, ending with the views resampled to the model's input resolution.
//!
//! A pipeline is data (as torchvision's `Compose` and kornia's `AugmentationSequential`): each
//! augmentation is written as a spec string — `affine:DEG,TRANSLATE,SMIN,SMAX`, `flip:P`,
//! `jitter:PX`, `scale:MIN,MAX`, `rotate:DEG`, `pad:PX`, `cutouts:N,MINFRAC,POW`, `noise:SD` — and
//! draws its random parameters (through `engine::draws`) separately from applying them. Shapes
//! never depend on a draw: crops, scales and rotations are sampling grids, so the whole step can
//! be captured as one CUDA graph. Files: `affine.rs` (torchvision's RandomAffine and flip, the
//! seed's), `lucent.rs` (Lucent's jitter, scale, rotate, pad), `cutouts.rs` (VQGAN-CLIP's cutouts).

pub mod affine;
pub mod cutouts;
pub mod lucent;

use super::draws::Draws;
use affine::RandomAffine;
use tch::{Kind, Tensor};

/// One augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Augment {
    /// torchvision's `RandomAffine(degrees, translate=(t, t), scale=(min, max))`, nearest, zero fill.
    Affine(RandomAffine),
    /// torchvision's `RandomHorizontalFlip(p)`.
    Flip { p: f64 },
    /// Lucent's `jitter(px)`: shifts of 0..px−1 pixels right and down.
    Jitter { px: i64 },
    /// Lucent's `random_scale`, the scale uniform on [min, max], centre-cropped back.
    Scale { min: f64, max: f64 },
    /// Lucent's `random_rotate`, the angle uniform on [−degrees, degrees].
    Rotate { degrees: f64 },
    /// Lucent's `pad(px, mode="constant", constant_value=0.5)`.
    Pad { px: i64 },
    /// VQGAN-CLIP's cutouts: `n` crops per image, the smallest `min_frac` of the short side.
    Cutouts { n: i64, min_frac: f64, pow: f64 },
    /// Gaussian noise of standard deviation `sd` added to the view.
    Noise { sd: f64 },
}

/// The seed's constrained pipeline: `RandomAffine(10, (0.1, 0.1), (0.9, 1.1))` then
/// `RandomHorizontalFlip(0.3)`.
pub const SEED_CONSTRAINED: [Augment; 2] =
    [Augment::Affine(RandomAffine::SEED), Augment::Flip { p: 0.3 }];

/// Largest count or pixel number a spec accepts (cutouts per image, jitter, padding).
const MAX_COUNT: i64 = 1024;

/// Largest zoom of `affine` and `scale`: beyond it a view is a few pixels blown up.
const MAX_SCALE: f64 = 16.0;
/// Largest standard deviation of `noise`: views live in [0, 1]; past 10 the noise is all a model
/// sees, and fp16 activations start to overflow.
const MAX_NOISE_SD: f64 = 10.0;

/// `name:values` → the values as numbers, checking their number.
fn values(spec: &str, name: &str, rest: &str, names: &[&str]) -> Result<Vec<f64>, String> {
    let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split(',').collect() };
    if parts.len() != names.len() {
        return Err(format!(
            "{spec:?}: {name} takes {} value(s), {name}:{}, not {}",
            names.len(),
            names.join(","),
            parts.len()
        ));
    }
    parts
        .iter()
        .zip(names)
        .map(|(p, what)| {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{spec:?}: {what} {:?} is not a number", p.trim()))?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(format!("{spec:?}: {what} must be finite, not {v}"))
            }
        })
        .collect()
}

/// A whole number in `range`.
fn count(
    spec: &str,
    what: &str,
    v: f64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, String> {
    if v.fract() != 0.0 || v < *range.start() as f64 || v > *range.end() as f64 {
        return Err(format!(
            "{spec:?}: {what} must be a whole number from {} to {}, not {}",
            range.start(),
            range.end(),
            crate::clip::excerpt::number(v)
        ));
    }
    Ok(v as i64)
}

/// `v` in `range`, or an error naming it.
fn within(spec: &str, what: &str, v: f64, ok: bool, allowed: &str) -> Result<f64, String> {
    if ok {
        Ok(v)
    } else {
        Err(format!("{spec:?}: {what} must be {allowed}, not {}", crate::clip::excerpt::number(v)))
    }
}

impl Augment {
    /// Parses one spec; `none` gives `None` (it clears a pipeline).
    pub fn parse(spec: &str) -> Result<Option<Self>, String> {
        let trimmed = spec.trim();
        if trimmed == "none" {
            return Ok(None);
        }
        let (name, rest) = trimmed.split_once(':').unwrap_or((trimmed, ""));
        let vals = |names: &[&str]| values(spec, name, rest, names);
        let augment = match name {
            "affine" => {
                let v = vals(&["DEG", "TRANSLATE", "SMIN", "SMAX"])?;
                let degrees =
                    within(spec, "DEG", v[0], (0.0..=180.0).contains(&v[0]), "in [0, 180]")?;
                let translate =
                    within(spec, "TRANSLATE", v[1], (0.0..=1.0).contains(&v[1]), "in [0, 1]")?;
                let smin =
                    within(spec, "SMIN", v[2], v[2] > 0.0 && v[2] <= MAX_SCALE, "in (0, 16]")?;
                let smax =
                    within(spec, "SMAX", v[3], v[3] >= smin && v[3] <= MAX_SCALE, "in [SMIN, 16]")?;
                Self::Affine(RandomAffine { degrees, translate, scale: (smin, smax) })
            }
            "flip" => {
                let v = vals(&["P"])?;
                Self::Flip { p: within(spec, "P", v[0], (0.0..=1.0).contains(&v[0]), "in [0, 1]")? }
            }
            "jitter" => {
                // Lucent's jitter asserts d > 1.
                Self::Jitter { px: count(spec, "PX", vals(&["PX"])?[0], 2..=MAX_COUNT)? }
            }
            "scale" => {
                let v = vals(&["MIN", "MAX"])?;
                let min = within(spec, "MIN", v[0], v[0] > 0.0, "greater than 0")?;
                let max =
                    within(spec, "MAX", v[1], v[1] >= min && v[1] <= MAX_SCALE, "in [MIN, 16]")?;
                Self::Scale { min, max }
            }
            "rotate" => {
                let v = vals(&["DEG"])?;
                Self::Rotate {
                    degrees: within(
                        spec,
                        "DEG",
                        v[0],
                        (0.0..=180.0).contains(&v[0]),
                        "in [0, 180]",
                    )?,
                }
            }
            "pad" => Self::Pad { px: count(spec, "PX", vals(&["PX"])?[0], 0..=MAX_COUNT)? },
            "cutouts" => {
                let v = vals(&["N", "MINFRAC", "POW"])?;
                let n = count(spec, "N", v[0], 1..=MAX_COUNT)?;
                let min_frac =
                    within(spec, "MINFRAC", v[1], v[1] > 0.0 && v[1] <= 1.0, "in (0, 1]")?;
                let pow = within(spec, "POW", v[2], v[2] > 0.0, "greater than 0")?;
                Self::Cutouts { n, min_frac, pow }
            }
            "noise" => {
                let v = vals(&["SD"])?;
                let ok = (0.0..=MAX_NOISE_SD).contains(&v[0]);
                Self::Noise { sd: within(spec, "SD", v[0], ok, "from 0 to 10")? }
            }
            other => {
                return Err(format!(
                "{spec:?}: unknown augmentation {other:?}; valid: affine:DEG,TRANSLATE,SMIN,SMAX, \
                     flip:P, jitter:PX, scale:MIN,MAX, rotate:DEG, pad:PX, \
                     cutouts:N,MINFRAC,POW, noise:SD, none"
            ))
            }
        };
        Ok(Some(augment))
    }

    /// Views each input becomes (cutouts: N, else 1).
    pub fn views_per_input(&self) -> i64 {
        match self {
            Self::Cutouts { n, .. } => *n,
            _ => 1,
        }
    }

    /// The (height, width) of this augmentation's output for an input of (h, w), with `res` the
    /// model's input resolution.
    pub fn output_size(&self, (h, w): (i64, i64), res: i64) -> (i64, i64) {
        match self {
            Self::Pad { px } => (h + 2 * px, w + 2 * px),
            Self::Cutouts { .. } => (res, res),
            _ => (h, w),
        }
    }

    /// Draws this augmentation's parameters for `views` [N, C, H, W] (fp32) and applies them.
    pub fn apply(&self, views: &Tensor, res: i64, draws: &mut dyn Draws) -> Tensor {
        let size = views.size();
        let (n, h, w) = (size[0], size[2], size[3]);
        let device = views.device();
        match *self {
            Self::Affine(affine) => affine.sample(n, w, h, draws, device).apply(views),
            Self::Flip { p } => {
                affine::apply_flip(views, &affine::sample_flip(n, p, draws, device))
            }
            Self::Jitter { px } => {
                let (dx, dy) = lucent::sample_jitter(n, px, draws, device);
                lucent::apply_jitter(views, &dx, &dy)
            }
            Self::Scale { min, max } => {
                lucent::apply_scale(views, &lucent::sample_scale(n, min, max, draws, device))
            }
            Self::Rotate { degrees } => {
                lucent::apply_rotate(views, &lucent::sample_rotate(n, degrees, draws, device))
            }
            Self::Pad { px } => lucent::apply_pad(views, px),
            Self::Cutouts { n: count, min_frac, pow } => {
                let cuts = cutouts::sample_cuts(n, count, min_frac, pow, (w, h), draws, device);
                cutouts::apply_cuts(views, &cuts, res)
            }
            Self::Noise { sd } => {
                views + draws.normal(&size, Kind::Float, device).to_kind(views.kind()) * sd
            }
        }
    }
}

fn number(v: f64) -> String {
    format!("{v}")
}

impl std::fmt::Display for Augment {
    /// The spec string ([`Augment::parse`] gives the augmentation back).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Affine(a) => write!(
                f,
                "affine:{},{},{},{}",
                number(a.degrees),
                number(a.translate),
                number(a.scale.0),
                number(a.scale.1)
            ),
            Self::Flip { p } => write!(f, "flip:{}", number(*p)),
            Self::Jitter { px } => write!(f, "jitter:{px}"),
            Self::Scale { min, max } => write!(f, "scale:{},{}", number(*min), number(*max)),
            Self::Rotate { degrees } => write!(f, "rotate:{}", number(*degrees)),
            Self::Pad { px } => write!(f, "pad:{px}"),
            Self::Cutouts { n, min_frac, pow } => {
                write!(f, "cutouts:{n},{},{}", number(*min_frac), number(*pow))
            }
            Self::Noise { sd } => write!(f, "noise:{}", number(*sd)),
        }
    }
}

impl std::str::FromStr for Augment {
    type Err = String;
    /// One augmentation; `none` (which clears a pipeline of flags) is none.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)?.ok_or_else(|| {
            "\"none\" is not an augmentation (it clears the pipeline of --augment flags); give an \
             empty list for none"
                .to_string()
        })
    }
}

/// A pipeline from parsed specs in order: `None` (`none`) clears what came before it.
pub fn pipeline(items: impl IntoIterator<Item = Option<Augment>>) -> Vec<Augment> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Some(a) => out.push(a),
            None => out.clear(),
        }
    }
    out
}

/// Parses a list of specs as `--augment` flags give them: `none` clears what came before it.
pub fn parse_pipeline<S: AsRef<str>>(specs: &[S]) -> Result<Vec<Augment>, String> {
    let parsed: Vec<Option<Augment>> =
        specs.iter().map(|s| Augment::parse(s.as_ref())).collect::<Result<_, _>>()?;
    Ok(pipeline(parsed))
}

/// The views a pipeline makes of each image.
pub fn views_per_image(pipeline: &[Augment]) -> i64 {
    pipeline.iter().map(Augment::views_per_input).product()
}

/// Largest side a view may reach inside a pipeline (padding grows it).
pub const MAX_VIEW_SIDE: i64 = 8192;

/// The (height, width) of the views before the final resample, or an error when padding makes
/// them larger than [`MAX_VIEW_SIDE`].
pub fn view_size(pipeline: &[Augment], canvas: (i64, i64), res: i64) -> Result<(i64, i64), String> {
    let mut size = canvas;
    for a in pipeline {
        size = a.output_size(size, res);
        if size.0 > MAX_VIEW_SIDE || size.1 > MAX_VIEW_SIDE {
            return Err(format!(
                "after {a} the views are {}x{} pixels, more than {MAX_VIEW_SIDE}",
                size.1, size.0
            ));
        }
    }
    Ok(size)
}

/// Runs `pipeline` on `images` [N, 3, H, W] (fp32), each image with its own draws, and resamples
/// the views to `res` × `res` where their size differs (torch's antialiased bilinear resize,
/// `interpolate(mode="bilinear", antialias=True)`): [N · views_per_image, 3, res, res], an image's
/// views consecutive.
pub fn apply_pipeline(
    pipeline: &[Augment],
    images: &Tensor,
    res: i64,
    draws: &mut dyn Draws,
) -> Tensor {
    let mut views = images.shallow_clone();
    for augment in pipeline {
        views = augment.apply(&views, res, draws);
    }
    resample(&views, res)
}

/// `views` at `res` × `res`: unchanged when they already are, else resized (antialiased bilinear).
pub fn resample(views: &Tensor, res: i64) -> Tensor {
    let size = views.size();
    if size[2] == res && size[3] == res {
        views.shallow_clone()
    } else {
        views.internal_upsample_bilinear2d_aa([res, res], false, None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip() {
        for spec in [
            "affine:10,0.1,0.9,1.1",
            "flip:0.3",
            "jitter:8",
            "scale:0.9,1.1",
            "rotate:5.5",
            "pad:12",
            "cutouts:32,0.5,1",
            "noise:0.05",
        ] {
            let a = Augment::parse(spec).unwrap().unwrap();
            assert_eq!(a.to_string(), spec);
        }
        assert_eq!(Augment::parse("none"), Ok(None));
        assert_eq!(
            parse_pipeline(&["flip:0.5", "none", "jitter:4"]).unwrap(),
            vec![Augment::Jitter { px: 4 }]
        );
        assert_eq!(
            parse_pipeline(&["affine:10,0.1,0.9,1.1", "flip:0.3"]).unwrap(),
            SEED_CONSTRAINED
        );
    }

    #[test]
    fn bad_specs_name_the_value() {
        for (spec, needle) in [
            ("cutouts:-1,0.5,1", "N"),
            ("cutouts:2.5,0.5,1", "N"),
            ("cutouts:8,0,1", "MINFRAC"),
            ("cutouts:8,1.5,1", "MINFRAC"),
            ("cutouts:8,0.5,0", "POW"),
            ("cutouts:8,0.5", "3 value"),
            ("flip:1.5", "P"),
            ("flip:nan", "finite"),
            ("jitter:1", "PX"),
            ("pad:-2", "PX"),
            ("scale:1.1,0.9", "MAX"),
            ("rotate:inf", "finite"),
            ("affine:10,0.1,0,1", "SMIN"),
            ("noise:-0.1", "SD"),
            ("blur:3", "unknown augmentation"),
            ("flip", "1 value"),
            ("flip:x", "not a number"),
        ] {
            let err = Augment::parse(spec).unwrap_err();
            assert!(err.contains(needle) && err.contains(spec), "{spec}: {err}");
        }
    }
}
