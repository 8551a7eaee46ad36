//! The `.pth` checkpoint reader (zip + pickle + storages) that loads Real-ESRGAN weights.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = huatu_imaging::sr::weights::pth::read_state_dict(
        std::io::Cursor::new(data),
        &["params_ema", "params"],
    );
});
