//! The error every rvsadm operation returns: ipvsadm's message and exit code.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Exit code of wrong usage (ipvsadm's `fail(2, ...)`).
pub const EXIT_USAGE: i32 = 2;
/// Exit code when the table refuses a change (ipvsadm returns -1 from
/// `main` after a failed kernel call: 255), and of popt's parse errors.
pub const EXIT_REFUSED: i32 = 255;
/// Exit code of a listing that failed (`-L -t` of a missing service).
pub const EXIT_LIST: i32 = 1;

/// A message for stderr (without the final newline) and the exit code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmError {
    pub message: String,
    pub code: i32,
}

impl AdmError {
    /// Wrong usage: exit code 2.
    pub fn usage(message: impl Into<String>) -> AdmError {
        AdmError {
            message: message.into(),
            code: EXIT_USAGE,
        }
    }

    /// The table refused the change (the kernel's errno in ipvsadm): 255.
    pub fn refused(message: impl Into<String>) -> AdmError {
        AdmError {
            message: message.into(),
            code: EXIT_REFUSED,
        }
    }

    /// A listing that could not be produced: exit code 1.
    pub fn list(message: impl Into<String>) -> AdmError {
        AdmError {
            message: message.into(),
            code: EXIT_LIST,
        }
    }
}

impl fmt::Display for AdmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AdmError {}
