//! Planner tests: every intent, missing inputs, a missing LoRA file, user scenes.

use std::path::PathBuf;

use huatu_agent::corpus::{SlotValue, Slots};
use huatu_agent::planner::{
    plan, PipelineKind, Plan, PlanInputs, ASK_CLARIFY, ASK_CONDITION, ASK_EDIT, ASK_IMAGE,
    ASK_SUBJECT, REFUSAL,
};
use huatu_agent::prompt::Lexicon;
use huatu_agent::scenes::Scenes;
use huatu_agent::{Intent, Parse, SlotName};

fn parse(text: &str, intent: Intent, slots: &[(SlotName, &str)]) -> Parse {
    let slots: Slots = slots
        .iter()
        .map(|(slot, value)| {
            let value = match value.parse::<u32>() {
                Ok(n) if *slot == SlotName::Count => SlotValue::Count(n),
                _ => SlotValue::Text(value.to_string()),
            };
            (*slot, value)
        })
        .collect();
    Parse {
        text: text.into(),
        intent,
        confidence: 0.97,
        slots,
    }
}

fn lora_dir(with_poster: bool) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "huatu-planner-{}-{with_poster}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    if with_poster {
        std::fs::write(dir.join("poster.safetensors"), b"stand-in")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    dir
}

fn run(parse: &Parse, inputs: &PlanInputs) -> Plan {
    let scenes = Scenes::builtin().unwrap_or_else(|e| panic!("{e}"));
    plan(parse, inputs, &scenes, Lexicon::builtin())
}

fn task(plan: Plan) -> Box<huatu_agent::TaskPlan> {
    match plan {
        Plan::Task(task) => task,
        other => panic!("expected a task, got {other}"),
    }
}

#[test]
fn poster_with_its_lora_follows_the_design_example() {
    let inputs = PlanInputs {
        lora_dir: lora_dir(true),
        ..Default::default()
    };
    let p = parse(
        "请帮我生成一张元宵祝福图",
        Intent::GeneratePoster,
        &[(SlotName::Subject, "元宵祝福")],
    );
    let task = task(run(&p, &inputs));
    assert_eq!(task.scene, "poster");
    assert_eq!(task.pipeline, PipelineKind::TextToImage);
    let lora = task.lora.as_ref().unwrap_or_else(|| panic!("no LoRA"));
    assert_eq!(lora.path, inputs.lora_dir.join("poster.safetensors"));
    assert_eq!(lora.trigger, "htposter");
    assert!(
        task.prompt.starts_with("htposter, Lantern Festival"),
        "{}",
        task.prompt
    );
    assert_eq!((task.width, task.height, task.num_images), (832, 1216, 1));
    assert_eq!(task.enhancer.as_deref(), Some("poster"));
    assert!(task.notes.is_empty(), "{:?}", task.notes);
    let shown = Plan::Task(task).to_string();
    assert!(shown.contains("text2img (LoRA"), "{shown}");
    assert!(shown.contains("enhancer: poster"), "{shown}");
}

#[test]
fn a_missing_lora_file_runs_the_base_model_and_says_so() {
    let inputs = PlanInputs {
        lora_dir: lora_dir(false),
        ..Default::default()
    };
    let p = parse(
        "做个国庆海报，横版，来三张",
        Intent::GeneratePoster,
        &[
            (SlotName::Subject, "国庆"),
            (SlotName::Aspect, "横版"),
            (SlotName::Count, "3"),
        ],
    );
    let task = task(run(&p, &inputs));
    assert!(task.lora.is_none());
    assert!(!task.prompt.contains("htposter"), "{}", task.prompt);
    assert!(
        task.notes
            .iter()
            .any(|n| n.contains("not found: running on the base model")),
        "{:?}",
        task.notes
    );
    assert_eq!((task.width, task.height, task.num_images), (1216, 832, 3));
}

#[test]
fn every_generate_intent_gets_its_scene() {
    let inputs = PlanInputs {
        lora_dir: lora_dir(false),
        ..Default::default()
    };
    let cases = [
        (
            Intent::GeneratePortrait,
            "portrait",
            "portrait of girl, wearing hanfu",
        ),
        (Intent::GenerateBackground, "background", "starry night sky"),
        (Intent::GenerateIcon, "icon", "icon of shopping cart"),
        (Intent::GenerateFree, "free", "cat, on the moon"),
    ];
    let subjects = ["穿汉服的女孩", "星空", "购物车", "在月球上的猫"];
    for ((intent, scene, needle), subject) in cases.into_iter().zip(subjects) {
        let task = task(run(
            &parse(subject, intent, &[(SlotName::Subject, subject)]),
            &inputs,
        ));
        assert_eq!(task.scene, scene);
        assert!(task.prompt.contains(needle), "{intent}: {}", task.prompt);
        assert_eq!(task.pipeline, PipelineKind::TextToImage);
    }
}

