//! Scoring parses against gold labels as INTENTS.md "Measuring it" defines: intent
//! accuracy, per-intent precision and recall, and slot F1 over exact (slot, value) pairs;
//! beside them the calibration of the intent confidence (ECE) and the intent confusions.

use std::collections::BTreeMap;
use std::fmt;

use crate::intent::calibration::{expected_calibration_error, ECE_BINS};
use crate::intent::corpus::{Example, SlotValue};
use crate::intent::inference::Parse;
use crate::intent::labels::{Intent, SlotName};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub true_positive: usize,
    pub false_positive: usize,
    pub false_negative: usize,
}

impl Counts {
    pub fn precision(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_positive)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_negative)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub total: usize,
    pub intent_correct: usize,
    pub per_intent: BTreeMap<Intent, Counts>,
    pub slots: Counts,
    pub per_slot: BTreeMap<SlotName, Counts>,
    /// Instructions whose intent or slots differ from gold: (gold, parse).
    pub errors: Vec<(Example, Parse)>,
    /// Expected calibration error of the intent confidence.
    pub ece: f64,
    /// (gold, predicted) → instructions, for wrong intents only.
    pub confusions: BTreeMap<(Intent, Intent), usize>,
}

impl Report {
    pub fn intent_accuracy(&self) -> f64 {
        ratio(self.intent_correct, self.total)
    }

    /// Share of instructions with intent and every slot right.
    pub fn exact_match(&self) -> f64 {
        ratio(self.total - self.errors.len(), self.total)
    }
}

/// Scores `parses` (in the order of `gold`).
pub fn evaluate(gold: &[Example], parses: &[Parse]) -> Report {
    let mut report = Report {
        total: gold.len(),
        ..Default::default()
    };
    for intent in Intent::ALL {
        report.per_intent.insert(intent, Counts::default());
    }
    for slot in SlotName::ALL {
        report.per_slot.insert(slot, Counts::default());
    }
    let mut confidences = Vec::with_capacity(gold.len());
    let mut correct = Vec::with_capacity(gold.len());
    for (example, parse) in gold.iter().zip(parses) {
        confidences.push(parse.confidence);
        correct.push(example.intent == parse.intent);
        if example.intent != parse.intent {
            *report
                .confusions
                .entry((example.intent, parse.intent))
                .or_default() += 1;
        }
        if example.intent == parse.intent {
            report.intent_correct += 1;
            if let Some(c) = report.per_intent.get_mut(&parse.intent) {
                c.true_positive += 1;
            }
        } else {
            if let Some(c) = report.per_intent.get_mut(&parse.intent) {
                c.false_positive += 1;
            }
            if let Some(c) = report.per_intent.get_mut(&example.intent) {
                c.false_negative += 1;
            }
        }
        let mut wrong = example.intent != parse.intent;
        for slot in SlotName::ALL {
            let gold_value: Option<&SlotValue> = example.slots.get(&slot);
            let predicted: Option<&SlotValue> = parse.slots.get(&slot);
            let counts = [&mut report.slots]
                .into_iter()
                .chain(report.per_slot.get_mut(&slot));
            let (tp, fp, fn_) = match (gold_value, predicted) {
                (Some(g), Some(p)) if g == p => (1, 0, 0),
                (Some(_), Some(_)) => (0, 1, 1),
                (Some(_), None) => (0, 0, 1),
                (None, Some(_)) => (0, 1, 0),
                (None, None) => (0, 0, 0),
            };
            wrong |= fp + fn_ > 0;
            for c in counts {
                c.true_positive += tp;
                c.false_positive += fp;
                c.false_negative += fn_;
            }
        }
        if wrong {
            report.errors.push((example.clone(), parse.clone()));
        }
    }
    report.ece = expected_calibration_error(&confidences, &correct);
    report
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "instructions: {}", self.total)?;
        writeln!(
            f,
            "intent accuracy: {:.1}% ({}/{})",
            100.0 * self.intent_accuracy(),
            self.intent_correct,
            self.total
        )?;
        writeln!(
            f,
            "slot F1: {:.1}% (precision {:.1}%, recall {:.1}%)",
            100.0 * self.slots.f1(),
            100.0 * self.slots.precision(),
            100.0 * self.slots.recall()
        )?;
        writeln!(
            f,
            "exact match (intent and all slots): {:.1}%",
            100.0 * self.exact_match()
        )?;
        writeln!(
            f,
            "intent confidence ECE: {:.3} ({ECE_BINS} bins)",
            self.ece
        )?;
        writeln!(
            f,
            "{:<22}{:>10}{:>10}{:>8}",
            "intent", "precision", "recall", "gold"
        )?;
        for (intent, c) in &self.per_intent {
            writeln!(
                f,
                "{:<22}{:>9.1}%{:>9.1}%{:>8}",
                intent.as_str(),
                100.0 * c.precision(),
                100.0 * c.recall(),
                c.true_positive + c.false_negative
            )?;
        }
        writeln!(
            f,
            "{:<22}{:>10}{:>10}{:>8}",
            "slot", "precision", "recall", "F1"
        )?;
        for (slot, c) in &self.per_slot {
            writeln!(
                f,
                "{:<22}{:>9.1}%{:>9.1}%{:>7.1}%",
                slot.as_str(),
                100.0 * c.precision(),
                100.0 * c.recall(),
                100.0 * c.f1()
            )?;
        }
        if !self.confusions.is_empty() {
            writeln!(f, "intent confusions (gold → predicted: instructions)")?;
            for ((gold, predicted), n) in &self.confusions {
                writeln!(f, "  {gold} → {predicted}: {n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::corpus::Slots;

    fn parse(text: &str, intent: Intent, slots: Slots) -> Parse {
        Parse {
            text: text.into(),
            intent,
            confidence: 1.0,
            slots,
        }
    }

    #[test]
    fn counts_intents_and_exact_slot_pairs() {
        let subject = |v: &str| Slots::from([(SlotName::Subject, SlotValue::Text(v.into()))]);
        let gold = vec![
            Example {
                text: "a".into(),
                intent: Intent::GenerateFree,
                slots: subject("猫"),
            },
            Example {
                text: "b".into(),
                intent: Intent::Other,
                slots: Slots::new(),
            },
        ];
        let parses = vec![
            parse("a", Intent::GenerateFree, subject("小猫")),
            parse("b", Intent::GenerateFree, Slots::new()),
        ];
        let report = evaluate(&gold, &parses);
        assert_eq!(report.intent_correct, 1);
        assert!((report.intent_accuracy() - 0.5).abs() < 1e-9);
        assert_eq!(
            report.slots,
            Counts {
                true_positive: 0,
                false_positive: 1,
                false_negative: 1
            }
        );
        let free = &report.per_intent[&Intent::GenerateFree];
        assert!((free.precision() - 0.5).abs() < 1e-9);
        assert!((free.recall() - 1.0).abs() < 1e-9);
        assert_eq!(report.per_intent[&Intent::Other].recall(), 0.0);
        assert_eq!(report.errors.len(), 2);
        assert_eq!(
            report
                .confusions
                .get(&(Intent::Other, Intent::GenerateFree)),
            Some(&1)
        );
        // Both parses say 1.0; one is right: |0.5 - 1.0| in the one bin.
        assert!((report.ece - 0.5).abs() < 1e-9);
    }
}
