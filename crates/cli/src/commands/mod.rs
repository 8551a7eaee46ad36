//! One file per subcommand.

pub mod generate;
pub mod lora;
pub mod enhance;
pub mod preprocess;
