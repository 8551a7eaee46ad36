//! The LoRA reader (`LoraFile::from_bytes`, what `LoraFile::read` runs on a file's bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = huatu_diffusion::lora::file::LoraFile::from_bytes(
        std::path::Path::new("fuzz.safetensors"),
        data,
    );
});
