//! Scoring prompts against a concept set: for each instruction, the English concepts its
//! prompt must carry (any of several alternatives, a case-insensitive substring of the
//! positive prompt), the words the positive prompt must not carry, and the things that
//! must reach the negative prompt. `huatu eval prompts` prints the report.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::error::{AgentError, Result};

/// One line of a concept set (`data/prompts/*.jsonl`).
#[derive(Debug, Clone, Deserialize)]
pub struct ConceptCase {
    pub text: String,
    #[serde(default)]
    pub intent: Option<String>,
    /// Each concept: alternatives, any one of which carries it.
    #[serde(default)]
    pub concepts: Vec<Vec<String>>,
    /// Words the positive prompt must not hold.
    #[serde(default)]
    pub forbidden: Vec<String>,
    /// Each negative: alternatives, one of which must be in the negative prompt.
    #[serde(default)]
    pub negatives: Vec<Vec<String>>,
}

pub fn read_cases(path: &Path) -> Result<Vec<ConceptCase>> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut cases = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let case = serde_json::from_str(line).map_err(|error| AgentError::BadLine {
            path: path.to_path_buf(),
            line: index + 1,
            message: error.to_string(),
        })?;
        cases.push(case);
    }
    Ok(cases)
}

/// What one prompt missed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseScore {
    pub concepts: usize,
    pub carried: usize,
    pub missed: Vec<String>,
    pub forbidden_hits: Vec<String>,
    pub negatives: usize,
    pub negatives_found: usize,
    pub negatives_missed: Vec<String>,
}

fn contains(haystack: &str, needle: &str) -> bool {
    haystack.contains(&needle.to_lowercase())
}

pub fn score_case(case: &ConceptCase, prompt: &str, negative_prompt: &str) -> CaseScore {
    let prompt = prompt.to_lowercase();
    let negative = negative_prompt.to_lowercase();
    let mut score = CaseScore {
        concepts: case.concepts.len(),
        negatives: case.negatives.len(),
        ..CaseScore::default()
    };
    for concept in &case.concepts {
        if concept.iter().any(|alt| contains(&prompt, alt)) {
            score.carried += 1;
        } else {
            score.missed.push(concept.join("|"));
        }
    }
    score.forbidden_hits = case
        .forbidden
        .iter()
        .filter(|word| contains(&prompt, word))
        .cloned()
        .collect();
    for negative_concept in &case.negatives {
        if negative_concept.iter().any(|alt| contains(&negative, alt)) {
            score.negatives_found += 1;
        } else {
            score.negatives_missed.push(negative_concept.join("|"));
        }
    }
    score
}

/// Totals over a set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConceptReport {
    pub cases: usize,
    pub concepts: usize,
    pub carried: usize,
    pub forbidden_hits: usize,
    pub cases_with_forbidden: usize,
    pub negatives: usize,
    pub negatives_found: usize,
    /// Cases whose predicted intent differs from the labelled one.
    pub intent_mismatches: usize,
    /// Cases answered with a question or a refusal (empty prompts, scored as misses).
    pub unplanned: usize,
}

impl ConceptReport {
    pub fn add(&mut self, score: &CaseScore) {
        self.cases += 1;
        self.concepts += score.concepts;
        self.carried += score.carried;
        self.forbidden_hits += score.forbidden_hits.len();
        self.cases_with_forbidden += usize::from(!score.forbidden_hits.is_empty());
        self.negatives += score.negatives;
        self.negatives_found += score.negatives_found;
    }

    pub fn coverage(&self) -> f64 {
        self.carried as f64 / self.concepts.max(1) as f64
    }
}

impl fmt::Display for ConceptReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "instructions: {}", self.cases)?;
        writeln!(
            f,
            "concept coverage: {:.3} ({} of {})",
            self.coverage(),
            self.carried,
            self.concepts
        )?;
        writeln!(
            f,
            "forbidden words in prompts: {} (in {} instructions)",
            self.forbidden_hits, self.cases_with_forbidden
        )?;
        writeln!(
            f,
            "negatives in the negative prompt: {} of {}",
            self.negatives_found, self.negatives
        )?;
        writeln!(
            f,
            "intent differs from the label: {}",
            self.intent_mismatches
        )?;
        writeln!(
            f,
            "answered with a question or refusal (no prompt): {}",
            self.unplanned
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concepts_forbidden_words_and_negatives_are_case_insensitive_substrings() {
        let case = ConceptCase {
            text: "画一只猫，不要狗".into(),
            intent: None,
            concepts: vec![vec!["cat".into(), "kitten".into()], vec!["Moon".into()]],
            forbidden: vec!["festive".into()],
            negatives: vec![vec!["dog".into()]],
        };
        let score = score_case(&case, "a Kitten, festive poster", "dogs, blurry");
        assert_eq!((score.carried, score.concepts), (1, 2));
        assert_eq!(score.missed, vec!["Moon".to_string()]);
        assert_eq!(score.forbidden_hits, vec!["festive".to_string()]);
        assert_eq!((score.negatives_found, score.negatives), (1, 1));
        let mut report = ConceptReport::default();
        report.add(&score);
        assert!((report.coverage() - 0.5).abs() < 1e-9);
    }
}
