//! The capped image decoder of CLI inputs (`huatu_imaging::io::decode_image`) and the
//! server's upload decoder built on it (`png_codec::decode_upload`, with its mask).
//! Limits are smaller than the defaults so each run stays fast; the code path is the same.
#![no_main]

use huatu_imaging::io::{decode_image, DecodeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        max_side: 1024,
        max_pixels: 1 << 20,
    };
    let _ = decode_image(data, None, "fuzz", &limits);
    let _ = huatu_server::png_codec::decode_upload("image", data, 1024);
});
