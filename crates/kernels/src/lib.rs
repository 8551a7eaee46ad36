//! huatu-kernels: CPU kernels huatu owns because candle's generic ops lose to PyTorch
//! there. Each kernel has a plain-candle reference implementation it is tested against.
//!
//! The workspace denies unsafe code; the modules below that call SIMD intrinsics (behind
//! runtime CPU detection) or gemm's raw-pointer API expect it, each block with a SAFETY note.

#[expect(unsafe_code, reason = "SIMD intrinsics")]
pub mod activation;
#[expect(unsafe_code, reason = "gemm's raw-pointer API")]
pub mod attention;
#[expect(unsafe_code, reason = "gemm's raw-pointer API")]
mod attention_grad;
#[expect(unsafe_code, reason = "SIMD intrinsics")]
pub mod bf16;
pub mod conv2d;
#[expect(unsafe_code, reason = "gemm's raw-pointer API and SIMD intrinsics")]
mod conv2d_gemm;
mod conv2d_grad;
mod cpu_slice;
mod elementwise;
pub mod frozen_linear;
#[expect(unsafe_code, reason = "gemm's raw-pointer API")]
pub mod fused_linear;
#[expect(unsafe_code, reason = "SIMD intrinsics")]
pub mod geglu;
#[expect(unsafe_code, reason = "SIMD intrinsics")]
pub mod group_norm;
pub mod leaky_relu;
pub mod norm_gate_grad;
#[expect(unsafe_code, reason = "SIMD intrinsics")]
mod softmax_exp;

pub use activation::{bias_activation, Activation};
pub use attention::fused_attention;
pub use bf16::{bf16_dot_available, conv2d_bf16, fused_linear_bf16};
pub use conv2d::{conv2d, conv2d_fused, Conv2dExtras, Conv2dParams};
pub use fused_linear::fused_linear;
pub use geglu::geglu;
pub use group_norm::group_norm;
pub use leaky_relu::{channel_leaky_relu, leaky_relu};
