//! VQGAN-CLIP's `MakeCutouts`: each image gives N square crops per step, each resampled to the
//! model's input resolution, and the loss averages a prompt's views.
//!
//! Mirrors `MakeCutouts.forward` (Katherine Crowson's VQGAN-CLIP notebook, as pixray and
//! aphantasia use it) with the minimum size set by a fraction of the canvas: side
//! `size = int(rand^pow · (max − min) + min)` with `max` = the canvas' short side and `min = frac ·
//! max`, offsets `randint(0, side − size + 1)`, and the crop resampled as
//! `F.interpolate(crop, (R, R), mode="bilinear", align_corners=False)` does (the reference uses a
//! Lanczos-like `resample`; bilinear keeps every view one grid sample). All N crops of an image are
//! one sampling grid of static shape: no crop is ever materialised at its own size, so the step
//! stays one CUDA graph.

use crate::engine::draws::Draws;
use tch::{Device, Kind, Tensor};

/// One step's crops: per image and cutout ([N, cuts] f64), the side and the top-left corner.
#[derive(Debug)]
pub struct Cuts {
    pub size: Tensor,
    pub offset_x: Tensor,
    pub offset_y: Tensor,
}

/// Draws `cuts` crops for each of `n` images of `width` × `height`: sizes, then x offsets, then
/// y offsets, each one uniform [n, cuts] draw.
pub fn sample_cuts(
    n: i64,
    cuts: i64,
    min_frac: f64,
    pow: f64,
    (width, height): (i64, i64),
    draws: &mut dyn Draws,
    device: Device,
) -> Cuts {
    let max_size = width.min(height) as f64;
    let min_size = min_frac * max_size;
    let mut uniform = || draws.uniform(&[n, cuts], Kind::Double, device);
    let size = (uniform().pow_tensor_scalar(pow) * (max_size - min_size) + min_size)
        .floor()
        .clamp(1.0, max_size);
    let offset_x = (uniform() * (-&size + (width as f64 + 1.0))).floor();
    let offset_y = (uniform() * (-&size + (height as f64 + 1.0))).floor();
    Cuts { size, offset_x, offset_y }
}

/// Where output pixel `0..res` of a crop reads the canvas along one axis of `side` pixels, as
/// `F.interpolate(bilinear, align_corners=False)` reads the crop: `(k + ½) · size / res − ½`,
/// clamped to the crop, plus the offset; normalised for `grid_sample(align_corners=False)`.
/// [N, cuts, res] f64.
fn axis(size: &Tensor, offset: &Tensor, res: i64, side: i64) -> Tensor {
    let k = Tensor::arange(res, (Kind::Double, size.device())).view([1, 1, res]);
    let size = size.unsqueeze(2);
    let src = ((k + 0.5) * (&size / res as f64) - 0.5).clamp_min(0.0).minimum(&(&size - 1.0));
    let abs = src + offset.unsqueeze(2);
    (abs * 2.0 + 1.0) / side as f64 - 1.0
}

/// The crops of `images` [N, C, H, W] resampled to `res` × `res`: [N · cuts, C, res, res], an
/// image's cutouts consecutive.
pub fn apply_cuts(images: &Tensor, cuts: &Cuts, res: i64) -> Tensor {
    let size = images.size();
    let (n, c, h, w) = (size[0], size[1], size[2], size[3]);
    let count = cuts.size.size()[1];
    let gx = axis(&cuts.size, &cuts.offset_x, res, w).view([n, count, 1, res]);
    let gy = axis(&cuts.size, &cuts.offset_y, res, h).view([n, count, res, 1]);
    let shape = [n, count, res, res];
    let grid = Tensor::stack(&[gx.expand(shape, false), gy.expand(shape, false)], 4)
        .view([n, count * res, res, 2])
        .to_kind(images.kind());
    // grid_sampler_2d modes: interpolation 0 = bilinear, padding 0 = zeros.
    images
        .grid_sampler_2d(&grid, 0, 0, false)
        .view([n, c, count, res, res])
        .permute([0, 2, 1, 3, 4])
        .reshape([n * count, c, res, res])
}
