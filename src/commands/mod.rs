//! What each CLI subcommand does, one file each; `src/main.rs` parses ([`crate::cli`]) and calls
//! [`execute`]. Commands return an [`Outcome`] (the exit status) or a [`CommandError`]; none
//! exits the process itself, so every command cleans up on every path.
//!
//! Exit codes (documented in the README): 0 success; 1 an error (message on stderr);
//! 2 a usage error (bad flag or value, from clap); 3 `drift --fail-on` reached; 4 `score`
//! could not score lines; 5 the engine stopped because the broker refused an output for good
//! (restarting will not help until the cause is fixed).

pub mod demo;
pub mod drift;
pub mod evaluate;
pub mod generate;
pub mod import;
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
    /// `score`: no line could be scored, or some could not with `--fail-on-error`: exit 4.
    LinesFailed,
}

impl Outcome {
    /// The process exit status.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::DriftFound => 3,
            Outcome::LinesFailed => 4,
        }
    }
}

/// A progress bar on stderr for a long-running command: drawn only when stderr is a terminal,
/// so pipes and logs stay clean. `len`: the total, when known (else a spinner).
pub(crate) fn progress(len: Option<u64>, template: &str) -> indicatif::ProgressBar {
    let target = if std::io::IsTerminal::is_terminal(&std::io::stderr()) { indicatif::ProgressDrawTarget::stderr() } else { indicatif::ProgressDrawTarget::hidden() };
    let bar = match len {
        Some(n) => indicatif::ProgressBar::with_draw_target(Some(n), target),
        None => indicatif::ProgressBar::with_draw_target(None, target),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
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
    /// `import` failed.
    #[error(transparent)]
    Import(#[from] import::ImportCommandError),
    /// `evaluate` failed.
    #[error(transparent)]
    Evaluate(#[from] evaluate::EvaluateError),
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

impl CommandError {
    /// The process exit status for this error: 5 when the broker refused an output for good,
    /// else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Run(run::RunError::Engine(e)) => e.exit_code(),
            _ => 1,
        }
    }
}

/// Runs the parsed command. Offline commands log through `tracing` on stderr (warnings by
/// default, `RUST_LOG` to change); `run` and `demo` set up logging from their configuration.
pub fn execute(command: Command) -> Result<Outcome, CommandError> {
    if !matches!(command, Command::Run(_) | Command::Demo(_)) {
        crate::observe::logs::init(&crate::config::LogConfig { level: "warn".into(), ..Default::default() });
    }
    Ok(match command {
        Command::Generate(a) => generate::execute(a)?,
        Command::Train(a) => train::execute(a)?,
        Command::Import(a) => import::execute(a)?,
        Command::Evaluate(a) => evaluate::execute(a)?,
        Command::Score(a) => score::execute(a)?,
        Command::Drift(a) => drift::execute(a)?,
        Command::Run(a) => run::execute(a)?,
        Command::Demo(a) => demo::execute(a)?,
        Command::Produce(a) => produce::execute(a)?,
        Command::Model(a) => model::execute(a)?,
    })
}
