//! What went wrong, and the exit code it maps to.

use std::process::ExitCode;

/// A failed command: a message for the user and the exit code.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    kind: &'static str,
    message: String,
}

/// Exit code for "the source cannot be used": locked, corrupt or not a directory.
pub const UNUSABLE: u8 = 2;

impl Failure {
    /// Any other failure (exit code 1).
    pub fn other(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            kind: "error",
            message: message.into(),
        }
    }

    /// A missing key or namespace (exit code 1).
    pub fn not_found(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            kind: "not_found",
            message: message.into(),
        }
    }

    /// A source that cannot be used (exit code 2).
    pub fn unusable(message: impl Into<String>) -> Self {
        Failure {
            code: UNUSABLE,
            kind: "unusable",
            message: message.into(),
        }
    }

    /// Prints the failure to stderr (as JSON with `--json`) and returns the exit code.
    pub fn report(self, json: bool) -> ExitCode {
        if json {
            let body = serde_json::json!({ "error": self.kind, "message": self.message });
            eprintln!("{body}");
        } else {
            eprintln!("strata: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

impl From<strata::Error> for Failure {
    fn from(error: strata::Error) -> Self {
        match error {
            // The library's hints name builder calls; a CLI user needs the flag or the fix.
            strata::Error::Corrupt(e) => Failure::unusable(format!(
                "data in {} is corrupt: {}; rerun with --discard-corrupt to delete it and start empty (cache data is ephemeral)",
                e.path.display(),
                e.reason
            )),
            strata::Error::DataDir(e) => Failure::unusable(format!(
                "data directory {} cannot be used: {}; check that it exists and is writable",
                e.path.display(),
                e.source
            )),
            strata::Error::DirLocked { .. } => Failure::unusable(error.to_string()),
            other => Failure::other(other.to_string()),
        }
    }
}
