//! Parsing the names of imaging's choices (presets, scenarios, fit modes): the spelling
//! comes from each enum's strum derive, the error lists every name.

use strum::VariantArray;

use crate::error::{ImagingError, Result};

/// One of `T`'s names (its strum spelling), or an error that lists them all.
pub(crate) fn parse_name<T>(what: &'static str, text: &str) -> Result<T>
where
    T: Copy + VariantArray + Into<&'static str>,
{
    T::VARIANTS
        .iter()
        .copied()
        .find(|value| Into::<&'static str>::into(*value) == text)
        .ok_or_else(|| ImagingError::UnknownName {
            what,
            given: text.to_string(),
            known: T::VARIANTS
                .iter()
                .map(|value| Into::<&'static str>::into(*value))
                .collect::<Vec<_>>()
                .join(", "),
        })
}
