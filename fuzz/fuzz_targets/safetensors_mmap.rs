//! safetensors weights as the model loaders read them: the header check, the memory map
//! (`mmap_safetensors`, behind `mmap_backend`) and every tensor copied out of it.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("huatu-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir.join("weights.safetensors")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    let Ok(mapped) = huatu_diffusion::loading::safetensors_files::mmap_safetensors(&[path.clone()])
    else {
        return;
    };
    for (name, _) in mapped.tensors() {
        let _ = mapped.load(&name, &candle_core::Device::Cpu);
    }
});
