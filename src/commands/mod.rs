//! What each CLI subcommand does. `src/main.rs` parses arguments and calls these.

pub mod score;
pub mod train;
