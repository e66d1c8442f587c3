//! Step failures: a one-line message for the operator, optional details.

use crate::bindings::stepback::plugin::types as wit;
use std::fmt;

/// Why a step failed. Any `std::error::Error` converts into it, so `?`
/// works on I/O; add what was being done with [`ResultExt::context`]. An
/// I/O error's number is said as the host names it ("No such file or
/// directory (ENOENT)"), not as WASI numbers it (`os error 44`).
#[derive(Debug)]
pub struct Error {
    message: String,
    details: Option<String>,
}

impl Error {
    /// A failure with a one-line `message` for the operator.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            details: None,
        }
    }

    /// Longer explanation, shown with the step's log.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error::new(crate::errno::in_host_terms(&e.to_string()))
    }
}

impl From<Error> for wit::StepError {
    fn from(e: Error) -> Self {
        wit::StepError {
            message: e.message,
            details: e.details,
        }
    }
}

/// Adds what was being done to an error: `fs::read(p).context(format!("reading {p}"))?`.
pub trait ResultExt<T> {
    /// The error as "`what`: the error".
    fn context(self, what: impl fmt::Display) -> Result<T, Error>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|e| Error::new(format!("{what}: {}", crate::errno::in_host_terms(&e.to_string()))))
    }
}

#[cfg(test)]
mod tests {
    use super::{Error, ResultExt};

    /// In a plugin, an I/O error's number is WASI's: 44 is `ENOENT`.
    fn wasi_enoent() -> std::io::Error {
        std::io::Error::from_raw_os_error(44)
    }

    #[test]
    fn io_errors_are_named_as_the_host_names_them() {
        let e = Error::from(wasi_enoent());
        assert!(e.message().ends_with("(ENOENT)"), "{}", e.message());
        assert!(!e.message().contains("os error"), "{}", e.message());
        let e = Err::<(), _>(wasi_enoent())
            .context("reading /dist/a.tar")
            .unwrap_err();
        assert!(
            e.message().starts_with("reading /dist/a.tar: "),
            "{}",
            e.message()
        );
        assert!(e.message().ends_with("(ENOENT)"), "{}", e.message());
    }
}
