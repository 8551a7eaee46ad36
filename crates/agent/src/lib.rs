//! huatu's agent: understands an instruction (intent + slots, INTENTS.md) with a
//! BERT-style joint model (`intent`), and plans the image work (`plan`): scene, English
//! prompt, pipeline settings, LoRA and enhancer, or a question back.

pub mod edit_instructions;
pub mod error;
pub mod intent;
pub mod plan;

// The intent model's modules under their former crate-root paths.
pub use intent::inference as model;
pub use intent::{
    bert, calibration, checkpoint, corpus, crf, decode, eval, joint, labels, segment, text, train,
    tuning, vocab,
};
// The planner's modules under their former crate-root paths.
pub use plan::{
    chat_backend, execute, llm_writer, planner, prompt, prompt_eval, scene_file, scenes, sizing,
};

pub use error::{AgentError, Result};
pub use intent::inference::{IntentModel, Parse};
pub use intent::labels::{Intent, SlotName, Tag};
pub use plan::planner::{plan, Plan, PlanInputs, TaskPlan};
