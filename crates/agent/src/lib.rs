//! huatu's agent: understands an instruction (intent + slots, INTENTS.md) with a
//! BERT-style joint model (`intent`), and plans the image work: scene, English prompt,
//! pipeline settings, LoRA and enhancer, or a question back.

pub mod chat_backend;
pub mod edit_instructions;
pub mod error;
pub mod execute;
pub mod intent;
pub mod planner;
pub mod prompt;
pub mod scene_file;
pub mod scenes;
pub mod sizing;

// The intent model's modules under their former crate-root paths.
pub use intent::inference as model;
pub use intent::{bert, checkpoint, corpus, eval, joint, labels, text, train, vocab};

pub use error::{AgentError, Result};
pub use intent::inference::{IntentModel, Parse};
pub use intent::labels::{Intent, SlotName, Tag};
pub use planner::{plan, Plan, PlanInputs, TaskPlan};