#[test]
fn edits_need_their_images() {
    let reference = parse(
        "把这个logo放到图片右下角",
        Intent::EditReference,
        &[(SlotName::Content, "logo"), (SlotName::Region, "右下角")],
    );
    let instruct = parse(
        "把天空换成晚霞",
        Intent::EditInstruct,
        &[(SlotName::Target, "天空"), (SlotName::Content, "晚霞")],
    );
    assert_eq!(
        run(&reference, &PlanInputs::default()),
        Plan::Question(ASK_IMAGE.into())
    );
    assert_eq!(
        run(&instruct, &PlanInputs::default()),
        Plan::Question(ASK_IMAGE.into())
    );
    let with_image = PlanInputs {
        image: Some("photo.png".into()),
        ..Default::default()
    };
    assert_eq!(
        run(&reference, &with_image),
        Plan::Question(ASK_CONDITION.into())
    );

    let both = PlanInputs {
        condition_image: Some("logo.png".into()),
        ..with_image.clone()
    };
    let task_reference = task(run(&reference, &both));
    assert_eq!(task_reference.pipeline, PipelineKind::ControlNetInpaint);
    assert_eq!(task_reference.region.as_deref(), Some("右下角"));
    assert_eq!(
        task_reference.condition_image,
        Some(PathBuf::from("logo.png"))
    );

    let task_instruct = task(run(&instruct, &with_image));
    assert_eq!(task_instruct.pipeline, PipelineKind::InstructPix2Pix);
    assert_eq!(task_instruct.prompt, "turn the sky into sunset glow");
}

#[test]
fn other_is_refused_politely_and_vague_requests_are_asked_about() {
    assert_eq!(
        run(
            &parse("今天天气怎么样", Intent::Other, &[]),
            &PlanInputs::default()
        ),
        Plan::Refusal(REFUSAL.into())
    );
    assert!(REFUSAL.contains("海报") && REFUSAL.contains("图标"));
    assert_eq!(
        run(
            &parse("画一个", Intent::GenerateFree, &[]),
            &PlanInputs::default()
        ),
        Plan::Question(ASK_SUBJECT.into())
    );
    let mut unsure = parse(
        "嗯那个图",
        Intent::GenerateFree,
        &[(SlotName::Subject, "图")],
    );
    unsure.confidence = 0.2;
    assert!(matches!(
        run(&unsure, &PlanInputs::default()),
        Plan::Question(_)
    ));
}

#[test]
fn low_confidence_or_a_missing_required_slot_asks_instead_of_guessing() {
    // An unsure `other` is asked about, not refused: it may be an edit worded oddly.
    let mut unsure_other = parse("图里这个能不能弄一下", Intent::Other, &[]);
    unsure_other.confidence = 0.45;
    assert_eq!(
        run(&unsure_other, &PlanInputs::default()),
        Plan::Question(ASK_CLARIFY.into())
    );
    unsure_other.confidence = 0.9;
    assert_eq!(
        run(&unsure_other, &PlanInputs::default()),
        Plan::Refusal(REFUSAL.into())
    );
    let with_image = PlanInputs {
        image: Some("photo.png".into()),
        ..Default::default()
    };
    // Nothing to change named.
    assert_eq!(
        run(
            &parse("帮我改一下这张图", Intent::EditInstruct, &[]),
            &with_image
        ),
        Plan::Question(ASK_EDIT.into())
    );
    // A style alone is enough for an edit.
    let restyle = parse(
        "改成水彩风格",
        Intent::EditInstruct,
        &[(SlotName::Style, "水彩")],
    );
    assert!(matches!(run(&restyle, &with_image), Plan::Task(_)));
    // A poster with no theme at all.
    assert_eq!(
        run(
            &parse("做张海报", Intent::GeneratePoster, &[]),
            &PlanInputs::default()
        ),
        Plan::Question(ASK_SUBJECT.into())
    );
}

#[test]
fn counts_are_capped_and_unknown_words_reported() {
    let p = parse(
        "来二十张龘㸚猫",
        Intent::GenerateFree,
        &[(SlotName::Subject, "龘㸚猫"), (SlotName::Count, "20")],
    );
    let task = task(run(&p, &PlanInputs::default()));
    assert_eq!(task.num_images, huatu_agent::planner::MAX_IMAGES);
    assert!(
        task.notes
            .iter()
            .any(|n| n.contains("龘") && n.contains("㸚")),
        "{:?}",
        task.notes
    );
    assert!(!task.prompt.contains('龘'));
    assert!(task.prompt.contains("cat"), "{}", task.prompt);
}

