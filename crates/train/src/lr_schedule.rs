//! Learning-rate schedules as diffusers' `get_scheduler` builds them (torch `LambdaLR`
//! factors of the base rate, evaluated at the number of optimizer steps already taken).

use std::fmt;
use std::str::FromStr;

/// `--lr-scheduler`: one spelling for the CLI, logs and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrScheduleKind {
    Constant,
    ConstantWithWarmup,
    Cosine,
    Linear,
}

impl LrScheduleKind {
    pub const ALL: [LrScheduleKind; 4] = [
        Self::Constant,
        Self::ConstantWithWarmup,
        Self::Cosine,
        Self::Linear,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::ConstantWithWarmup => "constant_with_warmup",
            Self::Cosine => "cosine",
            Self::Linear => "linear",
        }
    }
}

impl fmt::Display for LrScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LrScheduleKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|kind| kind.as_str()).collect();
                format!(
                    "unknown learning-rate schedule `{text}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// A schedule over a run of `total_steps` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub kind: LrScheduleKind,
    pub base_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl LrSchedule {
    /// The rate for the update after `step` completed updates (0 for the first), as
    /// transformers' `get_*_schedule_with_warmup` lambdas (cosine with half a cycle).
    pub fn lr_at(&self, step: usize) -> f64 {
        let warmup = self.warmup_steps;
        let in_warmup = step < warmup;
        let warm = if in_warmup {
            step as f64 / warmup.max(1) as f64
        } else {
            1.0
        };
        let factor = match self.kind {
            LrScheduleKind::Constant => 1.0,
            LrScheduleKind::ConstantWithWarmup => warm,
            LrScheduleKind::Linear if in_warmup => warm,
            LrScheduleKind::Linear => {
                let remaining = self.total_steps.saturating_sub(step) as f64;
                (remaining / self.total_steps.saturating_sub(warmup).max(1) as f64).max(0.0)
            }
            LrScheduleKind::Cosine if in_warmup => warm,
            LrScheduleKind::Cosine => {
                let progress =
                    (step - warmup) as f64 / self.total_steps.saturating_sub(warmup).max(1) as f64;
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        };
        self.base_lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in LrScheduleKind::ALL {
            assert_eq!(kind.as_str().parse::<LrScheduleKind>(), Ok(kind));
        }
        assert_eq!(
            "constant-with-warmup".parse::<LrScheduleKind>(),
            Ok(LrScheduleKind::ConstantWithWarmup)
        );
        assert!("step".parse::<LrScheduleKind>().is_err());
    }

    #[test]
    fn schedules_match_transformers_lambdas() {
        let schedule = |kind| LrSchedule {
            kind,
            base_lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert_eq!(schedule(LrScheduleKind::Constant).lr_at(0), 1.0);
        assert_eq!(schedule(LrScheduleKind::ConstantWithWarmup).lr_at(5), 0.5);
        assert_eq!(schedule(LrScheduleKind::ConstantWithWarmup).lr_at(50), 1.0);
        assert_eq!(schedule(LrScheduleKind::Linear).lr_at(5), 0.5);
        assert!((schedule(LrScheduleKind::Linear).lr_at(60) - 0.5).abs() < 1e-12);
        assert!((schedule(LrScheduleKind::Cosine).lr_at(60) - 0.5).abs() < 1e-12);
        assert!(schedule(LrScheduleKind::Cosine).lr_at(110).abs() < 1e-12);
    }
}
