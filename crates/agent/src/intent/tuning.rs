//! After training: the two decoding settings that are fitted on labelled dev sets rather
//! than learned with the weights — the intent temperature (calibration) and the cost of
//! a slot span edge inside a dictionary word.

use crate::error::Result;
use crate::intent::calibration::fit_temperature;
use crate::intent::corpus::Example;
use crate::intent::eval::evaluate;
use crate::intent::inference::IntentModel;

/// Word-boundary costs tried, lowest first (ties keep the lower).
pub const BOUNDARY_PENALTIES: [f64; 6] = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0];

/// What tuning chose and the dev slot F1 of each tried penalty.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub intent_temperature: f64,
    pub boundary_penalty: f64,
    pub slot_f1_by_penalty: Vec<(f64, f64)>,
}

/// Fits both settings on `dev` and sets them on `model`; leaves `model` alone when
/// `dev` is empty.
pub fn tune_decoding(model: &mut IntentModel, dev: &[Example]) -> Result<Option<Tuning>> {
    if dev.is_empty() {
        return Ok(None);
    }
    let texts: Vec<&str> = dev.iter().map(|e| e.text.as_str()).collect();
    let mut logits = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        logits.extend(model.intent_logits(chunk)?);
    }
    let gold: Vec<usize> = dev.iter().map(|e| e.intent.index()).collect();
    let intent_temperature = fit_temperature(&logits, &gold);
    let mut slot_f1_by_penalty = Vec::new();
    let mut best = (f64::MIN, 0.0);
    for penalty in BOUNDARY_PENALTIES {
        model.set_decoding(intent_temperature, penalty);
        let mut parses = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(64) {
            parses.extend(model.parse_batch(chunk)?);
        }
        let f1 = evaluate(dev, &parses).slots.f1();
        slot_f1_by_penalty.push((penalty, f1));
        if f1 > best.0 + 1e-9 {
            best = (f1, penalty);
        }
    }
    model.set_decoding(intent_temperature, best.1);
    Ok(Some(Tuning {
        intent_temperature,
        boundary_penalty: best.1,
        slot_f1_by_penalty,
    }))
}
