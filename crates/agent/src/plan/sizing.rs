//! Turning an `aspect` slot (横版, 竖屏, 方形, 16:9, 1920x1080, A4, 4K) into an SDXL
//! width and height: about the scene's pixel count, multiples of 64 (SDXL's training
//! buckets are on a 64 grid).

use crate::text::normalize_char;

fn round64(x: f64) -> usize {
    ((x / 64.0).round() as usize).max(1) * 64
}

/// Width and height for `ratio` = width / height at about `area` pixels.
fn sized(ratio: f64, area: f64) -> (usize, usize) {
    let width = (area * ratio).sqrt();
    (round64(width), round64(width / ratio))
}

/// `None` when the aspect cannot be understood.
pub fn size_for_aspect(aspect: &str, width: usize, height: usize) -> Option<(usize, usize)> {
    let text: String = aspect.trim().chars().map(normalize_char).collect();
    let area = (width * height) as f64;
    let long_side = width.max(height);
    let short_side = width.min(height);
    let landscape = ["横", "landscape", "长方形"]
        .iter()
        .any(|w| text.contains(w));
    let portrait = ["竖", "豎", "portrait", "纵"]
        .iter()
        .any(|w| text.contains(w));
    let square = text.contains("方形") && !text.contains("长方形") || text == "square";
    if landscape || portrait {
        let (long, short) = if long_side == short_side {
            sized(1.46, area)
        } else {
            (long_side, short_side)
        };
        return Some(if landscape {
            (long, short)
        } else {
            (short, long)
        });
    }
    if square {
        let side = round64(area.sqrt());
        return Some((side, side));
    }
    if matches!(text.as_str(), "a3" | "a4" | "a5") {
        return Some(sized(1.0 / std::f64::consts::SQRT_2, area));
    }
    if matches!(
        text.as_str(),
        "2k" | "4k" | "8k" | "1080p" | "720p" | "高清" | "超清"
    ) {
        // A resolution, not a shape: keep the scene's shape (an upscaling enhancer
        // reaches the pixel count).
        return Some((width, height));
    }
    let separator = text.find([':', 'x', '*', '×'])?;
    let (left, right) = text.split_at(separator);
    let right = &right[right.chars().next()?.len_utf8()..];
    let a: f64 = left.trim().parse().ok()?;
    let b: f64 = right.trim().parse().ok()?;
    if !(a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite()) || a / b > 8.0 || b / a > 8.0 {
        return None;
    }
    Some(sized(a / b, area))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientation_words_ratios_and_sizes() {
        assert_eq!(size_for_aspect("16:9", 1024, 1024), Some((1344, 768)));
        assert_eq!(size_for_aspect("16：9", 1024, 1024), Some((1344, 768)));
        assert_eq!(size_for_aspect("9:16", 1024, 1024), Some((768, 1344)));
        assert_eq!(size_for_aspect("1920x1080", 1024, 1024), Some((1344, 768)));
        assert_eq!(size_for_aspect("1:1", 832, 1216), Some((1024, 1024)));
        assert_eq!(size_for_aspect("横版", 832, 1216), Some((1216, 832)));
        assert_eq!(size_for_aspect("竖屏", 1344, 768), Some((768, 1344)));
        assert_eq!(size_for_aspect("横版", 1024, 1024), Some((1216, 832)));
        assert_eq!(size_for_aspect("方形", 832, 1216), Some((1024, 1024)));
        assert_eq!(size_for_aspect("A4", 1024, 1024), Some((832, 1216)));
        assert_eq!(size_for_aspect("4K", 1344, 768), Some((1344, 768)));
    }

    #[test]
    fn nonsense_is_not_a_size() {
        assert_eq!(size_for_aspect("大一点", 1024, 1024), None);
        assert_eq!(size_for_aspect("0:9", 1024, 1024), None);
        assert_eq!(size_for_aspect("100:1", 1024, 1024), None);
        assert_eq!(size_for_aspect(":", 1024, 1024), None);
    }
}
