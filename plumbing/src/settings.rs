//! The error every binary reports a setting that cannot work with, and the
//! small parsers the settings of several binaries share.
//!
//! What it guarantees: the error names the environment variable (not the
//! flag), so an operator finds it in their manifest.

use thiserror::Error;

/// A setting with a value that cannot work.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {setting}: {reason}")]
pub struct ConfigError {
    /// The environment variable of the setting.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// A [`ConfigError`] for `setting`.
pub fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

/// Parses a comma-separated list, blanks skipped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_errors() {
        assert_eq!(parse_list(" a, ,b,"), ["a", "b"]);
        assert!(parse_list("").is_empty());
        assert_eq!(
            invalid("LOG_FORMAT", "must be text or json").to_string(),
            "invalid LOG_FORMAT: must be text or json"
        );
    }
}
