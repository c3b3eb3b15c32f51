//! `strata-session-server`: the `session_server` example built as a program (feature
//! `server`), so it can be installed with `cargo install` and run by the end-to-end tests.
//! The code lives in `examples/session_server/`; see its `main.rs` for the routes and the
//! environment.

#[path = "../../examples/session_server/main.rs"]
mod session_server;

fn main() -> std::process::ExitCode {
    session_server::main()
}
