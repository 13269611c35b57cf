//! `torch.optim.Adam` for one tensor, in a form a CUDA graph can capture.

use tch::{Kind, Tensor};

/// `torch.optim.Adam`'s defaults.
pub const ADAM_BETAS: (f64, f64) = (0.9, 0.999);
pub const ADAM_EPS: f64 = 1e-8;

/// `torch.optim.Adam` for one tensor (no weight decay, no amsgrad), in the form of its
/// `capturable=True` single-tensor update: the step count is a device tensor and the bias
/// corrections are computed on the device, so nothing here reads the host. Unlike torch's
/// capturable form (float32 step), the step and bias corrections are f64 as in the default
/// (non-capturable) form, which computes them on the host: `1 - 0.999^t` in float32 loses ~1e-5
/// relative to cancellation in the first steps.
#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// The number of steps taken, an f64 scalar on the parameter's device.
    pub step: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

impl Adam {
    /// `Adam([param], lr)` with default betas and eps.
    pub fn new(param: &Tensor, lr: f64) -> Self {
        Self::with(param, lr, ADAM_BETAS, ADAM_EPS)
    }

    pub fn with(param: &Tensor, lr: f64, betas: (f64, f64), eps: f64) -> Self {
        let zeros = || param.detach().zeros_like();
        Self {
            lr,
            betas,
            eps,
            step: Tensor::zeros([], (Kind::Double, param.device())),
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
        }
    }

    /// One update of `param` in place with its gradient `grad`.
    pub fn step(&mut self, param: &mut Tensor, grad: &Tensor) {
        let (beta1, beta2) = self.betas;
        tch::no_grad(|| {
            let _ = self.step.g_add_scalar_(1);
            let _ = self.exp_avg.lerp_(grad, 1.0 - beta1);
            let _ = self.exp_avg_sq.g_mul_scalar_(beta2);
            let _ = self.exp_avg_sq.addcmul_(&(grad * (1.0 - beta2)), grad);
            let bias_correction1 = Tensor::pow_scalar(beta1, &self.step).neg() + 1.0;
            let bias_correction2 = Tensor::pow_scalar(beta2, &self.step).neg() + 1.0;
            let step_size_neg = -(bias_correction1.reciprocal() * self.lr);
            let denom = self.exp_avg_sq.sqrt() / (bias_correction2.sqrt() * &step_size_neg)
                + step_size_neg.reciprocal() * self.eps;
            let _ = param.addcdiv_(&self.exp_avg, &denom);
        });
    }
}
