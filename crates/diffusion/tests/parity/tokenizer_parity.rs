//! Parity of `ClipTokenizer` with transformers' `CLIPTokenizer` on the tiny SDXL
//! tokenizers (tests/fixtures/sdxl_tiny/tokenizer{,_2}); expected ids were written by
//! scripts/fixtures/sdxl_tiny.py into tests/fixtures/sdxl_tiny_reference/tokenizer.json.
//! Exact equality: token ids leave no tolerance.

use huatu_diffusion::tokenizer::ClipTokenizer;

use crate::common::fixture;

#[derive(Debug, serde::Deserialize)]
struct Case {
    text: String,
    /// `tokenizer(text).input_ids`
    ids: Vec<u32>,
    ids_2: Vec<u32>,
    /// `tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids`
    padded: Vec<u32>,
    padded_2: Vec<u32>,
}

fn cases() -> anyhow::Result<Vec<Case>> {
    let path = fixture("sdxl_tiny_reference/tokenizer.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn tokenizers() -> anyhow::Result<(ClipTokenizer, ClipTokenizer)> {
    Ok((
        ClipTokenizer::from_dir(&fixture("sdxl_tiny/tokenizer"))?,
        ClipTokenizer::from_dir(&fixture("sdxl_tiny/tokenizer_2"))?,
    ))
}

// mirrors transformers CLIPTokenizer.__call__ (models/clip/tokenization_clip.py)
#[test]
fn ids_match_transformers() -> anyhow::Result<()> {
    let (tokenizer, tokenizer_2) = tokenizers()?;
    let cases = cases()?;
    assert!(
        cases.len() > 10,
        "expected the fixture's ~40 strings, found {}",
        cases.len()
    );
    let mut mismatches = Vec::new();
    for case in &cases {
        let text = case.text.as_str();
        let checks = [
            ("ids", tokenizer.encode(text), &case.ids),
            ("ids_2", tokenizer_2.encode(text), &case.ids_2),
            ("padded", tokenizer.encode_padded(text), &case.padded),
            ("padded_2", tokenizer_2.encode_padded(text), &case.padded_2),
        ];
        for (what, actual, expected) in checks {
            if &actual != expected {
                mismatches.push(format!(
                    "{what} of {text:?}:\n  actual   {actual:?}\n  expected {expected:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    Ok(())
}

#[test]
fn special_tokens_match_the_fixture() -> anyhow::Result<()> {
    let (tokenizer, tokenizer_2) = tokenizers()?;
    let empty = cases()?.into_iter().find(|case| case.text.is_empty());
    let empty = empty.ok_or_else(|| anyhow::anyhow!("the fixture has no empty string"))?;
    assert_eq!(
        empty.ids,
        vec![tokenizer.bos_token_id(), tokenizer.eos_token_id()]
    );
    assert_eq!(
        empty.ids_2,
        vec![tokenizer_2.bos_token_id(), tokenizer_2.eos_token_id()]
    );
    // SDXL: the first tokenizer pads with eos, the second with "!".
    assert_eq!(empty.padded[2], tokenizer.pad_token_id());
    assert_eq!(tokenizer.pad_token_id(), tokenizer.eos_token_id());
    assert_eq!(empty.padded_2[2], tokenizer_2.pad_token_id());
    assert_eq!(
        Some(tokenizer_2.pad_token_id()),
        tokenizer_2.token_to_id("!")
    );
    assert_eq!(
        (tokenizer.model_max_length(), tokenizer_2.model_max_length()),
        (77, 77)
    );
    Ok(())
}

/// Windows of the over-long prompt: the first is diffusers' truncated encoding, and the
/// windows' contents put back together are the untruncated ids.
#[test]
fn long_prompt_windows() -> anyhow::Result<()> {
    let (tokenizer, tokenizer_2) = tokenizers()?;
    let cases = cases()?;
    let long = cases.iter().find(|case| case.ids.len() > 77);
    let long = long.ok_or_else(|| anyhow::anyhow!("the fixture has no prompt over 77 tokens"))?;
    for (tokenizer, ids, padded) in [
        (&tokenizer, &long.ids, &long.padded),
        (&tokenizer_2, &long.ids_2, &long.padded_2),
    ] {
        let windows = tokenizer.encode_windows(&long.text);
        assert_eq!(windows.len(), (ids.len() - 2).div_ceil(75));
        assert_eq!(&windows[0], padded);
        let mut content = Vec::new();
        for window in &windows {
            assert_eq!(window.len(), 77);
            assert_eq!(window[0], tokenizer.bos_token_id());
            let end = window[1..]
                .iter()
                .position(|&id| id == tokenizer.eos_token_id())
                .map(|index| index + 1);
            let end = end.ok_or_else(|| anyhow::anyhow!("window without eos"))?;
            // Content is never eos here, so the first eos closes the window.
            content.extend_from_slice(&window[1..end]);
            assert!(window[end + 1..]
                .iter()
                .all(|&id| id == tokenizer.pad_token_id()));
        }
        assert_eq!(content, ids[1..ids.len() - 1]);
    }
    Ok(())
}
