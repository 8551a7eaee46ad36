//! The step-list grammar of `huatu enhance --steps` and the parameter tables behind it.
//!
//! ```text
//! steps  := step ("," step)*
//! step   := name (":" arg)*          e.g. sharpen:amount=0.6:sigma=1.5
//! arg    := key "=" value | value    a bare value sets the step's first parameter
//!                                    ("upscale:x2", "gamma:1.2", "white-balance:white-patch")
//! ```
//! After a comma, a `key=value` with no step name continues the previous step, so
//! `sharpen:amount=0.6,sigma=2,denoise` reads as two steps. Every parameter has a
//! documented default and range; unknown names and values out of range are errors
//! that state the rule.

use crate::error::{ImagingError, Result};

/// What values a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    /// A number in `min..=max`; `integer` ones are rounded-free whole numbers.
    Number { min: f64, max: f64, integer: bool },
    /// One of a few names, stored as its index.
    Choice(&'static [&'static str]),
}

/// One parameter of a step: its name, default, allowed values and meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub default: f64,
    pub kind: ParamKind,
    pub doc: &'static str,
}

impl ParamSpec {
    pub const fn number(
        name: &'static str,
        default: f64,
        min: f64,
        max: f64,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            default,
            kind: ParamKind::Number {
                min,
                max,
                integer: false,
            },
            doc,
        }
    }

    pub const fn integer(
        name: &'static str,
        default: f64,
        min: f64,
        max: f64,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            default,
            kind: ParamKind::Number {
                min,
                max,
                integer: true,
            },
            doc,
        }
    }

    pub const fn choice(
        name: &'static str,
        options: &'static [&'static str],
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            default: 0.0,
            kind: ParamKind::Choice(options),
            doc,
        }
    }

    /// Parses and checks one value for this parameter of `step`.
    pub fn parse(&self, step: &'static str, text: &str) -> Result<f64> {
        match self.kind {
            ParamKind::Choice(options) => options
                .iter()
                .position(|option| *option == text)
                .map(|index| index as f64)
                .ok_or_else(|| ImagingError::UnknownName {
                    what: "parameter value",
                    given: format!("{step}:{}={text}", self.name),
                    known: options.join(", "),
                }),
            ParamKind::Number { min, max, integer } => {
                let trimmed = if self.name == "scale" {
                    text.trim_start_matches(['x', '×'])
                } else {
                    text
                };
                let value: f64 = trimmed.parse().map_err(|_| ImagingError::NotANumber {
                    step,
                    name: self.name.to_string(),
                    value: text.to_string(),
                })?;
                let whole = !integer || value.fract() == 0.0;
                if !value.is_finite() || value < min || value > max || !whole {
                    return Err(ImagingError::OutOfRange {
                        step,
                        name: self.name,
                        value,
                        min,
                        max,
                    });
                }
                Ok(value)
            }
        }
    }

    /// The value as the grammar spells it.
    pub fn format(&self, value: f64) -> String {
        match self.kind {
            ParamKind::Choice(options) => options
                .get(value as usize)
                .copied()
                .unwrap_or("?")
                .to_string(),
            // steps hold f32; its shortest spelling reads back to the same f32
            ParamKind::Number { .. } => format!("{}", value as f32),
        }
    }
}

/// A step as written: its name and its `(key or None, value)` arguments, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStep {
    pub name: String,
    pub args: Vec<(Option<String>, String)>,
}

