//! Colour steps on RGB in [0, 1]: white balance (gray-world: every channel's mean
//! made equal to the grey mean, Buchsbaum 1980; white-patch: every channel's high
//! percentile made white, the "max-RGB"/Retinex assumption), saturation (Pillow's
//! `ImageEnhance.Color`: a blend with the ITU-R 601 luma), vibrance (saturation that
//! spares already-saturated pixels) and gamma (`out = in^(1/γ)`).

use rayon::prelude::*;

/// How white balance estimates the illuminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteBalanceMethod {
    GrayWorld,
    WhitePatch,
}

/// Parameters of white balance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WhiteBalanceParams {
    pub method: WhiteBalanceMethod,
    /// White-patch: the percentile of each channel that becomes white (100 = the maximum).
    pub percentile: f32,
    /// 0 leaves the image alone, 1 applies the full correction.
    pub strength: f32,
}

/// The per-channel gains that white balance would apply.
pub fn white_balance_gains(data: &[f32], params: &WhiteBalanceParams) -> [f32; 3] {
    let gains = match params.method {
        WhiteBalanceMethod::GrayWorld => {
            let mut sums = [0f64; 3];
            for pixel in data.chunks_exact(3) {
                for (sum, &value) in sums.iter_mut().zip(pixel) {
                    *sum += f64::from(value);
                }
            }
            let count = (data.len() / 3).max(1) as f64;
            let means = sums.map(|sum| (sum / count) as f32);
            let grey = (means[0] + means[1] + means[2]) / 3.0;
            means.map(|mean| if mean > 1e-6 { grey / mean } else { 1.0 })
        }
        WhiteBalanceMethod::WhitePatch => {
            let mut gains = [1f32; 3];
            for (channel, gain) in gains.iter_mut().enumerate() {
                let mut values: Vec<f32> = data.iter().skip(channel).step_by(3).copied().collect();
                let rank = ((params.percentile / 100.0) * (values.len().saturating_sub(1)) as f32)
                    .round() as usize;
                let rank = rank.min(values.len().saturating_sub(1));
                if values.is_empty() {
                    continue;
                }
                let (_, high, _) = values.select_nth_unstable_by(rank, f32::total_cmp);
                if *high > 1e-6 {
                    *gain = 1.0 / *high;
                }
            }
            gains
        }
    };
    gains.map(|gain| 1.0 + params.strength * (gain - 1.0))
}

/// Applies white balance in place.
pub fn white_balance(data: &mut [f32], params: &WhiteBalanceParams) {
    let gains = white_balance_gains(data, params);
    data.par_chunks_exact_mut(3).for_each(|pixel| {
        for (value, gain) in pixel.iter_mut().zip(gains) {
            *value = (*value * gain).clamp(0.0, 1.0);
        }
    });
}

fn luma(pixel: &[f32]) -> f32 {
    0.299 * pixel[0] + 0.587 * pixel[1] + 0.114 * pixel[2]
}

/// Scales every pixel's distance from its luma by `factor` (0 = grey, 1 = unchanged).
pub fn saturation(data: &mut [f32], factor: f32) {
    data.par_chunks_exact_mut(3).for_each(|pixel| {
        let grey = luma(pixel);
        for value in pixel.iter_mut() {
            *value = (grey + factor * (*value - grey)).clamp(0.0, 1.0);
        }
    });
}

/// Saturation weighted by how unsaturated each pixel is: a pixel with chroma
/// `c = max − min` gets the factor `1 + amount·(1 − c)`, so skin and already vivid
/// colours change less than dull ones. Negative amounts mute dull colours first.
pub fn vibrance(data: &mut [f32], amount: f32) {
    data.par_chunks_exact_mut(3).for_each(|pixel| {
        let max = pixel[0].max(pixel[1]).max(pixel[2]);
        let min = pixel[0].min(pixel[1]).min(pixel[2]);
        let factor = 1.0 + amount * (1.0 - (max - min).clamp(0.0, 1.0));
        let grey = luma(pixel);
        for value in pixel.iter_mut() {
            *value = (grey + factor * (*value - grey)).clamp(0.0, 1.0);
        }
    });
}

