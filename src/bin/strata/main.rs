//! `strata`: look into a strata cache from the shell — a DiskStore data directory or a Redis
//! server — and move its entries between them with dump files. See `strata --help`.
//!
//! Files: `args.rs` (the command line), `source.rs` (raw entries of a directory or of Redis; `redis_source.rs` for Redis),
//! `commands.rs` (one function per subcommand), `dumpfile.rs` (the dump file format),
//! `output.rs` (text and JSON rendering, progress bars; `session_view.rs` for session records), `fail.rs` (errors and exit codes).

mod args;
mod commands;
mod dumpfile;
mod fail;
mod output;
#[cfg(feature = "redis")]
mod redis_source;
#[cfg(feature = "sessions")]
mod session_view;
mod source;

/// The byte mutator the decoder tests share (tests/support/mutate.rs).
#[cfg(test)]
#[path = "../../../tests/support/mutate.rs"]
mod mutate;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(commands::run(&cli)),
        Err(e) => Err(fail::Failure::other(format!(
            "cannot start the async runtime: {e}"
        ))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(cli.json),
    }
}
