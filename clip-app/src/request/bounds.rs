//! The range of every numeric setting, in one place: the flags' parsers (`parse.rs`) and the
//! request's validation (`validate.rs`) both check a value here, so a value is refused with the
//! same message whichever front end gave it (a flag, a SPEC row, a Python keyword, a model
//! crate's constant).
//!
//! The upper bounds keep a run finite: beyond them the loss or the image overflows fp32/fp16 and
//! the run freezes at its first step (a TV weight of 1e308 makes the loss infinite; so does a sum
//! of model weights past f64's range). They are far above anything useful.

/// Largest TV, negative or model weight: the similarity terms are in [−1, 1], so a weight of 1e6
/// already drowns them, and 1e6 × a 4096² image's total variation stays finite in fp32.
pub const MAX_WEIGHT: f64 = 1e6;
/// Largest learning rate: Adam's step is about the learning rate in each value, and the image's
/// values live in [0, 1] (pixels) or about ±10 (the FFT's); past 100 a step is pure noise.
pub const MAX_LEARNING_RATE: f64 = 100.0;
/// Largest |decay|: the FFT spectrum's scale `1 / f^decay` over a 4096² canvas stays within
/// fp32 (4096^8 · 4096 ≈ 3e32).
pub const MAX_DECAY: f64 = 8.0;

/// A number as messages show it (1e308, not 309 digits).
pub use clip_core::clip::excerpt::number as shown;

/// `v` is a finite number (not NaN or ±inf).
fn finite(v: f64) -> Result<f64, String> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("must be a finite number, not {}", shown(v)))
    }
}

/// At least 1.
pub fn steps(n: u64) -> Result<u64, String> {
    if n >= 1 {
        Ok(n)
    } else {
        Err(format!("must be at least 1, not {n}"))
    }
}

/// In (0, [`MAX_LEARNING_RATE`]].
pub fn learning_rate(v: f64) -> Result<f64, String> {
    let v = finite(v)?;
    if v > 0.0 && v <= MAX_LEARNING_RATE {
        Ok(v)
    } else {
        Err(format!("must be greater than 0 and at most {MAX_LEARNING_RATE}, not {}", shown(v)))
    }
}

/// In [0, [`MAX_WEIGHT`]]: the TV weight, the negatives' weight.
pub fn penalty_weight(v: f64) -> Result<f64, String> {
    let v = finite(v)?;
    if (0.0..=MAX_WEIGHT).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be 0 or more and at most {MAX_WEIGHT:e}, not {}", shown(v)))
    }
}

/// In (0, [`MAX_WEIGHT`]]: a model's weight in an ensemble.
pub fn model_weight(v: f64) -> Result<f64, String> {
    let v = finite(v)?;
    if v > 0.0 && v <= MAX_WEIGHT {
        Ok(v)
    } else {
        Err(format!(
            "a model's weight must be greater than 0 and at most {MAX_WEIGHT:e}, not {}",
            shown(v)
        ))
    }
}

/// In [−[`MAX_DECAY`], [`MAX_DECAY`]].
pub fn decay(v: f64) -> Result<f64, String> {
    let v = finite(v)?;
    if v.abs() <= MAX_DECAY {
        Ok(v)
    } else {
        Err(format!("must be from -{MAX_DECAY} to {MAX_DECAY}, not {}", shown(v)))
    }
}

/// In (0, 1]: the L∞ budget, in [0, 1] pixel units.
pub fn epsilon(v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!(
            "the L∞ budget is in [0, 1] pixel units and must be in (0, 1] (e.g. 8/255), not {}",
            shown(v)
        ))
    }
}

/// A result name: letters, digits, `-`, `+`, `.` and `_`, not starting with `.` (a hidden file)
/// or `-` (a file name that reads as a flag), 1 to 64 bytes.
pub fn name(s: &str) -> Result<&str, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['.', '-'])
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-+._".contains(c));
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "{} is not a file-name token: use 1 to 64 letters, digits, '-', '+', '.' or '_', \
             not starting with '.' or '-'",
            clip_core::clip::excerpt::excerpt(s)
        ))
    }
}