#[test]
fn pipeline_kinds_round_trip() {
    for kind in PipelineKind::ALL {
        assert_eq!(kind.as_str().parse::<PipelineKind>().ok(), Some(kind));
        let json = serde_json::to_string(&kind).unwrap_or_default();
        assert_eq!(json, format!("\"{kind}\""));
        assert_eq!(serde_json::from_str::<PipelineKind>(&json).ok(), Some(kind));
    }
    let refusal = "img2img"
        .parse::<PipelineKind>()
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        refusal.as_deref(),
        Some("unknown pipeline `img2img` (known: text2img, controlnet-inpaint, instruct-pix2pix)")
    );
    assert!(serde_json::from_str::<PipelineKind>("\"img2img\"").is_err());
}

// The chat-completions backend against a real HTTP server on 127.0.0.1.
#[test]
fn chat_backend_asks_a_local_server() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        let mut reader = BufReader::new(stream);
        let mut head = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("{e}"));
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
            head.push(line);
        }
        let mut body = vec![0u8; length];
        reader
            .read_exact(&mut body)
            .unwrap_or_else(|e| panic!("{e}"));
        let reply = r#"{"choices":[{"message":{"role":"assistant","content":"  htposter, Lantern Festival greeting poster, red lanterns  "}}]}"#;
        // Chunked, as llama.cpp and vLLM answer.
        let chunked = format!("{:x}\r\n{reply}\r\n0\r\n\r\n", reply.len());
        let mut stream = reader.into_inner();
        let response = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}");
        stream
            .write_all(response.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        (head, String::from_utf8(body).unwrap_or_default())
    });
    let text = format!("[prompt]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"local-qwen\"\napi_key = \"sk-test\"\n");
    let scenes =
        Scenes::parse(&text, std::path::Path::new("user.toml")).unwrap_or_else(|e| panic!("{e}"));
    let huatu_agent::scenes::PromptBackend::Chat(backend) = scenes.prompt_backend else {
        panic!("expected the chat backend");
    };
    let builtin = Scenes::builtin().unwrap_or_else(|e| panic!("{e}"));
    let poster = builtin.get("poster").unwrap_or_else(|| panic!("poster"));
    let slots = Slots::from([(SlotName::Subject, SlotValue::Text("元宵祝福".into()))]);
    let written = backend
        .write_prompt(
            &poster.prompt,
            &poster.negative_prompt,
            "请帮我生成一张元宵祝福图",
            &slots,
            "htposter",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        written.prompt,
        "htposter, Lantern Festival greeting poster, red lanterns"
    );
    assert_eq!(written.negative_prompt, poster.negative_prompt);
    let (head, body) = server.join().unwrap_or_else(|_| panic!("server thread"));
    assert!(
        head[0].starts_with("POST /v1/chat/completions HTTP/1.1"),
        "{head:?}"
    );
    assert!(
        head.iter()
            .any(|h| h.trim() == "Authorization: Bearer sk-test"),
        "{head:?}"
    );
    let request: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(request["model"], "local-qwen");
    assert!(request["messages"][1]["content"]
        .as_str()
        .unwrap_or("")
        .contains("subject: 元宵祝福"));
}

#[test]
fn chat_backend_reports_an_unreachable_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    drop(listener);
    let backend = huatu_agent::chat_backend::ChatBackend {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        model: "m".into(),
        api_key: None,
        timeout: std::time::Duration::from_secs(2),
    };
    let builtin = Scenes::builtin().unwrap_or_else(|e| panic!("{e}"));
    let scene = builtin.get("free").unwrap_or_else(|| panic!("free"));
    let error = backend
        .write_prompt(
            &scene.prompt,
            &scene.negative_prompt,
            "画只猫",
            &Slots::new(),
            "",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.starts_with(&format!("prompt server http://127.0.0.1:{port}/v1")),
        "{error}"
    );
}

#[test]
fn a_repeated_instruction_is_planned_from_the_prompt_cache() {
    let p = parse(
        "做一张招聘海报，蓝色，别放人（缓存测试）",
        Intent::GeneratePoster,
        &[(SlotName::Subject, "招聘")],
    );
    let (hits_before, _) = huatu_agent::plan::prompt_cache::stats();
    let first = task(run(&p, &PlanInputs::default()));
    let second = task(run(&p, &PlanInputs::default()));
    let (hits_after, _) = huatu_agent::plan::prompt_cache::stats();
    assert_eq!(first.prompt, second.prompt);
    assert!(hits_after > hits_before);
    assert!(
        first.prompt.contains("recruitment poster"),
        "{}",
        first.prompt
    );
    assert!(
        first.negative_prompt.starts_with("people, person"),
        "{}",
        first.negative_prompt
    );
}
