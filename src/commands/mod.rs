//! What each CLI subcommand does. `src/main.rs` parses arguments and calls these.

pub mod demo;
pub mod drift;
pub mod run;
pub mod score;
pub mod train;
