//! `ovdiff`: a change to a container filesystem as an OCI layer tar, fast.
//!
//! Subcommands: `diff` (write the layer), `changes` (list them), `size` (what the change adds),
//! `apply` (unpack a layer onto a directory or into a driver's layer), `demo` (generate,
//! mutate, diff with both differs, verify). Exit codes: 0 ok, 1 diff/apply error (the message
//! names the path and the cause), 2 usage.

mod apply;
mod args;
mod demo;
mod diff;
mod output_file;
mod progress;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad arguments or environment (exit 2).
    Usage(String),
    /// The work failed (exit 1).
    Run(String),
}

impl From<ovdiff::Error> for Failure {
    fn from(e: ovdiff::Error) -> Failure {
        match e {
            // Options the CLI could not check up front are still the user's to fix.
            ovdiff::Error::Options(_) => Failure::Usage(e.to_string()),
            ovdiff::Error::Output(ovdiff::output::OutputError::GzipLevel { .. })
            | ovdiff::Error::Output(ovdiff::output::OutputError::ZstdLevel { .. }) => {
                Failure::Usage(e.to_string())
            }
            other => Failure::Run(other.to_string()),
        }
    }
}

fn main() -> ExitCode {
    raise_nofile_limit();
    let cli = Cli::parse();
    ui::set_quiet(cli.quiet);
    let result = match cli.command {
        Command::Diff(a) => diff::run_diff(a),
        Command::Changes(a) => diff::run_changes(a),
        Command::Apply(a) => apply::run(a),
        Command::Size(a) => diff::run_size(a),
        Command::Demo(a) => demo::run(a),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            eprintln!("ovdiff: error: {msg}");
            eprintln!("Try 'ovdiff --help' for more information.");
            ExitCode::from(2)
        }
        Err(Failure::Run(msg)) => {
            eprintln!("ovdiff: error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (`setrlimit`): the parallel walkers and
/// read-ahead hold a directory fd per level and per worker. Failure is harmless.
fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
}
