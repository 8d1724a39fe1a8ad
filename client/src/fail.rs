//! Why a subcommand stopped short. The client keeps its own error type
//! rather than `anyhow`, because each way of failing is a documented exit
//! code that scripts match on.

/// Why a subcommand stopped short; each maps to an exit code.
#[derive(Debug, PartialEq)]
pub enum Fail {
    /// The command failed, expired or timed out; a watch lost its place
    /// (exit 1).
    Failed(String),
    /// The hub refused the request, or the request is malformed (exit 2).
    Refused(String),
    /// The hub cannot be reached (exit 3).
    Unreachable(String),
    /// Standard output was closed (a pipe's reader went away): stop quietly.
    Stdout,
}

impl Fail {
    /// The process's exit code.
    pub fn code(&self) -> i32 {
        match self {
            Fail::Failed(_) => 1,
            Fail::Refused(_) => 2,
            Fail::Unreachable(_) => 3,
            Fail::Stdout => 0,
        }
    }
}
