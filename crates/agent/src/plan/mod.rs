//! The planner's half of the agent: from a parse to a plan (scene, English prompt, size,
//! sampler settings, LoRA, enhancer, or a question back) and running it.
//!
//! - [`scenes`] and [`scene_file`]: the scenes file (`scenes.toml`) and its settings;
//! - [`prompt`]: the offline prompt writer (lexicon), [`chat_backend`] the chat-server one,
//!   [`llm_writer`] a language model (local or the chat server) rewriting a plan's prompt;
//! - [`sizing`]: the image size for an aspect ratio;
//! - [`planner`]: the plan; [`execute`]: running a plan through the pipelines.

pub mod chat_backend;
pub mod execute;
pub mod llm_writer;
pub mod planner;
pub mod prompt;
pub mod scene_file;
pub mod scenes;
pub mod sizing;
