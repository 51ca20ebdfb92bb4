//! What each CLI subcommand does, one file each; `src/main.rs` parses ([`crate::cli`]) and calls
//! [`execute`]. Commands return an [`Outcome`] (the exit status) or a [`CommandError`]; none
//! exits the process itself, so every command cleans up on every path.
//!
//! Exit codes (documented in the README): 0 success; 1 an error (message on stderr);
//! 2 a usage error (bad flag or value, from clap); 3 `drift --fail-on` reached.

pub mod demo;
pub mod drift;
pub mod generate;
pub mod model;
pub mod produce;
pub mod run;
pub mod score;
pub mod train;

use thiserror::Error;

use crate::cli::Command;

/// How a command that did its work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// `drift --fail-on LEVEL` and the report reached LEVEL: exit 3.
    DriftFound,
}

impl Outcome {
    /// The process exit status.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::DriftFound => 3,
        }
    }
}

/// Why a command failed (exit 1). Each variant is the command's own error.
#[derive(Debug, Error)]
pub enum CommandError {
    /// `generate` failed.
    #[error(transparent)]
    Generate(#[from] generate::GenerateError),
    /// `train` failed.
    #[error(transparent)]
    Train(#[from] train::TrainCommandError),
    /// `score` failed.
    #[error(transparent)]
    Score(#[from] score::ScoreCommandError),
    /// `drift` failed.
    #[error(transparent)]
    Drift(#[from] drift::DriftCommandError),
    /// `run` failed.
    #[error(transparent)]
    Run(#[from] run::RunError),
    /// `demo` or `produce` failed.
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    /// `model` failed.
    #[error(transparent)]
    Model(#[from] model::ModelCommandError),
}

/// Runs the parsed command.
pub fn execute(command: Command) -> Result<Outcome, CommandError> {
    Ok(match command {
        Command::Generate(a) => generate::execute(a)?,
        Command::Train(a) => train::execute(a)?,
        Command::Score(a) => score::execute(a)?,
        Command::Drift(a) => drift::execute(a)?,
        Command::Run(a) => run::execute(a)?,
        Command::Demo(a) => demo::execute(a)?,
        Command::Produce(a) => produce::execute(a)?,
        Command::Model(a) => model::execute(a)?,
    })
}
