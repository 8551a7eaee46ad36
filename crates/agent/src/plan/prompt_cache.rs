//! Written prompts kept by (instruction, writer, model and scene), so planning the same
//! instruction again costs a map look-up: an in-memory least-recently-used cache shared by
//! every planner in the process (the CLI's `plan --jsonl`, the server's agent jobs).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::plan::prompt::WrittenPrompt;

/// Everything a written prompt depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PromptKey {
    pub instruction: String,
    /// The writer (`offline`) and its model or dictionary version.
    pub writer: String,
    pub model: String,
    /// The intent, slots, scene template and trigger, as one string.
    pub context: String,
}

/// How many prompts the process keeps.
pub const CAPACITY: usize = 4096;

struct Lru {
    entries: HashMap<PromptKey, (u64, WrittenPrompt)>,
    clock: u64,
    hits: u64,
    misses: u64,
}

fn cache() -> &'static Mutex<Lru> {
    static CACHE: OnceLock<Mutex<Lru>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(Lru {
            entries: HashMap::new(),
            clock: 0,
            hits: 0,
            misses: 0,
        })
    })
}

/// The cached prompt for `key`, or `write()`'s, which is then kept (the least recently
/// used entry goes when the cache is full).
pub fn cached(key: PromptKey, write: impl FnOnce() -> WrittenPrompt) -> WrittenPrompt {
    if let Some(prompt) = lookup(&key) {
        return prompt;
    }
    // Written outside the lock: another thread may write the same prompt meanwhile.
    let prompt = write();
    store(key, prompt.clone());
    prompt
}

/// The prompt kept for `key`, counted as a hit or a miss.
pub fn lookup(key: &PromptKey) -> Option<WrittenPrompt> {
    let mut lru = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    lru.clock += 1;
    let now = lru.clock;
    if let Some((used, prompt)) = lru.entries.get_mut(key) {
        *used = now;
        let prompt = prompt.clone();
        lru.hits += 1;
        return Some(prompt);
    }
    lru.misses += 1;
    None
}

/// Keeps `prompt` for `key` (the least recently used entry goes when the cache is full).
pub fn store(key: PromptKey, prompt: WrittenPrompt) {
    let mut lru = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if lru.entries.len() >= CAPACITY && !lru.entries.contains_key(&key) {
        let oldest = lru
            .entries
            .iter()
            .min_by_key(|(_, (used, _))| *used)
            .map(|(key, _)| key.clone());
        if let Some(oldest) = oldest {
            lru.entries.remove(&oldest);
        }
    }
    let now = lru.clock;
    lru.entries.insert(key, (now, prompt));
}

/// (hits, misses) since the process started.
pub fn stats() -> (u64, u64) {
    let lru = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (lru.hits, lru.misses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_request_is_served_from_the_cache() {
        let key = PromptKey {
            instruction: "画一只猫 (cache test)".into(),
            writer: "test".into(),
            model: "none".into(),
            context: String::new(),
        };
        let written = || WrittenPrompt {
            prompt: "cat".into(),
            negative_prompt: String::new(),
            untranslated: Vec::new(),
        };
        let first = cached(key.clone(), written);
        let second = cached(key, || panic!("written twice"));
        assert_eq!(first, second);
        assert!(stats().0 >= 1);
    }
}
