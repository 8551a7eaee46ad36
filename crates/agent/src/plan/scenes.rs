//! Scenes: per business scenario its intent, LoRA file and scale, trigger word, prompt
//! template, negative prompt, size, sampler settings and enhancer preset.
//!
//! The shipped default is `crates/agent/scenes.toml`, compiled in; a user file
//! overrides scenes of the same name and adds new ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use huatu_diffusion::schedulers::SchedulerKind;

use crate::error::{AgentError, Result};
use crate::labels::Intent;
use crate::plan::scene_file::{PromptTable, SceneFile, SceneTable};

pub const DEFAULT_SCENES: &str = include_str!("../../scenes.toml");

#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub name: String,
    pub intent: Intent,
    /// Relative to the LoRA folder; `None` runs the base model.
    pub lora: Option<PathBuf>,
    pub lora_scale: f64,
    pub trigger: String,
    pub prompt: String,
    pub negative_prompt: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance: f64,
    pub scheduler: SchedulerKind,
    /// Enhancer preset; `None` for "none".
    pub enhancer: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenes {
    scenes: BTreeMap<String, Scene>,
    /// `[prompt]`: which prompt writer to use.
    pub prompt_backend: PromptBackend,
}

/// `[prompt]` settings of an OpenAI-compatible chat server (`chat_backend` uses them): where the server is and which model to ask.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatBackend {
    /// e.g. `http://127.0.0.1:8080/v1`
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

/// The prompt writer: the built-in lexicon (default, offline) or a chat server.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptBackend {
    Lexicon,
    Chat(ChatBackend),
}

impl Scenes {
    /// The shipped scenes.
    pub fn builtin() -> Result<Self> {
        Self::parse(DEFAULT_SCENES, Path::new("<built-in scenes.toml>"))
    }

