//! Every flag's value parser, in one place: `clip generate`, the experiment binaries, `clip bench`
//! and the sweep's TOML reader all take a setting's text through these, so a value is refused
//! with the same message whichever front end it came from.

use clip_core::engine::augment::Augment;
use clip_core::engine::optimize::{Keep, Preset};
use clip_core::engine::param::{Canvas, Param};

/// `--steps`: a whole number ≥ 1 (a billion is fine: memory does not grow with it).
pub fn parse_steps(text: &str) -> Result<u64, String> {
    match text.trim().parse::<i128>() {
        Ok(n) if n >= 1 => match u64::try_from(n) {
            Ok(n) if usize::try_from(n).is_ok() => Ok(n),
            _ => Err(format!("{n} steps is too many")),
        },
        Ok(n) => Err(format!("the number of steps must be at least 1, not {n}")),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

fn parse_number(text: &str) -> Result<f64, String> {
    let x: f64 = text.trim().parse().map_err(|e| format!("not a number: {e}"))?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("must be a finite number, not {x}"))
    }
}

/// `--learning-rate`: finite and > 0.
pub fn parse_learning_rate(text: &str) -> Result<f64, String> {
    let x = parse_number(text)?;
    if x > 0.0 {
        Ok(x)
    } else {
        Err(format!("the learning rate must be greater than 0, not {x}"))
    }
}

/// `--negative-weight`: finite and ≥ 0.
pub fn parse_negative_weight(text: &str) -> Result<f64, String> {
    let x = parse_number(text)?;
    if x >= 0.0 {
        Ok(x)
    } else {
        Err(format!("the negative weight must be 0 or more, not {x}"))
    }
}

/// `--tv-weight`: finite and ≥ 0.
pub fn parse_tv_weight(text: &str) -> Result<f64, String> {
    let x = parse_number(text)?;
    if x >= 0.0 {
        Ok(x)
    } else {
        Err(format!("the TV weight must be 0 or more, not {x}"))
    }
}

/// `--model-weight`: finite and > 0.
pub fn parse_model_weight(s: &str) -> Result<f64, String> {
    let x: f64 = s.trim().parse().map_err(|e| format!("not a number: {e}"))?;
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(format!("a model's weight must be greater than 0 and finite, not {x}"))
    }
}

/// `--epsilon`: a number or a fraction `A/B`, in (0, 1].
pub fn parse_epsilon(s: &str) -> Result<f64, String> {
    let number = |t: &str| -> Result<f64, String> {
        t.trim().parse::<f64>().map_err(|e| format!("{:?} is not a number: {e}", t.trim()))
    };
    let x = match s.split_once('/') {
        Some((a, b)) => number(a)? / number(b)?,
        None => number(s)?,
    };
    if x.is_finite() && x > 0.0 && x <= 1.0 {
        Ok(x)
    } else {
        Err(format!(
            "the L∞ budget is in [0, 1] pixel units and must be in (0, 1] (e.g. 8/255), not {x}"
        ))
    }
}

pub fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse()
}

pub fn parse_param(s: &str) -> Result<Param, String> {
    s.parse()
}

pub fn parse_keep(s: &str) -> Result<Keep, String> {
    s.parse()
}

pub fn parse_canvas(s: &str) -> Result<Canvas, String> {
    s.parse()
}

pub fn parse_decay(s: &str) -> Result<f64, String> {
    let x: f64 = s.trim().parse().map_err(|e| format!("not a number: {e}"))?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("the decay must be a finite number, not {x}"))
    }
}

/// `--name`: letters, digits, `-`, `+`, `.` and `_`, not starting with `.` (a hidden file) or `-`
/// (a file name that reads as a flag), at most 64 bytes.
pub fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['.', '-'])
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-+._".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{:?} is not a file-name token: use 1 to 64 letters, digits, '-', '+', '.' or '_', \
             not starting with '.' or '-'",
            clip_core::clip::excerpt::excerpt(s)
        ))
    }
}

/// One `--augment` value (`clip generate`, `clip bench`): an augmentation, or `none`.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentSpec(pub Option<Augment>);

/// `--augment`'s parser.
pub fn parse_augment(s: &str) -> Result<AugmentSpec, String> {
    Augment::parse(s).map(AugmentSpec)
}
