//! Unsharp masking, as GIMP's and Pillow's `ImageFilter.UnsharpMask` define it:
//! `out = in + amount·(in − gaussian(in, σ))` wherever `|in − blurred|` exceeds the
//! threshold, clamped to [0, 1].

use super::blur::gaussian_blur;

/// Parameters of the unsharp mask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnsharpParams {
    /// How much of the detail (in − blurred) is added back.
    pub amount: f32,
    /// Gaussian σ of the blur, in pixels: the size of the detail that is sharpened.
    pub sigma: f32,
    /// Differences at or below this (in [0, 1]) are left alone, so flat noise is not boosted.
    pub threshold: f32,
}

/// Sharpens interleaved f32 data of `channels` values per pixel.
pub fn unsharp_mask(
    data: &[f32],
    width: usize,
    height: usize,
    channels: usize,
    params: &UnsharpParams,
) -> Vec<f32> {
    let _span = tracing::trace_span!("unsharp_mask", width, height).entered();
    let blurred = gaussian_blur(data, width, height, channels, params.sigma);
    data.iter()
        .zip(blurred)
        .map(|(&value, blur)| {
            let detail = value - blur;
            if detail.abs() > params.threshold {
                (value + params.amount * detail).clamp(0.0, 1.0)
            } else {
                value
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steepens_an_edge_and_leaves_flat_areas() {
        let row: Vec<f32> = (0..12).map(|x| if x < 6 { 0.4 } else { 0.6 }).collect();
        let data: Vec<f32> = row.iter().cycle().take(12 * 5).copied().collect();
        let params = UnsharpParams {
            amount: 1.0,
            sigma: 1.0,
            threshold: 0.0,
        };
        let output = unsharp_mask(&data, 12, 5, 1, &params);
        let row = &output[2 * 12..3 * 12];
        assert!(
            row[5] < 0.4 && row[6] > 0.6,
            "overshoot on both sides: {row:?}"
        );
        assert!((row[0] - 0.4).abs() < 1e-5 && (row[11] - 0.6).abs() < 1e-5);
        // with a threshold above the detail, nothing changes
        let params = UnsharpParams {
            threshold: 0.5,
            ..params
        };
        assert_eq!(unsharp_mask(&data, 12, 5, 1, &params), data);
    }
}