    /// The shipped scenes with `path` laid over them.
    pub fn with_overrides(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut scenes = Self::builtin()?;
        let user = Self::parse(&text, path)?;
        scenes.scenes.extend(user.scenes);
        if user.prompt_backend != PromptBackend::Lexicon {
            scenes.prompt_backend = user.prompt_backend;
        }
        Ok(scenes)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let file = SceneFile::parse(text).map_err(|source| AgentError::SceneFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let bad = |message: String| AgentError::Scenes {
            path: path.to_path_buf(),
            message,
        };
        let prompt_backend = match file.prompt {
            Some(table) => backend_from(table).map_err(|m| bad(format!("[prompt]: {m}")))?,
            None => PromptBackend::Lexicon,
        };
        let mut scenes = BTreeMap::new();
        for (name, table) in file.scenes {
            let scene =
                scene_from(&name, table).map_err(|m| bad(format!("[scenes.{name}]: {m}")))?;
            scenes.insert(name, scene);
        }
        Ok(Self {
            scenes,
            prompt_backend,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Scene> {
        self.scenes.get(name)
    }

    /// The scene serving `intent`: the one named after it if any (poster for
    /// generate.poster, edit-instruct for edit.instruct), else the first by name.
    pub fn for_intent(&self, intent: Intent) -> Option<&Scene> {
        let own_name = intent
            .as_str()
            .trim_start_matches("generate.")
            .replace('.', "-");
        self.scenes
            .get(&own_name)
            .filter(|s| s.intent == intent)
            .or_else(|| self.scenes.values().find(|s| s.intent == intent))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scene> {
        self.scenes.values()
    }
}

fn backend_from(table: PromptTable) -> std::result::Result<PromptBackend, String> {
    match table.backend.as_deref() {
        None | Some("lexicon") => Ok(PromptBackend::Lexicon),
        Some("openai") => {
            let base_url = table
                .base_url
                .ok_or("`base_url` is missing (e.g. http://127.0.0.1:8080/v1)")?;
            let model = table.model.ok_or("`model` is missing")?;
            let api_key = match (table.api_key, table.api_key_env) {
                (Some(key), _) => Some(key),
                (None, Some(variable)) => std::env::var(&variable).ok(),
                (None, None) => None,
            };
            let timeout = match table.timeout_s {
                Some(n) if n > 0 => n as u64,
                Some(_) => return Err("`timeout_s` must be a positive integer".into()),
                None => 60,
            };
            Ok(PromptBackend::Chat(ChatBackend {
                base_url,
                model,
                api_key,
                timeout: Duration::from_secs(timeout),
            }))
        }
        Some(other) => Err(format!("backend must be lexicon or openai, got {other}")),
    }
}

fn scene_from(name: &str, table: SceneTable) -> std::result::Result<Scene, String> {
    let integer = |key: &str, value: i64, min: i64, max: i64| {
        if (min..=max).contains(&value) {
            Ok(value as usize)
        } else {
            Err(format!(
                "`{key}` must be between {min} and {max}, got {value}"
            ))
        }
    };
    let width = integer("width", table.width, 64, 4096)?;
    let height = integer("height", table.height, 64, 4096)?;
    if width % 8 != 0 || height % 8 != 0 {
        return Err(format!(
            "width and height must be multiples of 8, got {width}×{height}"
        ));
    }
    let scheduler: SchedulerKind = table.scheduler.parse().map_err(|_| {
        let known: Vec<String> = SchedulerKind::ALL.iter().map(ToString::to_string).collect();
        format!(
            "scheduler must be one of {}, got {}",
            known.join(", "),
            table.scheduler
        )
    })?;
    let guidance = table.guidance;
    let lora_scale = table.lora_scale.unwrap_or(1.0);
    if !(0.0..=30.0).contains(&guidance) || !(-4.0..=4.0).contains(&lora_scale) {
        return Err(format!(
            "guidance must be in [0, 30] and lora_scale in [-4, 4], got {guidance} and {lora_scale}"
        ));
    }
    let lora = table.lora.unwrap_or_default();
    let enhancer = table.enhancer.unwrap_or_default();
    if !enhancer.is_empty() {
        huatu_imaging::enhancer_steps(&enhancer).map_err(|error| error.to_string())?;
    }
    Ok(Scene {
        name: name.to_string(),
        intent: table.intent,
        lora: (!lora.is_empty()).then(|| PathBuf::from(lora)),
        lora_scale,
        trigger: table.trigger.unwrap_or_default(),
        prompt: table.prompt,
        negative_prompt: table.negative_prompt.unwrap_or_default(),
        width,
        height,
        steps: integer("steps", table.steps, 1, 200)?,
        guidance,
        scheduler,
        enhancer: (!enhancer.is_empty() && enhancer != "none").then_some(enhancer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_intent_but_other_has_a_builtin_scene() {
        let scenes = Scenes::builtin().unwrap_or_else(|e| panic!("{e}"));
        for intent in Intent::ALL {
            assert_eq!(
                scenes.for_intent(intent).is_some(),
                intent != Intent::Other,
                "{intent}"
            );
        }
        let poster = scenes
            .get("poster")
            .unwrap_or_else(|| panic!("no poster scene"));
        assert_eq!(
            poster.lora.as_deref(),
            Some(Path::new("poster.safetensors"))
        );
        assert_eq!(poster.trigger, "htposter");
        assert_eq!(scenes.get("free").and_then(|s| s.lora.clone()), None);
    }

    #[test]
    fn a_user_file_overrides_and_adds() {
        let dir = std::env::temp_dir().join(format!("huatu-scenes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("scenes.toml");
        let text = "[scenes.poster]\nintent = \"generate.poster\"\nprompt = \"{subject}\"\nwidth = 512\nheight = 512\nsteps = 4\nguidance = 3\nscheduler = \"ddim\"\n\n[scenes.ink]\nintent = \"generate.free\"\nprompt = \"ink, {subject}\"\nwidth = 768\nheight = 512\nsteps = 20\nguidance = 5.5\nscheduler = \"euler\"\n";
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let scenes = Scenes::with_overrides(&path).unwrap_or_else(|e| panic!("{e}"));
        let poster = scenes.get("poster").unwrap_or_else(|| panic!("poster"));
        assert_eq!(
            (poster.width, poster.steps, poster.lora.is_none()),
            (512, 4, true)
        );
        assert!(scenes.get("ink").is_some());
        // generate.free still prefers the scene named `free`.
        assert_eq!(
            scenes
                .for_intent(Intent::GenerateFree)
                .map(|s| s.name.as_str()),
            Some("free")
        );
    }

    #[test]
    fn invalid_scenes_say_what_is_wrong() {
        let check = |text: &str, needle: &str| {
            let result = Scenes::parse(text, Path::new("s.toml"));
            let mut error = String::new();
            let mut cause: Option<&dyn std::error::Error> = result.as_ref().err().map(|e| e as _);
            while let Some(current) = cause {
                error.push_str(&format!("{current}: "));
                cause = current.source();
            }
            assert!(error.contains(needle), "{error:?} lacks {needle:?}");
        };
        let base =
            "[scenes.x]\nintent = \"generate.free\"\nprompt = \"p\"\nsteps = 20\nguidance = 5\n";
        check(
            &format!("{base}width = 1000\nheight = 1001\nscheduler = \"euler\"\n"),
            "multiples of 8, got 1000×1001",
        );
        check(
            &format!("{base}width = 512\nheight = 512\nscheduler = \"plms\"\n"),
            "scheduler must be one of",
        );
        check(
            &format!("{base}width = 512\nheight = 512\nscheduler = \"euler\"\ncolour = \"red\"\n"),
            "unknown field `colour`",
        );
        check(
            &format!(
                "{base}width = 512\nheight = 512\nscheduler = \"euler\"\npipeline = \"sdxl\"\n"
            ),
            "unknown field `pipeline`",
        );
        check("[scenes.x]\nintent = \"draw\"\n", "unknown intent `draw`");
        check("[other]\n", "unknown field `other`");
    }
}
