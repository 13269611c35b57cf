//! Every flag's value parser, in one place: `clip generate`, the experiment binaries, `clip bench`
//! and the sweep's TOML reader all take a setting's text through these, so a value is refused
//! with the same message whichever front end it came from.

use super::bounds;
use clip_core::engine::augment::Augment;
use clip_core::engine::optimize::{Keep, Preset};
use clip_core::engine::param::{Canvas, Param};

/// `--steps`: a whole number ≥ 1 (a billion is fine: memory does not grow with it).
pub fn parse_steps(text: &str) -> Result<u64, String> {
    match text.trim().parse::<i128>() {
        Ok(n) if n >= 1 => match u64::try_from(n) {
            Ok(n) if usize::try_from(n).is_ok() => bounds::steps(n),
            _ => Err(format!("{n} steps is too many")),
        },
        Ok(n) => Err(format!("the number of steps must be at least 1, not {n}")),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

fn parse_number(text: &str) -> Result<f64, String> {
    text.trim().parse().map_err(|e| format!("not a number: {e}"))
}

/// `--learning-rate`: in (0, 100].
pub fn parse_learning_rate(text: &str) -> Result<f64, String> {
    parse_number(text).and_then(bounds::learning_rate)
}

/// `--negative-weight`: in [0, 1e6].
pub fn parse_negative_weight(text: &str) -> Result<f64, String> {
    parse_number(text).and_then(bounds::penalty_weight)
}

/// `--tv-weight`: in [0, 1e6].
pub fn parse_tv_weight(text: &str) -> Result<f64, String> {
    parse_number(text).and_then(bounds::penalty_weight)
}

/// `--model-weight`: in (0, 1e6].
pub fn parse_model_weight(s: &str) -> Result<f64, String> {
    parse_number(s).and_then(bounds::model_weight)
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
    bounds::epsilon(x)
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

/// `--decay`: in [-8, 8].
pub fn parse_decay(s: &str) -> Result<f64, String> {
    parse_number(s).and_then(bounds::decay)
}

/// `--name`: letters, digits, `-`, `+`, `.` and `_`, not starting with `.` (a hidden file) or `-`
/// (a file name that reads as a flag), at most 64 bytes.
pub fn parse_name(s: &str) -> Result<String, String> {
    bounds::name(s).map(str::to_string)
}

/// One `--augment` value (`clip generate`, `clip bench`): an augmentation, or `none`.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentSpec(pub Option<Augment>);

/// `--augment`'s parser.
pub fn parse_augment(s: &str) -> Result<AugmentSpec, String> {
    Augment::parse(s).map(AugmentSpec)
}
