//! sRGB ↔ CIE L*a*b* (D65 white), the conversion OpenCV's `COLOR_RGB2Lab` uses for
//! float images: sRGB decoding, the sRGB→XYZ matrix of IEC 61966-2-1, and the CIE
//! 1976 L*a*b* formulas with their linear segment below (6/29)³. The sRGB transfer
//! curves are read from 4096-step tables with linear interpolation (error below 2e-5,
//! a two-hundredth of an 8-bit level), which makes CLAHE's conversions several times
//! faster than calling `powf` per channel.

use std::sync::OnceLock;

const WHITE_X: f32 = 0.950_456;
const WHITE_Z: f32 = 1.088_754;
const EPSILON: f32 = 216.0 / 24389.0; // (6/29)³
const KAPPA: f32 = 24389.0 / 27.0;

const TABLE_STEPS: usize = 4096;

fn table(curve: fn(f32) -> f32) -> Vec<f32> {
    (0..=TABLE_STEPS)
        .map(|i| curve(i as f32 / TABLE_STEPS as f32))
        .collect()
}

/// Looks `value` (clamped to [0, 1]) up in a table of `TABLE_STEPS + 1` samples.
fn interpolate(table: &[f32], value: f32) -> f32 {
    let position = value.clamp(0.0, 1.0) * TABLE_STEPS as f32;
    let index = (position as usize).min(TABLE_STEPS - 1);
    let fraction = position - index as f32;
    let (low, high) = (table[index], table[index + 1]);
    low + fraction * (high - low)
}

fn srgb_to_linear(value: f32) -> f32 {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    interpolate(TABLE.get_or_init(|| table(srgb_to_linear_exact)), value)
}

fn linear_to_srgb(value: f32) -> f32 {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    // the curve is steep near 0, where it is linear anyway: compute that part exactly
    if value <= 0.003_130_8 {
        return value.max(0.0) * 12.92;
    }
    interpolate(TABLE.get_or_init(|| table(linear_to_srgb_exact)), value)
}

fn srgb_to_linear_exact(value: f32) -> f32 {
    if value <= 0.04045 {
        value / 12.92
    } else {
        ((value + 0.055) / 1.055).powf(2.4)
    }
}

fn linear_to_srgb_exact(value: f32) -> f32 {
    if value <= 0.003_130_8 {
        value * 12.92
    } else {
        1.055 * value.powf(1.0 / 2.4) - 0.055
    }
}

fn lab_f(t: f32) -> f32 {
    if t > EPSILON {
        t.cbrt()
    } else {
        (KAPPA * t + 16.0) / 116.0
    }
}

fn lab_f_inverse(t: f32) -> f32 {
    let cube = t * t * t;
    if cube > EPSILON {
        cube
    } else {
        (116.0 * t - 16.0) / KAPPA
    }
}

/// sRGB in [0, 1] → (L in [0, 100], a, b).
pub fn rgb_to_lab([r, g, b]: [f32; 3]) -> [f32; 3] {
    let (r, g, b) = (srgb_to_linear(r), srgb_to_linear(g), srgb_to_linear(b));
    let x = (0.412_453 * r + 0.357_580 * g + 0.180_423 * b) / WHITE_X;
    let y = 0.212_671 * r + 0.715_160 * g + 0.072_169 * b;
    let z = (0.019_334 * r + 0.119_193 * g + 0.950_227 * b) / WHITE_Z;
    let (fx, fy, fz) = (lab_f(x), lab_f(y), lab_f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// (L, a, b) → sRGB, clamped to [0, 1].
pub fn lab_to_rgb([l, a, b]: [f32; 3]) -> [f32; 3] {
    let fy = (l + 16.0) / 116.0;
    let fx = fy + a / 500.0;
    let fz = fy - b / 200.0;
    let x = lab_f_inverse(fx) * WHITE_X;
    let y = lab_f_inverse(fy);
    let z = lab_f_inverse(fz) * WHITE_Z;
    let r = 3.240_479 * x - 1.537_15 * y - 0.498_535 * z;
    let g = -0.969_256 * x + 1.875_992 * y + 0.041_556 * z;
    let b = 0.055_648 * x - 0.204_043 * y + 1.057_311 * z;
    [r, g, b].map(|channel| linear_to_srgb(channel.clamp(0.0, 1.0)).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_the_exact_curves() {
        for i in 0..=10_000 {
            let value = i as f32 / 10_000.0;
            assert!(
                (srgb_to_linear(value) - srgb_to_linear_exact(value)).abs() < 2e-5,
                "{value}"
            );
            assert!(
                (linear_to_srgb(value) - linear_to_srgb_exact(value)).abs() < 2e-5,
                "{value}"
            );
        }
    }

    #[test]
    fn known_values_and_round_trip() {
        let white = rgb_to_lab([1.0, 1.0, 1.0]);
        assert!(
            (white[0] - 100.0).abs() < 0.01 && white[1].abs() < 0.01 && white[2].abs() < 0.01,
            "{white:?}"
        );
        let black = rgb_to_lab([0.0, 0.0, 0.0]);
        assert!(black[0].abs() < 1e-4);
        // sRGB red is L* 53.24, a* 80.09, b* 67.20
        let red = rgb_to_lab([1.0, 0.0, 0.0]);
        assert!(
            (red[0] - 53.24).abs() < 0.05
                && (red[1] - 80.09).abs() < 0.1
                && (red[2] - 67.20).abs() < 0.1,
            "{red:?}"
        );
        for colour in [[0.1, 0.5, 0.9], [0.7, 0.2, 0.3], [0.01, 0.02, 0.0]] {
            let back = lab_to_rgb(rgb_to_lab(colour));
            for (a, b) in colour.iter().zip(back) {
                assert!((a - b).abs() < 1e-4, "{colour:?} → {back:?}");
            }
        }
    }
}
