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
/// `eval prompts`: concept coverage of the planned prompts.
pub mod eval_prompts;
pub mod generate;
pub mod lora;
pub mod parse;
pub mod plan;
pub mod preprocess;
pub mod serve;
pub mod train;
pub mod train_instruct_pix2pix;
pub mod train_lora;
/// Progress, `--log` lines and Ctrl-C for both training commands.
pub mod train_progress;
pub mod worker;