/// Splits a step list into steps and arguments (the grammar above); names and values
/// are checked later against each step's table.
pub fn split_steps(text: &str) -> Result<Vec<RawStep>> {
    let syntax = |reason: String| ImagingError::StepSyntax {
        text: text.to_string(),
        reason,
    };
    let mut steps: Vec<RawStep> = Vec::new();
    for token in text.split(',').map(str::trim) {
        if token.is_empty() {
            return Err(syntax(
                "empty step (two commas in a row, or a trailing comma)".to_string(),
            ));
        }
        let mut parts = token.split(':').map(str::trim);
        let head = parts.next().unwrap_or_default();
        if let Some((key, value)) = head.split_once('=') {
            // `key=value` after a comma continues the previous step
            let previous = steps
                .last_mut()
                .ok_or_else(|| syntax(format!("{token:?} has no step before it to belong to")))?;
            previous
                .args
                .push((Some(key.trim().to_string()), value.trim().to_string()));
            if parts.next().is_some() {
                return Err(syntax(format!(
                    "{token:?}: a continued parameter cannot be followed by ':'"
                )));
            }
            continue;
        }
        let mut step = RawStep {
            name: head.to_string(),
            args: Vec::new(),
        };
        for arg in parts {
            if arg.is_empty() {
                return Err(syntax(format!("{token:?} has an empty argument")));
            }
            match arg.split_once('=') {
                Some((key, value)) => step
                    .args
                    .push((Some(key.trim().to_string()), value.trim().to_string())),
                None => step.args.push((None, arg.to_string())),
            }
        }
        steps.push(step);
    }
    Ok(steps)
}

/// Resolves a step's arguments against its table: defaults, then the given values.
pub fn resolve_values(
    step: &'static str,
    specs: &[ParamSpec],
    args: &[(Option<String>, String)],
) -> Result<Vec<f64>> {
    let mut values: Vec<f64> = specs.iter().map(|spec| spec.default).collect();
    for (position, (key, text)) in args.iter().enumerate() {
        let index = match key {
            Some(key) => specs.iter().position(|spec| spec.name == key).ok_or_else(|| {
                ImagingError::UnknownParameter {
                    step,
                    name: key.clone(),
                    known: known_names(specs),
                }
            })?,
            None if position == 0 && !specs.is_empty() => 0,
            None => {
                return Err(ImagingError::InvalidStep {
                    step,
                    reason: format!("only the first argument may omit its name; write {text:?} as key=value (keys: {})", known_names(specs)),
                })
            }
        };
        values[index] = specs[index].parse(step, text)?;
    }
    Ok(values)
}

fn known_names(specs: &[ParamSpec]) -> String {
    if specs.is_empty() {
        return "none (this step takes no parameters)".to_string();
    }
    specs
        .iter()
        .map(|spec| spec.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: [ParamSpec; 2] = [
        ParamSpec::number("amount", 0.5, 0.0, 5.0, ""),
        ParamSpec::integer("radius", 0.0, 0.0, 25.0, ""),
    ];

    #[test]
    fn splits_steps_and_continued_parameters() {
        let steps =
            split_steps("denoise, sharpen:amount=0.6,radius=2 ,upscale:x2").unwrap_or_default();
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["denoise", "sharpen", "upscale"]);
        assert_eq!(steps[1].args.len(), 2);
        assert_eq!(steps[2].args, [(None, "x2".to_string())]);
    }

    #[test]
    fn syntax_errors_say_what_is_wrong() {
        for bad in [
            "",
            "denoise,,sharpen",
            "amount=1,denoise",
            "sharpen:",
            "denoise,",
        ] {
            assert!(split_steps(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_are_checked_against_the_table() {
        let args = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((!k.is_empty()).then(|| k.to_string()), v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            resolve_values("sharpen", &SPECS, &[]).ok(),
            Some(vec![0.5, 0.0])
        );
        assert_eq!(
            resolve_values("sharpen", &SPECS, &args(&[("", "2")])).ok(),
            Some(vec![2.0, 0.0])
        );
        let out_of_range = resolve_values("sharpen", &SPECS, &args(&[("amount", "9")]));
        let message = out_of_range
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            message,
            "step sharpen: parameter amount must be between 0 and 5, got 9"
        );
        assert!(resolve_values("sharpen", &SPECS, &args(&[("radius", "1.5")])).is_err());
        assert!(resolve_values("sharpen", &SPECS, &args(&[("amount", "NaN")])).is_err());
        let unknown = resolve_values("sharpen", &SPECS, &args(&[("strength", "1")]));
        let message = unknown.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("known: amount, radius"), "{message}");
        assert!(resolve_values("sharpen", &SPECS, &args(&[("amount", "1"), ("", "2")])).is_err());
    }
}
