//! huatu's agent: understands an instruction (intent + slots, INTENTS.md) with a
//! BERT-style joint model, and plans the image work: scene, English prompt, pipeline
//! settings, LoRA and enhancer, or a question back.

pub mod bert;
pub mod chat_backend;
pub mod checkpoint;
pub mod corpus;
pub mod edit_instructions;
pub mod error;
pub mod eval;
pub mod execute;
pub mod joint;
pub mod labels;
pub mod model;
pub mod planner;
pub mod prompt;
pub mod scene_file;
pub mod scenes;
pub mod sizing;
pub mod text;
pub mod train;
pub mod vocab;

pub use error::{AgentError, Result};
pub use labels::{Intent, SlotName, Tag};
pub use model::{IntentModel, Parse};
pub use planner::{plan, Plan, PlanInputs, TaskPlan};
