//! The imaging crate's integration tests, one test binary (link time on two cores):
//! Real-ESRGAN parity with PyTorch and untrusted files refused safely.

mod realesrgan_parity;
mod untrusted_files;
