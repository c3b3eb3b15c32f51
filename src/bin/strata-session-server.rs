//! `strata-session-server`: the `session_server` example built as a program (feature
//! `server`), so it can be installed with `cargo install` and run by the end-to-end tests.
//! The code lives in `examples/session_server.rs`; see it for the routes and the environment.

#[path = "../../examples/session_server.rs"]
mod session_server;

fn main() -> std::process::ExitCode {
    session_server::main()
}
