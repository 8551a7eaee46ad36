//! The label set of INTENTS.md: intents, slot names and the character BIO tags, each
//! with exactly one spelling shared by the CLI, JSON and logs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// One intent per instruction (INTENTS.md, "Intents"). The spellings live in the
/// `strum` attributes; serde, `Display` and `FromStr` all use them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(into = "&'static str", try_from = "String")]
#[strum(parse_err_ty = AgentError, parse_err_fn = unknown_intent)]
pub enum Intent {
    #[strum(serialize = "generate.poster")]
    GeneratePoster,
    #[strum(serialize = "generate.portrait")]
    GeneratePortrait,
    #[strum(serialize = "generate.background")]
    GenerateBackground,
    #[strum(serialize = "generate.icon")]
    GenerateIcon,
    #[strum(serialize = "generate.free")]
    GenerateFree,
    #[strum(serialize = "edit.reference")]
    EditReference,
    #[strum(serialize = "edit.instruct")]
    EditInstruct,
    #[strum(serialize = "other")]
    Other,
}

impl Intent {
    pub const ALL: [Intent; 8] = [
        Intent::GeneratePoster,
        Intent::GeneratePortrait,
        Intent::GenerateBackground,
        Intent::GenerateIcon,
        Intent::GenerateFree,
        Intent::EditReference,
        Intent::EditInstruct,
        Intent::Other,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn index(self) -> usize {
        Intent::ALL.iter().position(|&i| i == self).unwrap_or(0)
    }

    pub fn is_generate(self) -> bool {
        matches!(
            self,
            Intent::GeneratePoster
                | Intent::GeneratePortrait
                | Intent::GenerateBackground
                | Intent::GenerateIcon
                | Intent::GenerateFree
        )
    }

    pub fn is_edit(self) -> bool {
        matches!(self, Intent::EditReference | Intent::EditInstruct)
    }

    /// Whether INTENTS.md lets this intent carry `slot` ("used by" column).
    pub fn allows(self, slot: SlotName) -> bool {
        match slot {
            SlotName::Subject | SlotName::Aspect | SlotName::Count => self.is_generate(),
            SlotName::Style => self.is_generate() || self == Intent::EditInstruct,
            SlotName::Target | SlotName::Content => self.is_edit(),
            SlotName::Region => self == Intent::EditReference,
        }
    }
}

/// A slot of INTENTS.md, "Slots", spelled in lower case.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(into = "&'static str", try_from = "String")]
#[strum(serialize_all = "lowercase")]
#[strum(parse_err_ty = AgentError, parse_err_fn = unknown_slot)]
pub enum SlotName {
    Subject,
    Style,
    Aspect,
    Count,
    Target,
    Content,
    Region,
}

impl SlotName {
    pub const ALL: [SlotName; 7] = [
        SlotName::Subject,
        SlotName::Style,
        SlotName::Aspect,
        SlotName::Count,
        SlotName::Target,
        SlotName::Content,
        SlotName::Region,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn index(self) -> usize {
        SlotName::ALL.iter().position(|&s| s == self).unwrap_or(0)
    }
}

/// A character's BIO tag. Index 0 is `O`; slot k has `B` at 1 + 2k and `I` at 2 + 2k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    Outside,
    Begin(SlotName),
    Inside(SlotName),
}

impl Tag {
    pub const COUNT: usize = 1 + 2 * SlotName::ALL.len();

    pub fn index(self) -> usize {
        match self {
            Tag::Outside => 0,
            Tag::Begin(slot) => 1 + 2 * slot.index(),
            Tag::Inside(slot) => 2 + 2 * slot.index(),
        }
    }

    pub fn from_index(index: usize) -> Option<Tag> {
        if index == 0 {
            return Some(Tag::Outside);
        }
        let slot = *SlotName::ALL.get((index - 1) / 2)?;
        Some(if index % 2 == 1 {
            Tag::Begin(slot)
        } else {
            Tag::Inside(slot)
        })
    }

