//! huatu-kernels: CPU kernels huatu owns because candle's generic ops lose to PyTorch
//! there. Each kernel has a plain-candle reference implementation it is tested against.

pub mod attention;
mod softmax_exp;

pub use attention::fused_attention;
