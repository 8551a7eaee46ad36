//! One file per subcommand.

pub mod caption;
pub mod chat;
pub mod dataset;
pub mod dataset_pairs;
pub mod db;
pub mod edit;
pub mod edit_pair;
pub mod embed;
pub mod enhance;
pub mod generate;
pub mod lora;
pub mod parse;
pub mod preprocess;
pub mod serve;
pub mod train;
pub mod train_lora;
