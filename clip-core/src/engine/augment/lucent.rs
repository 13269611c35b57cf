//! Lucent's transformation robustness (`lucent/optvis/transform.py`, torch-lucent 0.1.8): `jitter`,
//! `random_scale`, `random_rotate` and `pad`, each image of a batch with its own draw, as sampling
//! grids of static shape (so the step stays one CUDA graph).
//!
//! - `jitter(d)`: shifts of `dx, dy ∈ {0, …, d−1}` (`np.random.choice(d)`) through kornia 0.4.1's
//!   `translate`, i.e. its `warp_affine`: bilinear, zero fill, and pixel coordinates normalised
//!   with `2 / (size − 1)` while `affine_grid`/`grid_sample` run with `align_corners=False` — so
//!   the shift is `dx · W / (W − 1)` pixels, not `dx`. That is what Lucent computes; we match it.
//! - `random_scale`: Lucent's `Upsample(size=ceil(s · (h, w)), bilinear, align_corners=True)` then
//!   `F.pad(x, [pad_y, pad_x] * 2)` with `pad_* = max(0, ceil((side − scaled side) / 2))` (in
//!   `F.pad`'s order: left `pad_y`, right `pad_x`, top `pad_y`, bottom `pad_x`), whose size varies
//!   with `s`; followed here by torchvision's `center_crop` back to (h, w) (a crop, or zero
//!   padding), which keeps the shape static. `s` is drawn uniformly from [min, max] per image
//!   (Lucent chooses from a list).
//! - `random_rotate`: kornia's `get_rotation_matrix2d(centre ((w−1)/2, (h−1)/2), angle, 1)` and
//!   `warp_affine` (as for jitter), the angle drawn uniformly from [−deg, deg] per image (Lucent
//!   chooses one from a list for the whole batch).
//! - `pad(w, constant 0.5)`: `F.pad(x, [w] * 4, value=0.5)`.

use crate::engine::draws::Draws;
use tch::{Device, Kind, Tensor};

/// Lucent's `pad` value in its standard transforms.
pub const PAD_VALUE: f64 = 0.5;

/// kornia 0.4.1 `warp_affine`'s sampling grid [N, H, W, 2] (output size = input size) for the
/// inverse pixel matrices `minv` [N, 2, 3] (f64): output pixel `j` is read at
/// `minv · ((j + ½)(W − 1)/W, …)`, normalised by `2 / (W − 1)`, by `grid_sample(align_corners=False)`.
pub fn kornia_grid(minv: &Tensor, height: i64, width: i64) -> Tensor {
    let device = minv.device();
    let (h, w) = (height as f64, width as f64);
    let px = ((Tensor::arange(width, (Kind::Double, device)) + 0.5) * ((w - 1.0) / w))
        .view([1, 1, width]);
    let py = ((Tensor::arange(height, (Kind::Double, device)) + 0.5) * ((h - 1.0) / h))
        .view([1, height, 1]);
    let m = |r: i64, c: i64| minv.select(1, r).select(1, c).view([-1, 1, 1]);
    let qx = m(0, 0) * &px + m(0, 1) * &py + m(0, 2);
    let qy = m(1, 0) * &px + m(1, 1) * &py + m(1, 2);
    let gx = qx * (2.0 / (w - 1.0)) - 1.0;
    let gy = qy * (2.0 / (h - 1.0)) - 1.0;
    Tensor::stack(&[gx, gy], 3).to_kind(Kind::Float)
}

/// Samples `images` [N, C, H, W] bilinearly at `grid`, zeros outside (`align_corners` as given).
fn sample(images: &Tensor, grid: &Tensor, align_corners: bool) -> Tensor {
    // grid_sampler_2d modes: interpolation 0 = bilinear, padding 0 = zeros.
    images.grid_sampler_2d(&grid.to_kind(images.kind()), 0, 0, align_corners)
}

/// The inverse of each affine pixel matrix [N, 2, 3] (f64).
fn invert_affine(m: &Tensor) -> Tensor {
    let e = |r: i64, c: i64| m.select(1, r).select(1, c);
    let (a, b, tx, d, ee, ty) = (e(0, 0), e(0, 1), e(0, 2), e(1, 0), e(1, 1), e(1, 2));
    let det = &a * &ee - &b * &d;
    let (ia, ib, id, ie) = (&ee / &det, -&b / &det, -&d / &det, &a / &det);
    let itx = -(&ia * &tx + &ib * &ty);
    let ity = -(&id * &tx + &ie * &ty);
    Tensor::stack(&[ia, ib, itx, id, ie, ity], 1).view([-1, 2, 3])
}

/// Jitter's draws: `dx`, then `dy`, each uniform on {0, …, d−1}, [N] f64.
pub fn sample_jitter(n: i64, d: i64, draws: &mut dyn Draws, device: Device) -> (Tensor, Tensor) {
    let mut pick = || (draws.uniform(&[n], Kind::Double, device) * d as f64).floor();
    let dx = pick();
    let dy = pick();
    (dx, dy)
}

