//! The agent crate's integration tests, one test binary (link time on two cores): the
//! intent model (encoder parity with transformers, training, save/load, the committed
//! model on dev examples), the planner and the language-model prompt writer.

mod intent_model;
mod llm_writer;
mod planner;
