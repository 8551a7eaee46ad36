//! SDXL's aspect-ratio buckets: the resolutions of about one megapixel, sides multiples
//! of 64, that SDXL was fine-tuned on (Podell et al. 2023, "SDXL: Improving Latent
//! Diffusion Models for High-Resolution Image Synthesis", appendix I, the table of
//! multi-aspect training resolutions). Picking the bucket whose aspect ratio is nearest
//! an image's keeps cropping or padding to a minimum.

use crate::size::Size;

/// The buckets as (width, height), from the tallest to the widest.
pub const SDXL_BUCKETS: [(u32, u32); 41] = [
    (512, 2048),
    (512, 1984),
    (512, 1920),
    (512, 1856),
    (576, 1792),
    (576, 1728),
    (576, 1664),
    (640, 1600),
    (640, 1536),
    (704, 1472),
    (704, 1408),
    (704, 1344),
    (768, 1344),
    (768, 1280),
    (832, 1216),
    (832, 1152),
    (896, 1152),
    (896, 1088),
    (960, 1088),
    (960, 1024),
    (1024, 1024),
    (1024, 960),
    (1088, 960),
    (1088, 896),
    (1152, 896),
    (1152, 832),
    (1216, 832),
    (1280, 768),
    (1344, 768),
    (1344, 704),
    (1408, 704),
    (1472, 704),
    (1536, 640),
    (1600, 640),
    (1664, 576),
    (1728, 576),
    (1792, 576),
    (1856, 512),
    (1920, 512),
    (1984, 512),
    (2048, 512),
];

/// The SDXL bucket whose aspect ratio is nearest `width / height`, measured on a log
/// scale so that 2:1 and 1:2 are equally far from 1:1. Ties go to the bucket with more
/// pixels.
pub fn nearest_sdxl_bucket(width: u32, height: u32) -> Size {
    let ratio = (f64::from(width.max(1)) / f64::from(height.max(1))).ln();
    let mut best = SDXL_BUCKETS[20];
    let mut best_distance = f64::INFINITY;
    for (bucket_width, bucket_height) in SDXL_BUCKETS {
        let distance = ((f64::from(bucket_width) / f64::from(bucket_height)).ln() - ratio).abs();
        let more_pixels = bucket_width * bucket_height > best.0 * best.1;
        if distance < best_distance - 1e-12
            || ((distance - best_distance).abs() <= 1e-12 && more_pixels)
        {
            best = (bucket_width, bucket_height);
            best_distance = distance;
        }
    }
    Size::new(best.0, best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_multiples_of_64_near_one_megapixel_and_mirrored() {
        for (width, height) in SDXL_BUCKETS {
            assert_eq!(width % 64, 0);
            assert_eq!(height % 64, 0);
            let pixels = f64::from(width * height);
            assert!(
                (pixels / (1024.0 * 1024.0) - 1.0).abs() < 0.1,
                "{width}x{height}"
            );
            assert!(SDXL_BUCKETS.contains(&(height, width)));
        }
    }

    #[test]
    fn picks_the_bucket_with_the_nearest_ratio() {
        assert_eq!(nearest_sdxl_bucket(1000, 1000), Size::new(1024, 1024));
        // 16:9 = 1.778: 1344x768 (1.75) beats 1280x768 (1.667) and 1408x704 (2.0)
        assert_eq!(nearest_sdxl_bucket(1920, 1080), Size::new(1344, 768));
        assert_eq!(nearest_sdxl_bucket(1080, 1920), Size::new(768, 1344));
        // 4:3 = 1.333: 1152x896 (1.286) beats 1216x832 (1.4615)
        assert_eq!(nearest_sdxl_bucket(800, 600), Size::new(1152, 896));
        // extreme ratios clamp to the last bucket
        assert_eq!(nearest_sdxl_bucket(10_000, 10), Size::new(2048, 512));
        assert_eq!(nearest_sdxl_bucket(10, 10_000), Size::new(512, 2048));
    }
}
