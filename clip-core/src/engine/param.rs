//! Parameterisations: the learnable tensor the optimiser updates, and how it becomes the image
//! [N, 3, H, W] in [0, 1] that the augmentations and CLIP see.
//!
//! - `pixels` — the seed's: the image itself, `0.5 + N(0, 0.1)` at first, clamped to [0, 1] after
//!   every step.
//! - `fft` — Lucent's `fft_image` (`lucent/optvis/param/spatial.py`, torch-lucent 0.1.8): a real
//!   and imaginary spectrum per channel (`N(0, 0.01)` at first; `rfft2d_freqs` keeps one extra
//!   column for odd widths), scaled by `1 / max(freq, 1 / max(h, w))^decay`, through the
//!   orthonormal inverse real FFT to (h, w), divided by 4 — then `to_valid_rgb(decorrelate=False)`:
//!   a sigmoid.
//! - `decorrelated` — Lucent's `pixel_image` (`N(0, 0.01)`) through `to_valid_rgb(decorrelate=True)`
//!   (`lucent/optvis/param/color.py`): each pixel's colour times the square root of ImageNet's
//!   colour correlation, normalised by its largest column norm, then a sigmoid.
//! - `fft-decorrelated` — both: Lucent's default for feature visualisation.
//!
//! The rendering is computed in fp32 whatever the model's precision (the model casts its input).

use super::draws::Draws;
use tch::{Device, Kind, Tensor};

/// The seed's initial image: grey plus Gaussian noise.
pub const INIT_MEAN: f64 = 0.5;
pub const INIT_STD: f64 = 0.1;
/// Lucent's initial standard deviation of the spectrum and of decorrelated pixels (`sd=0.01`).
pub const LUCENT_SD: f64 = 0.01;
/// Lucent's `decay_power` default.
pub const DEFAULT_DECAY: f64 = 1.0;
/// Lucid's "magic" divisor of the FFT image ("increasing this seems to reduce saturation").
const FFT_MAGIC: f64 = 4.0;
/// Lucent's `color_correlation_svd_sqrt`.
pub const COLOR_CORRELATION_SVD_SQRT: [[f64; 3]; 3] =
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];
/// The canvas sides `--size` accepts.
pub const MIN_CANVAS: i64 = 16;
pub const MAX_CANVAS: i64 = 4096;

/// How the image is parameterised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Pixels,
    Fft,
    Decorrelated,
    FftDecorrelated,
}

impl Param {
    pub const ALL: [Param; 4] =
        [Self::Pixels, Self::Fft, Self::Decorrelated, Self::FftDecorrelated];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pixels => "pixels",
            Self::Fft => "fft",
            Self::Decorrelated => "decorrelated",
            Self::FftDecorrelated => "fft-decorrelated",
        }
    }

    fn fft(self) -> bool {
        matches!(self, Self::Fft | Self::FftDecorrelated)
    }

    fn decorrelate(self) -> bool {
        matches!(self, Self::Decorrelated | Self::FftDecorrelated)
    }
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Param {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|p| p.as_str()).collect();
            format!("unknown parameterisation {s:?}; valid: {}", names.join(", "))
        })
    }
}

/// The image's size, which may differ from the model's input (views are resampled to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canvas {
    pub width: i64,
    pub height: i64,
}

impl Canvas {
    /// A square canvas.
    pub const fn square(side: i64) -> Self {
        Self { width: side, height: side }
    }
}

impl std::fmt::Display for Canvas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl std::str::FromStr for Canvas {
    type Err = String;
    /// `N` (square) or `WxH`, each side from 16 to 4096 pixels.
    fn from_str(s: &str) -> Result<Self, String> {
        let side = |t: &str| -> Result<i64, String> {
            let n: i64 = t.trim().parse().map_err(|_| format!("{s:?} is not N or WxH"))?;
            if (MIN_CANVAS..=MAX_CANVAS).contains(&n) {
                Ok(n)
            } else {
                Err(format!("a side of {n} pixels is outside {MIN_CANVAS}..={MAX_CANVAS}"))
            }
        };
        match s.split_once(['x', 'X']) {
            Some((w, h)) => Ok(Self { width: side(w)?, height: side(h)? }),
            None => Ok(Self::square(side(s)?)),
        }
    }
}

