//! Presets: named chains of enhancer steps, and the recommended preset for each
//! business scenario of DESIGN.md part 1 (poster, portrait, background, icon, free)
//! plus edits. Presets are classical only: the upscale step needs weights the user
//! supplies, so it is added explicitly (`--steps`, or a preset followed by `--upscale`).

use std::str::FromStr;

use strum::{IntoStaticStr, VariantArray};

use super::{Step, StepKind};
use crate::error::{ImagingError, Result};
use crate::names::parse_name;

/// A named chain of enhancer steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "kebab-case")]
pub enum Preset {
    None,
    Clean,
    Crisp,
    Vivid,
    Portrait,
    Scenery,
    Icon,
}

/// The scenarios huatu generates for (the agent's scene names), plus edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "kebab-case")]
pub enum Scenario {
    Poster,
    Portrait,
    Background,
    Icon,
    Free,
    Edit,
}

impl FromStr for Preset {
    type Err = ImagingError;
    fn from_str(text: &str) -> Result<Self> {
        parse_name("preset", text)
    }
}

impl FromStr for Scenario {
    type Err = ImagingError;
    fn from_str(text: &str) -> Result<Self> {
        parse_name("scenario", text)
    }
}

impl Preset {
    pub const ALL: &'static [Preset] = Preset::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The chain in the `--steps` syntax.
    pub fn definition(self) -> &'static str {
        match self {
            Preset::None => "",
            // light noise removal only, for anything
            Preset::Clean => "denoise:sigma_color=0.05:sigma_space=1.5",
            // fine detail
            Preset::Crisp => "sharpen:amount=0.6:sigma=1",
            // posters and greetings: noise out first (CLAHE and sharpening would amplify it),
            // then neutral white, local contrast, livelier colour
            Preset::Vivid => "denoise:sigma_color=0.04:sigma_space=1.5,white-balance:strength=0.5,contrast:clip_limit=1.5,vibrance:0.3,sharpen:amount=0.4:threshold=0.01",
            // skin: smooth gently, spare vivid tones, sharpen only real edges
            Preset::Portrait => "denoise:sigma_color=0.05:sigma_space=2,vibrance:0.15,sharpen:amount=0.3:sigma=1.5:threshold=0.02",
            // backgrounds and landscapes: depth through local contrast
            Preset::Scenery => "contrast:clip_limit=1.5,saturation:1.1,sharpen:amount=0.3:sigma=1.5",
            // flat graphics: crisp edges and clean colour
            Preset::Icon => "sharpen:amount=0.8:sigma=0.8,saturation:1.15",
        }
    }

    /// The preset's steps.
    pub fn steps(self) -> Result<Vec<Step>> {
        match self.definition() {
            "" => Ok(Vec::new()),
            definition => Step::parse_list(definition),
        }
    }
}

impl Scenario {
    pub const ALL: &'static [Scenario] = Scenario::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The preset recommended for results of this scenario. Edits get none: the user's
    /// original should change only where the edit asked.
    pub fn recommended_preset(self) -> Preset {
        match self {
            Scenario::Poster => Preset::Vivid,
            Scenario::Portrait => Preset::Portrait,
            Scenario::Background => Preset::Scenery,
            Scenario::Icon => Preset::Icon,
            Scenario::Free => Preset::Clean,
            Scenario::Edit => Preset::None,
        }
    }
}

/// The steps an enhancer name stands for: a preset (`vivid`), a scenario standing for its
/// recommended preset (`poster`), or a step list (`denoise,sharpen:amount=0.6,upscale:x2`).
pub fn enhancer_steps(name: &str) -> Result<Vec<Step>> {
    if let Ok(preset) = name.parse::<Preset>() {
        return preset.steps();
    }
    if let Ok(scenario) = name.parse::<Scenario>() {
        return scenario.recommended_preset().steps();
    }
    Step::parse_list(name).map_err(|error| ImagingError::UnknownEnhancer {
        name: name.to_string(),
        reason: error.to_string(),
    })
}

/// Whether the enhancer runs Real-ESRGAN (and so needs its weights).
pub fn enhancer_upscales(name: &str) -> bool {
    enhancer_steps(name)
        .is_ok_and(|steps| steps.iter().any(|step| step.kind() == StepKind::Upscale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhancers_are_presets_scenarios_or_step_lists() {
        assert!(enhancer_steps("vivid").is_ok_and(|steps| !steps.is_empty()));
        assert!(enhancer_steps("poster").is_ok_and(|steps| !steps.is_empty()));
        assert!(enhancer_steps("none").is_ok_and(|steps| steps.is_empty()));
        assert!(enhancer_upscales("denoise,upscale:x2"));
        assert!(!enhancer_upscales("poster"));
        let error = enhancer_steps("sparkle")
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("neither an enhancer preset"), "{error}");
    }

    #[test]
    fn names_round_trip() {
        for preset in Preset::ALL {
            assert_eq!(preset.as_str().parse::<Preset>().ok(), Some(*preset));
        }
        for scenario in Scenario::ALL {
            assert_eq!(
                scenario.to_string().parse::<Scenario>().ok(),
                Some(*scenario)
            );
        }
        assert!("poster".parse::<Preset>().is_err());
    }

    #[test]
    fn every_preset_parses_and_none_is_empty() {
        for preset in Preset::ALL {
            let steps = preset.steps();
            assert!(steps.is_ok(), "{preset}: {steps:?}");
            let steps = steps.unwrap_or_default();
            assert_eq!(steps.is_empty(), *preset == Preset::None, "{preset}");
            assert!(steps.iter().all(|step| step.kind() != StepKind::Upscale));
        }
    }

    #[test]
    fn every_scenario_has_a_recommendation() {
        assert_eq!(Scenario::Poster.recommended_preset(), Preset::Vivid);
        assert_eq!(Scenario::Edit.recommended_preset(), Preset::None);
        for scenario in Scenario::ALL {
            assert!(scenario.recommended_preset().steps().is_ok());
        }
    }
}