    /// All tags in index order.
    pub fn all() -> Vec<Tag> {
        (0..Tag::COUNT).filter_map(Tag::from_index).collect()
    }
}

fn unknown_intent(text: &str) -> AgentError {
    AgentError::UnknownIntent(text.to_string())
}

fn unknown_slot(text: &str) -> AgentError {
    AgentError::UnknownSlot(text.to_string())
}

// Deserialising (`try_from = "String"`) reports an unknown spelling with the known ones.
impl TryFrom<String> for Intent {
    type Error = AgentError;

    fn try_from(text: String) -> Result<Self, AgentError> {
        text.parse()
    }
}

impl TryFrom<String> for SlotName {
    type Error = AgentError;

    fn try_from(text: String) -> Result<Self, AgentError> {
        text.parse()
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::Outside => f.write_str("O"),
            Tag::Begin(slot) => write!(f, "B-{slot}"),
            Tag::Inside(slot) => write!(f, "I-{slot}"),
        }
    }
}

impl FromStr for Tag {
    type Err = AgentError;

    fn from_str(text: &str) -> Result<Self, AgentError> {
        let unknown = || AgentError::UnknownTag(text.to_string());
        if text == "O" {
            return Ok(Tag::Outside);
        }
        let (prefix, slot) = text.split_once('-').ok_or_else(unknown)?;
        let slot: SlotName = slot.parse().map_err(|_| unknown())?;
        match prefix {
            "B" => Ok(Tag::Begin(slot)),
            "I" => Ok(Tag::Inside(slot)),
            _ => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip_through_their_spelling_and_json() {
        for intent in Intent::ALL {
            assert_eq!(intent.as_str().parse::<Intent>().ok(), Some(intent));
            let json = serde_json::to_string(&intent).ok();
            assert_eq!(json, Some(format!("\"{}\"", intent.as_str())));
            assert_eq!(Intent::ALL[intent.index()], intent);
        }
        assert!("generate".parse::<Intent>().is_err());
    }

    #[test]
    fn slots_and_tags_round_trip() {
        for slot in SlotName::ALL {
            assert_eq!(slot.as_str().parse::<SlotName>().ok(), Some(slot));
        }
        for (index, tag) in Tag::all().into_iter().enumerate() {
            assert_eq!(tag.index(), index);
            assert_eq!(tag.to_string().parse::<Tag>().ok(), Some(tag));
        }
        assert_eq!(Tag::all().len(), 15);
        assert!(Tag::from_index(Tag::COUNT).is_none());
        assert!("X-subject".parse::<Tag>().is_err());
    }

    #[test]
    fn spellings_are_those_of_intents_md() {
        let json = serde_json::to_string(&Intent::ALL).unwrap_or_default();
        assert_eq!(
            json,
            r#"["generate.poster","generate.portrait","generate.background","generate.icon","generate.free","edit.reference","edit.instruct","other"]"#
        );
        let json = serde_json::to_string(&SlotName::ALL).unwrap_or_default();
        assert_eq!(
            json,
            r#"["subject","style","aspect","count","target","content","region"]"#
        );
        let parsed: Vec<SlotName> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(parsed, SlotName::ALL);
        assert_eq!(Intent::EditInstruct.to_string(), "edit.instruct");
        let error = serde_json::from_str::<Intent>(r#""draw""#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.starts_with("unknown intent `draw`"), "{error}");
    }

    #[test]
    fn slot_permissions_follow_the_contract() {
        assert!(Intent::GeneratePoster.allows(SlotName::Count));
        assert!(!Intent::GeneratePoster.allows(SlotName::Target));
        assert!(Intent::EditInstruct.allows(SlotName::Style));
        assert!(!Intent::EditInstruct.allows(SlotName::Region));
        assert!(Intent::EditReference.allows(SlotName::Region));
        assert!(!Intent::EditReference.allows(SlotName::Style));
        assert!(SlotName::ALL.iter().all(|&s| !Intent::Other.allows(s)));
    }
}
