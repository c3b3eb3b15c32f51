//! A web app whose sessions survive restarts: sign in with a name, watch a visit counter, see
//! which store keeps your session and how long ago this server started, see every device signed
//! in under your name and sign any of them out (or all of them), sign out. Sessions live
//! in a `DiskStore` under `./strata-data` (kill the server with `kill -9`, start it again: you are
//! still signed in, and the counter goes on), or in Redis when `STRATA_REDIS_URL` is set (every
//! node sees every session; needs `--features redis`).
//!
//! ```text
//! cargo run --release --example session_server
//! ```
//!
//! Environment (see [`config`] for the details and the defaults):
//! - `STRATA_ADDR`: address (`127.0.0.1:3000`) or host (`0.0.0.0`) to listen on; default
//!   `127.0.0.1`;
//! - `PORT`: the port, when `STRATA_ADDR` does not give one (default 3000);
//! - `STRATA_DATA_DIR`: the DiskStore directory (default `./strata-data`), made private (0700,
//!   files 0600);
//! - `STRATA_REDIS_URL`: keep sessions in Redis instead (`redis://127.0.0.1:6379`);
//! - `STRATA_REDIS_SENTINELS` + `STRATA_REDIS_MASTER`: keep sessions in the Redis that these
//!   sentinels (comma-separated URLs, `redis://127.0.0.1:26379,redis://127.0.0.1:26380`) name
//!   as master of `STRATA_REDIS_MASTER` (`mymaster`), followed through failovers; the master's
//!   password goes in the first sentinel URL. Instead of `STRATA_REDIS_URL`, not with it;
//! - `STRATA_REPLICATED=1` (with `STRATA_REDIS_URL` or Sentinel): a `ReplicatedStore` — each server keeps a
//!   local copy of the sessions it reads, Redis holds the truth, and a write on one server
//!   invalidates the others' copies over pub/sub;
//! - `STRATA_SESSION_IDLE_SECS`: a session ends after this long without a page view
//!   (default 1800; the live panel's polling does not count);
//! - `STRATA_SECURE_COOKIE=1`: mark the session cookie `Secure` (set it behind HTTPS);
//! - `STRATA_SIGN_IN_LIMIT`: sign-ins allowed per client address per minute (default 10);
//! - `RUST_LOG`: log filter (default `info`), logs go to stderr.
//!
//! The same program is built as the `strata-session-server` binary (feature `server`), which is
//! what the end-to-end tests run.

mod backend;
mod config;
mod devices;
mod hardening;
mod pages;
mod permissions;
mod redacting_log;
mod routes;
mod sign_in_limit;

use std::process::ExitCode;

use config::Config;

/// Starts the server; returns when it is stopped with Ctrl-C (or SIGTERM): in-flight requests
/// finish, then the DiskStore's directory is closed, and the process exits 0.
#[tokio::main]
pub async fn main() -> ExitCode {
    init_logging();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("session_server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), session ids redacted.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(redacting_log::RedactingStderr)
        .init();
}

async fn run() -> Result<(), String> {
    let config = Config::from_env()?;
    match &config.redis {
        Some(target) if config.replicated => {
            let backend = backend::replicated(target).await?;
            routes::serve(backend, config).await
        }
        Some(target) => routes::serve(backend::redis(target).await?, config).await,
        None => {
            permissions::make_private(&config.data_dir)?;
            let backend = backend::disk(&config.data_dir).await?;
            let db = backend.sessions.store().db().clone();
            let served = routes::serve(backend, config).await;
            // Every other handle went with the server: this commits what is queued, flushes,
            // fsyncs and unlocks the directory before the process exits.
            db.close().await;
            tracing::info!("data directory closed");
            served
        }
    }
}
