//! The planner's half of the agent: from a parse to a plan (scene, English prompt, size,
//! sampler settings, LoRA, enhancer, or a question back) and running it.
//!
//! - [`scenes`] and [`scene_file`]: the scenes file (`scenes.toml`) and its settings;
//! - [`prompt`]: the domain lexicon and the template filling; [`offline_writer`] the
//!   offline writer over [`segment`] (jieba), [`dictionary`] (CC-CEDICT), [`negation`],
//!   [`word_classes`] and [`purpose`]; [`template`] fills a scene's template;
//!   [`prompt_cache`] keeps written prompts; [`chat_backend`] the chat-server writer;
//!   [`llm_writer`] a language model (local or the chat server) rewriting a plan's prompt;
//! - [`sizing`]: the image size for an aspect ratio;
//! - [`planner`]: the plan; [`execute`]: running a plan through the pipelines;
//! - [`prompt_eval`]: scoring prompts against a concept set.

pub mod chat_backend;
pub mod dictionary;
pub mod execute;
pub mod llm_writer;
pub mod negation;
pub mod offline_writer;
pub mod planner;
pub mod prompt;
pub mod prompt_cache;
pub mod prompt_eval;
pub mod purpose;
pub mod scene_file;
pub mod scenes;
pub mod segment;
pub mod sizing;
pub mod template;
pub mod word_classes;
