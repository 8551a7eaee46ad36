//! One file per subcommand.

pub mod generate;
pub mod lora;
