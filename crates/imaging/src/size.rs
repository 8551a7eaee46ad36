//! An image size in pixels and its one text form, `WIDTHxHEIGHT` (`x`, `X` or `×`
//! between), shared by the CLI, the server, the agent and the presets.

use std::fmt;
use std::str::FromStr;

use crate::error::{ImagingError, Result};

/// The largest side `Size::from_str` accepts, to keep a typo from allocating gigabytes.
pub const MAX_SIDE: u32 = 16_384;

/// A width and height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for Size {
    type Err = ImagingError;
    /// Parses `WIDTHxHEIGHT` (also `×` or `X` as separator), each side in 1..=MAX_SIDE.
    fn from_str(text: &str) -> Result<Self> {
        let error = || ImagingError::InvalidSize {
            text: text.to_string(),
            max: MAX_SIDE,
        };
        let (width, height) = text.trim().split_once(['x', 'X', '×']).ok_or_else(error)?;
        let width: u32 = width.trim().parse().map_err(|_| error())?;
        let height: u32 = height.trim().parse().map_err(|_| error())?;
        if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
            return Err(error());
        }
        Ok(Size::new(width, height))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_reject_nonsense() {
        assert_eq!("1024x768".parse::<Size>().ok(), Some(Size::new(1024, 768)));
        assert_eq!("64×32".parse::<Size>().ok(), Some(Size::new(64, 32)));
        assert_eq!(" 64X32 ".parse::<Size>().ok(), Some(Size::new(64, 32)));
        for bad in ["0x10", "10", "axb", "10x", "100000x10", "-1x5", "8x8x8"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
        assert_eq!(
            Size::new(3, 4).to_string().parse::<Size>().ok(),
            Some(Size::new(3, 4))
        );
    }
}