/// Lucent's `color_correlation_normalized`: the matrix divided by its largest column norm.
pub fn color_correlation_normalized() -> [[f64; 3]; 3] {
    let m = COLOR_CORRELATION_SVD_SQRT;
    let norm = |c: usize| (0..3).map(|r| m[r][c] * m[r][c]).sum::<f64>().sqrt();
    let max = (0..3).map(norm).fold(0.0, f64::max);
    m.map(|row| row.map(|v| v / max))
}

/// The spectrum's columns for width `w`: Lucid's `rfft2d_freqs` keeps `w // 2 + 1`, and one more
/// for odd widths (the inverse FFT to width `w` reads only the first `w // 2 + 1`).
pub fn spectrum_columns(w: i64) -> i64 {
    if w % 2 == 1 {
        w / 2 + 2
    } else {
        w / 2 + 1
    }
}

/// numpy's `fftfreq(n)[i]`.
fn fftfreq(n: i64, i: i64) -> f64 {
    let k = if i < (n + 1) / 2 { i } else { i - n };
    k as f64 / n as f64
}

/// `fft_image`'s scale, [1, 1, h, columns, 1]: `1 / max(freq, 1 / max(w, h))^decay` (f64, then
/// fp32 as Lucent's `torch.tensor(scale).float()`).
pub fn spectrum_scale(h: i64, w: i64, decay: f64, device: Device) -> Tensor {
    let cols = spectrum_columns(w);
    let floor = 1.0 / w.max(h) as f64;
    let mut values = Vec::with_capacity((h * cols) as usize);
    for y in 0..h {
        for x in 0..cols {
            let (fy, fx) = (fftfreq(h, y), fftfreq(w, x));
            values.push(1.0 / (fx * fx + fy * fy).sqrt().max(floor).powf(decay));
        }
    }
    Tensor::from_slice(&values).to_kind(Kind::Float).view([1, 1, h, cols, 1]).to_device(device)
}

/// A batch of parameterised images.
#[derive(Debug)]
pub struct ParamImage {
    pub param: Param,
    pub canvas: Canvas,
    pub decay: f64,
    /// The learnable tensor (fp32, requires grad): the pixels [N, 3, H, W], or the spectrum
    /// [N, 3, H, columns, 2].
    pub params: Tensor,
    /// FFT: [1, 1, H, columns, 1].
    scale: Option<Tensor>,
    /// Decorrelated: the normalised colour matrix, transposed, [3, 3].
    color_t: Option<Tensor>,
    /// Pixels from a start image within an L∞ budget: the lower and upper bounds of every pixel
    /// (the ball around the start intersected with [0, 1]).
    bounds: Option<(Tensor, Tensor)>,
}

impl ParamImage {
    /// Draws `batch` initial parameter sets, each its own draw (prompt-major rows).
    pub fn init(
        param: Param,
        batch: i64,
        canvas: Canvas,
        decay: f64,
        draws: &mut dyn Draws,
        device: Device,
    ) -> Self {
        let (h, w) = (canvas.height, canvas.width);
        let params = match param {
            Param::Pixels => {
                draws.normal(&[batch, 3, h, w], Kind::Float, device) * INIT_STD + INIT_MEAN
            }
            Param::Decorrelated => draws.normal(&[batch, 3, h, w], Kind::Float, device) * LUCENT_SD,
            Param::Fft | Param::FftDecorrelated => {
                draws.normal(&[batch, 3, h, spectrum_columns(w), 2], Kind::Float, device)
                    * LUCENT_SD
            }
        };
        Self::with_params(param, params, canvas, decay)
    }

