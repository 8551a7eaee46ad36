//! Unit tests of `ClipTokenizer` on a hand-made vocabulary: the 256 byte symbols, the same
//! with `</w>`, a few merges, then `<|startoftext|>` (525) and `<|endoftext|>` (526).
//! Expected ids were produced by transformers 5.23 `CLIPTokenizer` on the same files.

use super::*;
use crate::tokenizer::byte_level_bpe::bytes_to_unicode;

const MERGES: &[(&str, &str)] = &[
    ("c", "a"),
    ("ca", "t</w>"),
    ("p", "h"),
    ("ph", "o"),
    ("t", "o</w>"),
    ("pho", "to</w>"),
    ("o", "f</w>"),
    ("d", "o"),
    ("do", "g</w>"),
    ("!", "!"),
    ("!!", "!</w>"),
    ("t", "h"),
    ("th", "e</w>"),
];

const BOS: u32 = 525;
const EOS: u32 = 526;

/// vocab.json and merges.txt contents, ids in the order GPT-2's byte table lists symbols.
fn vocab_and_merges() -> (String, String) {
    let table = bytes_to_unicode();
    let printable = |byte: &u8| (*byte as u32) == table[usize::from(*byte)] as u32;
    let mut bytes: Vec<u8> = (0..=255u8).filter(printable).collect();
    bytes.extend((0..=255u8).filter(|byte| !printable(byte)));
    let symbols: Vec<String> = bytes
        .iter()
        .map(|byte| table[usize::from(*byte)].to_string())
        .collect();
    let mut tokens = symbols.clone();
    tokens.extend(symbols.iter().map(|symbol| format!("{symbol}</w>")));
    tokens.extend(MERGES.iter().map(|(left, right)| format!("{left}{right}")));
    tokens.push("<|startoftext|>".into());
    tokens.push("<|endoftext|>".into());
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, token)| (token, id.into()))
        .collect();
    let mut merges = String::from("#version: 0.2\n");
    for (left, right) in MERGES {
        merges.push_str(&format!("{left} {right}\n"));
    }
    (serde_json::Value::Object(vocab).to_string(), merges)
}

fn tokenizer(pad_token: &str) -> ClipTokenizer {
    let (vocab, merges) = vocab_and_merges();
    ClipTokenizer::from_vocab_and_merges(&vocab, &merges, pad_token).unwrap()
}

#[test]
fn encodes_like_transformers() {
    let first = tokenizer("<|endoftext|>");
    let second = tokenizer("!");
    let cases: &[(&str, &[u32], &[u32])] = &[
        (
            "a photo of a cat",
            &[BOS, 320, 517, 518, 320, 513, EOS],
            &[BOS, 320, 517, 518, 320, 513, EOS],
        ),
        // Case and whitespace runs are normalised; the second tokenizer's pad `!` is special.
        (
            "A  PHOTO\tof\na Cat!!!",
            &[BOS, 320, 517, 518, 320, 513, 522, EOS],
            &[BOS, 320, 517, 518, 320, 513, 0, 0, 0, EOS],
        ),
        (
            "cat's photo",
            &[BOS, 513, 6, 338, 517, EOS],
            &[BOS, 513, 6, 338, 517, EOS],
        ),
        // Digits one by one.
        (
            "the dog 2024",
            &[BOS, 524, 520, 273, 271, 273, 275, EOS],
            &[BOS, 524, 520, 273, 271, 273, 275, EOS],
        ),
        (
            "x<|endoftext|>y",
            &[BOS, 343, EOS, 344, EOS],
            &[BOS, 343, EOS, 344, EOS],
        ),
        // Not special once lower-cased: GPT-2's pattern splits it as `<|`, `endoftext`, `|>`.
        (
            "<|ENDOFTEXT|>",
            &[BOS, 27, 347, 68, 77, 519, 69, 83, 68, 87, 339, 91, 285, EOS],
            &[BOS, 27, 347, 68, 77, 519, 69, 83, 68, 87, 339, 91, 285, EOS],
        ),
        // Per-character lower-casing: a final Σ becomes σ, not ς.
        (
            "ΟΔΟΣ",
            &[BOS, 138, 123, 138, 112, 138, 123, 139, 481, EOS],
            &[BOS, 138, 123, 138, 112, 138, 123, 139, 481, EOS],
        ),
        // CJK characters stay together in one word.
        (
            "中文",
            &[BOS, 160, 116, 255, 162, 244, 485, EOS],
            &[BOS, 160, 116, 255, 162, 244, 485, EOS],
        ),
        (
            "café",
            &[BOS, 512, 69, 127, 358, EOS],
            &[BOS, 512, 69, 127, 358, EOS],
        ),
        // NFC composes e + combining acute.
        (
            "cafe\u{301}",
            &[BOS, 512, 69, 127, 358, EOS],
            &[BOS, 512, 69, 127, 358, EOS],
        ),
        ("  ", &[BOS, EOS], &[BOS, EOS]),
        ("", &[BOS, EOS], &[BOS, EOS]),
        (
            "the!dog",
            &[BOS, 524, 256, 520, EOS],
            &[BOS, 524, 0, 520, EOS],
        ),
    ];
    for (text, expected, expected_2) in cases {
        assert_eq!(first.encode(text), *expected, "tokenizer 1, {text:?}");
        assert_eq!(second.encode(text), *expected_2, "tokenizer 2, {text:?}");
        // The cache must not change anything.
        assert_eq!(
            first.encode(text),
            *expected,
            "tokenizer 1 cached, {text:?}"
        );
    }
}

