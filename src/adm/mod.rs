//! rvsadm's language: ipvsadm 1.31's command line, the table it acts on,
//! and its output byte for byte.
//!
//! - [`args`]: argv → [`Command`], with ipvsadm's rules, messages and exit
//!   codes.
//! - [`model`]: the table ([`Model`], serde: the control API's JSON) and
//!   [`Model::apply`], the kernel's side of each command.
//! - [`format`]: `-L` in all its forms, `-L -c`, `--timeout`, `-S`.
//! - [`restore`]: reads `-R`'s rules.
//! - [`run`]: the whole of `rvsadm ARGS` against a model, as a function:
//!   stdout, stderr and the exit code.
//!
//! rvsadm never resolves names (no DNS in the director): addresses and
//! ports are printed numerically with or without `-n`, and must be given
//! numerically (a few well-known port names excepted).

pub mod args;
pub mod error;
pub mod format;
pub mod model;
pub mod restore;

pub use args::{Command, DestSpec, ListFormat, ListRequest, ListWhat, ServiceSpec};
pub use error::AdmError;
pub use model::{Model, Service, ServiceKey};

use std::io::BufRead;

/// What a run of rvsadm printed and its exit code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Output {
    fn printed(stdout: String) -> Output {
        Output {
            stdout,
            ..Output::default()
        }
    }

    fn error(err: AdmError) -> Output {
        Output {
            stdout: String::new(),
            stderr: format!("{}\n", err.message),
            code: err.code,
        }
    }
}

/// `rvsadm ARGV...` (without the program name) against `model`; `stdin` is
/// read only by `-R`.
pub fn run(argv: &[String], model: &mut Model, stdin: impl BufRead) -> Output {
    match args::parse(argv) {
        Err(err) => Output::error(err),
        Ok(Command::Restore) => restore::restore(model, stdin),
        Ok(command) => execute(&command, model),
    }
}

/// Carries out a parsed command: prints for `-L -S -h -v`, changes the
/// model for the others. `-R` needs input: see [`restore::restore`].
pub fn execute(command: &Command, model: &mut Model) -> Output {
    let result = match command {
        Command::Help => Ok(args::usage()),
        Command::Version => Ok(format!("{}\n", args::version())),
        Command::List(request) => format::list(model, request),
        Command::Save => Ok(format::save(model)),
        _ => model.apply(command).map(|()| String::new()),
    };
    match result {
        Ok(stdout) => Output::printed(stdout),
        Err(err) => Output::error(err),
    }
}