/// `out = in^(1/gamma)`: gamma above 1 brightens the mid-tones, below 1 darkens them.
pub fn gamma(data: &mut [f32], gamma: f32) {
    let exponent = 1.0 / gamma;
    data.par_iter_mut()
        .for_each(|value| *value = value.clamp(0.0, 1.0).powf(exponent));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tinted() -> Vec<f32> {
        // channel means 0.2, 0.4, 0.6
        (0..100)
            .flat_map(|i| {
                let wobble = if i % 2 == 0 { 0.05 } else { -0.05 };
                [0.2 + wobble, 0.4 + wobble, 0.6 + wobble]
            })
            .collect()
    }

    #[test]
    fn gray_world_equalises_the_channel_means() {
        let mut data = tinted();
        let params = WhiteBalanceParams {
            method: WhiteBalanceMethod::GrayWorld,
            percentile: 99.0,
            strength: 1.0,
        };
        let gains = white_balance_gains(&data, &params);
        assert!(
            (gains[0] - 2.0).abs() < 1e-4
                && (gains[1] - 1.0).abs() < 1e-4
                && (gains[2] - 2.0 / 3.0).abs() < 1e-4,
            "{gains:?}"
        );
        white_balance(&mut data, &params);
        for channel in 0..3 {
            let mean: f32 = data.iter().skip(channel).step_by(3).sum::<f32>() / 100.0;
            assert!((mean - 0.4).abs() < 1e-4, "channel {channel}: {mean}");
        }
        let half = white_balance_gains(
            &tinted(),
            &WhiteBalanceParams {
                strength: 0.5,
                ..params
            },
        );
        assert!((half[0] - 1.5).abs() < 1e-4);
    }

    #[test]
    fn white_patch_makes_the_brightest_white() {
        let mut data = tinted();
        let params = WhiteBalanceParams {
            method: WhiteBalanceMethod::WhitePatch,
            percentile: 100.0,
            strength: 1.0,
        };
        white_balance(&mut data, &params);
        for channel in 0..3 {
            let max = data
                .iter()
                .skip(channel)
                .step_by(3)
                .fold(0f32, |a, &b| a.max(b));
            assert!((max - 1.0).abs() < 1e-5, "channel {channel}: {max}");
        }
    }

    #[test]
    fn saturation_zero_is_grey_and_one_is_identity() {
        let original = vec![0.8, 0.3, 0.1, 0.2, 0.5, 0.9];
        let mut grey = original.clone();
        saturation(&mut grey, 0.0);
        let expected = 0.299 * 0.8 + 0.587 * 0.3 + 0.114 * 0.1;
        assert!(grey[..3].iter().all(|v| (v - expected).abs() < 1e-6));
        let mut same = original.clone();
        saturation(&mut same, 1.0);
        assert!(same
            .iter()
            .zip(&original)
            .all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn vibrance_boosts_dull_colours_more_than_vivid_ones() {
        let mut data = vec![0.55, 0.5, 0.45, 1.0, 0.0, 0.0];
        vibrance(&mut data, 0.5);
        // the dull pixel (chroma 0.1) gets factor 1.45; the pure red (chroma 1) stays
        let grey = 0.299 * 0.55 + 0.587 * 0.5 + 0.114 * 0.45;
        assert!((data[0] - (grey + 1.45 * (0.55 - grey))).abs() < 1e-6);
        assert_eq!(&data[3..], &[1.0, 0.0, 0.0]);
    }

    #[test]
    fn gamma_maps_mid_grey_as_the_formula_says() {
        let mut data = vec![0.25, 0.0, 1.0];
        gamma(&mut data, 2.0);
        assert!((data[0] - 0.5).abs() < 1e-6 && data[1] == 0.0 && data[2] == 1.0);
    }
}
