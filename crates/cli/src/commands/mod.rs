//! One file per subcommand.

pub mod generate;
