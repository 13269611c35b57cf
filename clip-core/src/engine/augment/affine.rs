//! The seed's augmentation: `RandomAffine(degrees, translate, scale)` with nearest sampling and
//! zero fill, and `RandomHorizontalFlip(p)` — one independent draw per image of a batch.
//!
//! Mirrors torchvision 0.26 for tensors: `RandomAffine.get_params` and `RandomHorizontalFlip.forward`
//! (`transforms/transforms.py`), `affine` / `_get_inverse_affine_matrix` (`transforms/functional.py`)
//! and `affine` / `_gen_affine_grid` / `_apply_grid_transform` (`transforms/_functional_tensor.py`):
//! rotation about the image centre (positive angles turn the picture clockwise on screen, as
//! `F.affine` documents), translations in whole pixels (`int(round(uniform(-t·W, t·W)))`),
//! nearest-neighbour sampling with `align_corners=False` and zero fill. torchvision's fill step
//! (`fill=0` appends a ones mask and fills where it samples < 0.5) is a no-op for nearest sampling
//! with zero padding — the image sample there is already 0 — so it is left out.
//!
//! Unlike torchvision, the parameters are drawn on the image's device (no host round trip, so a
//! step can be captured in a CUDA graph): `Draws::uniform` in the order angle, translate x,
//! translate y, scale.

use crate::engine::draws::Draws;
use tch::{Device, Kind, Tensor};

/// `RandomAffine(degrees, translate=(t, t), scale=(min, max))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomAffine {
    /// Rotation drawn uniformly from [-degrees, degrees].
    pub degrees: f64,
    /// Fraction of the width (and of the height) bounding the translation.
    pub translate: f64,
    /// Scale drawn uniformly from [scale.0, scale.1].
    pub scale: (f64, f64),
}

impl RandomAffine {
    /// The seed's `RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))`.
    pub const SEED: Self = Self { degrees: 10.0, translate: 0.1, scale: (0.9, 1.1) };

    /// Draws one set of parameters per image, on `device`, as `RandomAffine.get_params` does for
    /// an image `width` × `height`: angle in degrees, integer translations, scale.
    pub fn sample(
        &self,
        n: i64,
        width: i64,
        height: i64,
        draws: &mut dyn Draws,
        device: Device,
    ) -> AffineParams {
        let mut uniform =
            |low: f64, high: f64| draws.uniform(&[n], Kind::Double, device) * (high - low) + low;
        let max_dx = self.translate * width as f64;
        let max_dy = self.translate * height as f64;
        AffineParams {
            angle: uniform(-self.degrees, self.degrees),
            // Python's round() rounds half to even, as torch.round does.
            translate_x: uniform(-max_dx, max_dx).round(),
            translate_y: uniform(-max_dy, max_dy).round(),
            scale: uniform(self.scale.0, self.scale.1),
        }
    }
}

/// Per-image parameters of one draw, each a [N] f64 tensor on the image's device.
#[derive(Debug)]
pub struct AffineParams {
    /// Degrees, clockwise on screen (`F.affine`'s convention).
    pub angle: Tensor,
    /// Whole pixels, positive to the right (f64 holding integers).
    pub translate_x: Tensor,
    /// Whole pixels, positive downwards (f64 holding integers).
    pub translate_y: Tensor,
    pub scale: Tensor,
}

impl AffineParams {
    /// Fixed parameters for every image of a batch of `n` (tests, fixtures).
    pub fn fixed(n: i64, angle: f64, translate: (i64, i64), scale: f64, device: Device) -> Self {
        let full = |v: f64| Tensor::full([n], v, (Kind::Double, device));
        Self {
            angle: full(angle),
            translate_x: full(translate.0 as f64),
            translate_y: full(translate.1 as f64),
            scale: full(scale),
        }
    }

    /// `_get_inverse_affine_matrix(center=[0, 0], angle, translate, scale, shear=[0, 0])` per image,
    /// computed in f64 like Python's floats and returned as [N, 2, 3] in `kind` (torchvision builds
    /// `theta` in the image's dtype).
    pub fn inverse_matrix(&self, kind: Kind) -> Tensor {
        let rot = self.angle.deg2rad();
        let (cos, sin) = (rot.cos(), rot.sin());
        // With no shear: a = cos, b = -sin, c = sin, d = cos; matrix = [d, -b, 0, -c, a, 0] / scale.
        let m0 = &cos / &self.scale;
        let m1 = &sin / &self.scale;
        let m3 = -&sin / &self.scale;
        let m4 = &cos / &self.scale;
        let (tx, ty) = (-&self.translate_x, -&self.translate_y);
        let m2 = &m0 * &tx + &m1 * &ty;
        let m5 = &m3 * &tx + &m4 * &ty;
        Tensor::stack(&[m0, m1, m2, m3, m4, m5], 1).view([-1, 2, 3]).to_kind(kind)
    }

    /// The sampling grid [N, H, W, 2] of `_gen_affine_grid(theta, w, h, ow=w, oh=h)`.
    pub fn grid(&self, width: i64, height: i64, kind: Kind) -> Tensor {
        let device = self.angle.device();
        let theta = self.inverse_matrix(kind);
        let n = theta.size()[0];
        let (w, h) = (width as f64, height as f64);
        let xs = Tensor::linspace(-w * 0.5 + 0.5, w * 0.5 + 0.5 - 1.0, width, (kind, device));
        let ys = Tensor::linspace(-h * 0.5 + 0.5, h * 0.5 + 0.5 - 1.0, height, (kind, device));
        let x = xs.view([1, 1, width]).expand([n, height, width], false);
        let y = ys.view([1, height, 1]).expand([n, height, width], false);
        let one = Tensor::ones([n, height, width], (kind, device));
        let base = Tensor::stack(&[x, y, one], 3).view([n, height * width, 3]);
        // theta.transpose(1, 2) / tensor([0.5 * w, 0.5 * h]), a column at a time so that the step
        // copies nothing from the host (the halves are exact in any float kind).
        let theta_t = theta.transpose(1, 2);
        let rescaled =
            Tensor::stack(&[theta_t.select(2, 0) / (0.5 * w), theta_t.select(2, 1) / (0.5 * h)], 2);
        base.bmm(&rescaled).view([n, height, width, 2])
    }

    /// Applies the transform to `images` [N, C, H, W]; differentiable in the images.
    pub fn apply(&self, images: &Tensor) -> Tensor {
        let size = images.size();
        let (height, width) = (size[2], size[3]);
        let grid = self.grid(width, height, images.kind());
        // grid_sampler_2d modes: interpolation 1 = nearest, padding 0 = zeros.
        images.grid_sampler_2d(&grid, 1, 0, false)
    }
}

/// `RandomHorizontalFlip(p)`: `torch.rand(1) < p` per image.
pub fn sample_flip(n: i64, p: f64, draws: &mut dyn Draws, device: Device) -> Tensor {
    draws.uniform(&[n], Kind::Double, device).lt(p)
}

/// `F.hflip` of the images [N, C, H, W] whose entry of `flip` ([N] bool) is set.
pub fn apply_flip(images: &Tensor, flip: &Tensor) -> Tensor {
    let n = images.size()[0];
    images.flip([3]).where_self(&flip.view([n, 1, 1, 1]), images)
}