    /// Fixed parameters (tests, resumed runs): `params` as [`ParamImage::params`] describes.
    pub fn with_params(param: Param, params: Tensor, canvas: Canvas, decay: f64) -> Self {
        let device = params.device();
        let scale = param.fft().then(|| spectrum_scale(canvas.height, canvas.width, decay, device));
        let color_t = param.decorrelate().then(|| {
            let m = color_correlation_normalized();
            let t: Vec<f64> = (0..3).flat_map(|k| (0..3).map(move |c| m[c][k])).collect();
            Tensor::from_slice(&t).to_kind(Kind::Float).view([3, 3]).to_device(device)
        });
        let params = params.to_kind(Kind::Float).detach().set_requires_grad(true);
        Self { param, canvas, decay, params, scale, color_t, bounds: None }
    }

    /// Pixels starting from `start` [N, 3, H, W] in [0, 1] (copied); with `epsilon`, every
    /// projection keeps each pixel within `epsilon` of its start (and in [0, 1]): projected
    /// gradient descent in an L∞ ball.
    pub fn from_start(start: &Tensor, epsilon: Option<f64>) -> Self {
        let size = start.size();
        let canvas = Canvas { width: size[3], height: size[2] };
        let start = start.to_kind(Kind::Float).clamp(0.0, 1.0);
        let mut image = Self::with_params(Param::Pixels, start.copy(), canvas, DEFAULT_DECAY);
        image.bounds = epsilon.map(|e| ((&start - e).clamp_min(0.0), (&start + e).clamp_max(1.0)));
        image
    }

    /// The images [N, 3, H, W] in [0, 1] (pixels: in [0, 1] once projected), differentiable in
    /// [`params`](Self::params).
    pub fn render(&self) -> Tensor {
        let (h, w) = (self.canvas.height, self.canvas.width);
        let mut image = match &self.scale {
            None => self.params.shallow_clone(),
            Some(scale) => {
                let spectrum = (&self.params * scale).view_as_complex();
                spectrum.fft_irfftn([h, w].as_slice(), [2i64, 3].as_slice(), "ortho") / FFT_MAGIC
            }
        };
        if let Some(color_t) = &self.color_t {
            image = image.permute([0, 2, 3, 1]).matmul(color_t).permute([0, 3, 1, 2]);
        }
        match self.param {
            Param::Pixels => image,
            _ => image.sigmoid(),
        }
    }

    /// After each update: the seed clamps its pixels to [0, 1] (from a start image with a budget:
    /// to the budget's box too); the sigmoid keeps the others there.
    pub fn project(&mut self) {
        if self.param == Param::Pixels {
            tch::no_grad(|| match &self.bounds {
                // Onto the box [max(start − ε, 0), min(start + ε, 1)]: the ball ∩ [0, 1].
                Some((lo, hi)) => {
                    let _ = self.params.clamp_tensor_(Some(lo), Some(hi));
                }
                None => {
                    let _ = self.params.clamp_(0.0, 1.0);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canvas_sizes() {
        assert_eq!("224".parse::<Canvas>(), Ok(Canvas::square(224)));
        assert_eq!("320x200".parse::<Canvas>(), Ok(Canvas { width: 320, height: 200 }));
        for bad in ["15", "4097", "0", "-3", "x", "20x", "axb", "1e3", ""] {
            assert!(bad.parse::<Canvas>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fftfreq_is_numpys() {
        // np.fft.fftfreq(5) = [0, .2, .4, -.4, -.2]; fftfreq(4) = [0, .25, -.5, -.25]
        let f5: Vec<f64> = (0..5).map(|i| fftfreq(5, i)).collect();
        assert_eq!(f5, [0.0, 0.2, 0.4, -0.4, -0.2]);
        let f4: Vec<f64> = (0..4).map(|i| fftfreq(4, i)).collect();
        assert_eq!(f4, [0.0, 0.25, -0.5, -0.25]);
        assert_eq!((spectrum_columns(37), spectrum_columns(32)), (20, 17));
    }
}