#[test]
fn special_token_ids() {
    let first = tokenizer("<|endoftext|>");
    assert_eq!(
        (
            first.bos_token_id(),
            first.eos_token_id(),
            first.pad_token_id()
        ),
        (BOS, EOS, EOS)
    );
    assert_eq!(first.model_max_length(), 77);
    let second = tokenizer("!");
    assert_eq!(second.pad_token_id(), 0);
    assert!(ClipTokenizer::from_vocab_and_merges(&vocab_and_merges().0, "", "<pad>").is_err());
}

#[test]
fn padding_and_truncation_keep_eos() {
    let second = tokenizer("!");
    let padded = second.encode_padded("a cat");
    assert_eq!(padded.len(), 77);
    assert_eq!(&padded[..4], &[BOS, 320, 513, EOS]);
    assert!(padded[4..].iter().all(|&id| id == 0));

    let long = "cat ".repeat(100);
    let padded = second.encode_padded(&long);
    assert_eq!(padded.len(), 77);
    assert_eq!(padded[0], BOS);
    assert!(padded[1..76].iter().all(|&id| id == 513));
    assert_eq!(padded[76], EOS);
    assert_eq!(second.encode(&long).len(), 102);
}

#[test]
fn windows_of_75_tokens() {
    let first = tokenizer("<|endoftext|>");
    let empty = first.encode_windows("");
    assert_eq!(empty, vec![first.empty_window()]);
    assert_eq!(&empty[0][..3], &[BOS, EOS, EOS]);

    let short = first.encode_windows("a photo of a cat");
    assert_eq!(short, vec![first.encode_padded("a photo of a cat")]);

    // 160 content tokens: 75 + 75 + 10.
    let windows = first.encode_windows(&"dog ".repeat(160));
    assert_eq!(windows.len(), 3);
    for window in &windows {
        assert_eq!(window.len(), 77);
        assert_eq!(window[0], BOS);
    }
    assert!(windows[0][1..76].iter().all(|&id| id == 520));
    assert_eq!(windows[0][76], EOS);
    assert!(windows[2][1..11].iter().all(|&id| id == 520));
    assert_eq!(windows[2][11], EOS);
    assert!(windows[2][12..].iter().all(|&id| id == EOS));

    // Exactly 75 tokens is still one window.
    assert_eq!(first.encode_windows(&"dog ".repeat(75)).len(), 1);
    assert_eq!(first.encode_windows(&"dog ".repeat(76)).len(), 2);

    let mut padded = short.clone();
    first.pad_windows(&mut padded, 3);
    assert_eq!(padded.len(), 3);
    assert_eq!(padded[1], first.empty_window());
    first.pad_windows(&mut padded, 1);
    assert_eq!(padded.len(), 3);
}

#[test]
fn loads_a_transformers_folder() {
    let dir = std::env::temp_dir().join(format!("huatu-clip-tokenizer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = ClipTokenizer::from_dir(&dir).unwrap_err();
    assert!(missing.to_string().contains("vocab.json"), "{missing}");

    let (vocab, merges) = vocab_and_merges();
    std::fs::write(dir.join("vocab.json"), vocab).unwrap();
    let missing = ClipTokenizer::from_dir(&dir).unwrap_err();
    assert!(missing.to_string().contains("merges.txt"), "{missing}");

    std::fs::write(dir.join("merges.txt"), merges).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"bos_token": {"__type": "AddedToken", "content": "<|startoftext|>"}, "pad_token": "<|endoftext|>", "model_max_length": 77}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("special_tokens_map.json"),
        r#"{"pad_token": {"content": "!", "lstrip": false}}"#,
    )
    .unwrap();
    let loaded = ClipTokenizer::from_dir(&dir).unwrap();
    assert_eq!(loaded.pad_token_id(), 0);
    assert_eq!(loaded.encode("the!dog"), vec![BOS, 524, 0, 520, EOS]);

    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"model_max_length": 1000000000000000019884624838656}"#,
    )
    .unwrap();
    let error = ClipTokenizer::from_dir(&dir).unwrap_err();
    assert!(error.to_string().contains("model_max_length"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loads_a_tokenizer_json_folder() {
    // transformers 5 `save_pretrained` writes tokenizer.json and tokenizer_config.json only.
    let dir =
        std::env::temp_dir().join(format!("huatu-clip-tokenizer-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (vocab, _) = vocab_and_merges();
    let vocab: serde_json::Value = serde_json::from_str(&vocab).unwrap();
    let merges: Vec<serde_json::Value> = MERGES
        .iter()
        .enumerate()
        // Both spellings tokenizers has used: "left right" and [left, right].
        .map(|(index, (left, right))| {
            if index % 2 == 0 {
                serde_json::json!([left, right])
            } else {
                serde_json::json!(format!("{left} {right}"))
            }
        })
        .collect();
    let document = serde_json::json!({
        "added_tokens": [{"id": 0, "content": "!", "special": true}, {"id": 525, "content": "<|startoftext|>"}],
        "model": {"type": "BPE", "end_of_word_suffix": "</w>", "vocab": vocab, "merges": merges},
    });
    std::fs::write(dir.join("tokenizer.json"), document.to_string()).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"pad_token": "!", "model_max_length": 77}"#,
    )
    .unwrap();
    let loaded = ClipTokenizer::from_dir(&dir).unwrap();
    assert_eq!(
        loaded.encode("A  PHOTO\tof\na Cat!!!"),
        vec![BOS, 320, 517, 518, 320, 513, 0, 0, 0, EOS]
    );

    let mut wrong = document.clone();
    wrong["model"]["end_of_word_suffix"] = serde_json::Value::Null;
    std::fs::write(dir.join("tokenizer.json"), wrong.to_string()).unwrap();
    let error = ClipTokenizer::from_dir(&dir).unwrap_err();
    assert!(error.to_string().contains("tokenizer.json"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
