//! One file per subcommand.

pub mod caption;
pub mod chat;
pub mod dataset;
pub mod dataset_pairs;
pub mod db;
pub mod edit;
pub mod edit_pair;
pub mod embed;
pub mod generate;
pub mod lora;
pub mod serve;
pub mod parse;
pub mod train;
pub mod train_lora;
pub mod enhance;
pub mod preprocess;
