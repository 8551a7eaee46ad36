//! The language-model prompt writer end to end on the tiny random Qwen2 of
//! tests/fixtures/qwen2_tiny: its answer is not the JSON asked for, so it is refused and the
//! offline writer's prompt stays, with a note that says so.

use std::path::PathBuf;

use huatu_agent::corpus::{SlotValue, Slots};
use huatu_agent::llm_writer::{rewrite_with, PromptModel};
use huatu_agent::planner::{plan, Plan, PlanInputs};
use huatu_agent::prompt::Lexicon;
use huatu_agent::scenes::Scenes;
use huatu_agent::{Intent, Parse, SlotName};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

#[test]
fn an_unusable_answer_falls_back_to_the_offline_prompt() -> anyhow::Result<()> {
    let text = "画一只戴草帽的熊猫，水墨风";
    let mut slots = Slots::new();
    slots.insert(SlotName::Subject, SlotValue::Text("戴草帽的熊猫".into()));
    slots.insert(SlotName::Style, SlotValue::Text("水墨风".into()));
    let parse = Parse {
        text: text.into(),
        intent: Intent::GenerateFree,
        confidence: 0.97,
        slots,
    };
    let scenes = Scenes::builtin()?;
    let Plan::Task(mut task) = plan(&parse, &PlanInputs::default(), &scenes, Lexicon::builtin())
    else {
        anyhow::bail!("a generation should plan a task");
    };
    let offline = (task.prompt.clone(), task.negative_prompt.clone());
    let model = PromptModel::load_local(&fixture("qwen2_tiny"))?;
    rewrite_with(&mut task, text, &model);
    assert_eq!((task.prompt.clone(), task.negative_prompt.clone()), offline);
    let note = task.notes.last().cloned().unwrap_or_default();
    assert!(
        note.contains("gave no usable prompt") && note.contains("offline writer"),
        "{note}"
    );
    Ok(())
}

#[test]
fn a_missing_prompt_model_is_one_clear_error() {
    let message = PromptModel::load_local(&fixture("no_such_model"))
        .err()
        .map(|e| {
            format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    assert!(
        message.contains("prompt model") && message.contains("cannot read"),
        "{message}"
    );
}
