//! huatu-kernels: CPU kernels huatu owns because candle's generic ops lose to PyTorch
//! there. Each kernel has a plain-candle reference implementation it is tested against.

#[expect(
    unsafe_code,
    reason = "AVX2/AVX-512 intrinsics behind runtime detection; each block has a SAFETY note"
)]
pub mod activation;
#[expect(
    unsafe_code,
    reason = "gemm's raw-pointer matrix products; each block has a SAFETY note"
)]
pub mod attention;
#[expect(
    unsafe_code,
    reason = "gemm's raw-pointer matrix products; each block has a SAFETY note"
)]
mod attention_grad;
#[expect(
    unsafe_code,
    reason = "gemm's raw-pointer matrix products and AVX2 intrinsics; each block has a SAFETY note"
)]
pub mod conv2d;
mod conv2d_grad;
mod cpu_slice;
mod elementwise;
pub mod frozen_linear;
#[expect(
    unsafe_code,
    reason = "gemm's raw-pointer matrix products; each block has a SAFETY note"
)]
pub mod fused_linear;
#[expect(
    unsafe_code,
    reason = "AVX2/AVX-512 intrinsics behind runtime detection; each block has a SAFETY note"
)]
pub mod geglu;
#[expect(
    unsafe_code,
    reason = "AVX2/AVX-512 intrinsics behind runtime detection; each block has a SAFETY note"
)]
pub mod group_norm;
pub mod norm_gate_grad;
#[expect(
    unsafe_code,
    reason = "AVX2 intrinsics behind runtime detection; each block has a SAFETY note"
)]
mod softmax_exp;

pub use activation::{bias_activation, Activation};
pub use attention::fused_attention;
pub use conv2d::{conv2d, conv2d_fused, Conv2dExtras, Conv2dParams};
pub use fused_linear::fused_linear;
pub use geglu::geglu;
pub use group_norm::group_norm;
