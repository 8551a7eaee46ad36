//! The planner's half of the agent: from a parse to a plan (scene, English prompt, size,
//! sampler settings, LoRA, enhancer, or a question back) and running it.
//!
//! - [`scenes`] and [`scene_file`]: the scenes file (`scenes.toml`) and its settings;
//! - [`prompt`]: the offline prompt writer (lexicon), [`chat_backend`] the chat-server one;
//! - [`sizing`]: the image size for an aspect ratio;
//! - [`planner`]: the plan; [`execute`]: running a plan through the pipelines;
//! - [`prompt_eval`]: scoring prompts against a concept set.

pub mod chat_backend;
pub mod execute;
pub mod planner;
pub mod prompt;
pub mod prompt_eval;
pub mod scene_file;
pub mod scenes;
pub mod sizing;
