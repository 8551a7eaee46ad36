//! Whether intent confidences mean what they say: expected calibration error (Guo et al.
//! 2017, "On Calibration of Modern Neural Networks", 15 equal-width bins) and
//! temperature scaling fitted by minimising the negative log-likelihood on held-out
//! labelled instructions.

/// Bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// ECE: Σ over confidence bins of |accuracy − mean confidence| weighted by the bin's
/// share of the instructions. 0 for no instructions.
pub fn expected_calibration_error(confidences: &[f64], correct: &[bool]) -> f64 {
    let total = confidences.len().min(correct.len());
    if total == 0 {
        return 0.0;
    }
    let mut bins = vec![(0usize, 0f64, 0usize); ECE_BINS]; // (count, confidence sum, right)
    for (&confidence, &right) in confidences.iter().zip(correct) {
        let bin = ((confidence * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        bins[bin].0 += 1;
        bins[bin].1 += confidence;
        bins[bin].2 += usize::from(right);
    }
    bins.iter()
        .filter(|(count, _, _)| *count > 0)
        .map(|&(count, confidence_sum, right)| {
            let accuracy = right as f64 / count as f64;
            let confidence = confidence_sum / count as f64;
            count as f64 / total as f64 * (accuracy - confidence).abs()
        })
        .sum()
}

/// Mean negative log-likelihood of `gold` under softmax(`logits` / `temperature`).
fn mean_nll(logits: &[Vec<f32>], gold: &[usize], temperature: f64) -> f64 {
    let mut total = 0.0;
    for (row, &g) in logits.iter().zip(gold) {
        let scaled: Vec<f64> = row.iter().map(|&l| l as f64 / temperature).collect();
        let max = scaled.iter().copied().fold(f64::MIN, f64::max);
        let log_z = max + scaled.iter().map(|s| (s - max).exp()).sum::<f64>().ln();
        total += log_z - scaled.get(g).copied().unwrap_or(max);
    }
    total / logits.len().max(1) as f64
}

/// The temperature in [0.5, 5] (steps of 0.05) with the lowest NLL; 1 for no data.
pub fn fit_temperature(logits: &[Vec<f32>], gold: &[usize]) -> f64 {
    if logits.is_empty() {
        return 1.0;
    }
    (10..=100)
        .map(|step| step as f64 * 0.05)
        .map(|t| (t, mean_nll(logits, gold, t)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(1.0, |(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_calibrated_confidences_have_no_error() {
        // 80% confident and right 4 times out of 5.
        let confidences = [0.8; 5];
        let correct = [true, true, true, true, false];
        assert!(expected_calibration_error(&confidences, &correct) < 1e-9);
        // Always 99% confident, right half the time.
        let error = expected_calibration_error(&[0.99; 4], &[true, false, true, false]);
        assert!((error - 0.49).abs() < 1e-9);
        assert_eq!(expected_calibration_error(&[], &[]), 0.0);
    }

    #[test]
    fn overconfident_logits_get_a_temperature_above_one() {
        // Very sure, but the gold is the second choice a third of the time.
        let logits: Vec<Vec<f32>> = (0..30).map(|_| vec![8.0, 0.0, 0.0]).collect();
        let gold: Vec<usize> = (0..30).map(|i| if i % 3 == 0 { 1 } else { 0 }).collect();
        let t = fit_temperature(&logits, &gold);
        assert!(t > 1.5, "{t}");
        // Right every time: sharper is better, the lowest temperature wins.
        let t = fit_temperature(&logits, &[0; 30]);
        assert!((t - 0.5).abs() < 1e-9, "{t}");
    }
}