/// kornia's `translate(images, [dx, dy])` per image.
pub fn apply_jitter(images: &Tensor, dx: &Tensor, dy: &Tensor) -> Tensor {
    let size = images.size();
    let (zero, one) = (dx.zeros_like(), dx.ones_like());
    let minv = Tensor::stack(&[&one, &zero, &(-dx), &zero, &one, &(-dy)], 1).view([-1, 2, 3]);
    sample(images, &kornia_grid(&minv, size[2], size[3]), false)
}

/// Rotation's draw: degrees uniform on [−deg, deg], [N] f64.
pub fn sample_rotate(n: i64, degrees: f64, draws: &mut dyn Draws, device: Device) -> Tensor {
    draws.uniform(&[n], Kind::Double, device) * (2.0 * degrees) - degrees
}

/// kornia's `get_rotation_matrix2d(centre, angle, scale=1)` [N, 2, 3] (f64) for an image
/// `width` × `height`: counter-clockwise on screen for positive angles.
pub fn rotation_matrix(angle: &Tensor, width: i64, height: i64) -> Tensor {
    let (cx, cy) = ((width as f64 - 1.0) / 2.0, (height as f64 - 1.0) / 2.0);
    let rad = angle.to_kind(Kind::Double).deg2rad();
    let (alpha, beta) = (rad.cos(), rad.sin());
    let t0 = (-&alpha + 1.0) * cx - &beta * cy;
    let t1 = &beta * cx + (-&alpha + 1.0) * cy;
    Tensor::stack(&[alpha.shallow_clone(), beta.shallow_clone(), t0, -beta, alpha, t1], 1)
        .view([-1, 2, 3])
}

/// Lucent's `random_rotate` with the given angles (degrees), one per image.
pub fn apply_rotate(images: &Tensor, angle: &Tensor) -> Tensor {
    let size = images.size();
    let (h, w) = (size[2], size[3]);
    let minv = invert_affine(&rotation_matrix(angle, w, h));
    sample(images, &kornia_grid(&minv, h, w), false)
}

/// Scale's draw: uniform on [min, max], [N] f64.
pub fn sample_scale(n: i64, min: f64, max: f64, draws: &mut dyn Draws, device: Device) -> Tensor {
    draws.uniform(&[n], Kind::Double, device) * (max - min) + min
}

/// Where output pixel `0..side` of one axis reads the input (an `align_corners=True` pixel
/// coordinate), or a coordinate far outside for padding: Lucent's upsampling of `side` to
/// `ceil(s · side)` pixels placed after `before` padding pixels, in an image of
/// `before + ceil(s · side) + after` pixels, centre-cropped (or padded) back to `side` as
/// torchvision's `center_crop`. All [N, side] f64.
fn scale_axis(scale: &Tensor, side: i64, before: &Tensor, after: &Tensor) -> Tensor {
    let device = scale.device();
    let n_up = (scale * side as f64).ceil();
    let total = &n_up + before + after;
    let side_f = side as f64;
    // center_crop: crop at round((total − side) / 2) (half to even), or pad by (side − total) // 2.
    let crop = ((&total - side_f) / 2.0).round();
    let pad = ((-&total + side_f) / 2.0).floor();
    let offset = crop.where_self(&total.ge(side_f), &(-pad));
    let out = Tensor::arange(side, (Kind::Double, device)).view([1, side]);
    let lucent = out + offset.view([-1, 1]);
    let inside = (&lucent - before.view([-1, 1])).view([-1, side]);
    let n_up = n_up.view([-1, 1]);
    let valid = inside.ge(0.0).logical_and(&inside.lt_tensor(&n_up));
    // Upsample(align_corners=True): i · (side − 1) / (n − 1), or 0 when n = 1.
    let step = (&n_up - 1.0).clamp_min(1.0);
    let coord = &inside * ((side_f - 1.0) / &step);
    let normalised = coord * (2.0 / (side_f - 1.0)) - 1.0;
    normalised.where_scalarother(&valid, -10.0)
}

/// Lucent's `random_scale` with the given scales, one per image, centre-cropped back to the
/// input's size.
pub fn apply_scale(images: &Tensor, scale: &Tensor) -> Tensor {
    let size = images.size();
    let (h, w) = (size[2], size[3]);
    let scale = scale.to_kind(Kind::Double);
    let pad_for =
        |side: i64| ((-(&scale * side as f64).ceil() + side as f64) / 2.0).ceil().clamp_min(0.0);
    let (pad_y, pad_x) = (pad_for(h), pad_for(w));
    // F.pad(x, [pad_y, pad_x] * 2): left pad_y, right pad_x, top pad_y, bottom pad_x.
    let gy = scale_axis(&scale, h, &pad_y, &pad_x);
    let gx = scale_axis(&scale, w, &pad_y, &pad_x);
    let n = gy.size()[0];
    let grid = Tensor::stack(
        &[gx.view([n, 1, w]).expand([n, h, w], false), gy.view([n, h, 1]).expand([n, h, w], false)],
        3,
    );
    sample(images, &grid.to_kind(Kind::Float), true)
}

/// `F.pad(x, [px] * 4, value=0.5)`.
pub fn apply_pad(images: &Tensor, px: i64) -> Tensor {
    images.pad([px, px, px, px], "constant", PAD_VALUE)
}
