//! huatu-kernels: CPU kernels huatu owns because candle's generic ops lose to PyTorch
//! there. Each kernel has a plain-candle reference implementation it is tested against.

pub mod activation;
pub mod attention;
mod attention_grad;
pub mod conv2d;
mod conv2d_grad;
mod cpu_slice;
mod elementwise;
pub mod frozen_linear;
pub mod fused_linear;
pub mod geglu;
pub mod group_norm;
pub mod norm_gate_grad;
mod softmax_exp;

pub use activation::{bias_activation, Activation};
pub use attention::fused_attention;
pub use conv2d::{conv2d, conv2d_fused, Conv2dExtras, Conv2dParams};
pub use fused_linear::fused_linear;
pub use geglu::geglu;
pub use group_norm::group_norm;
