//! Logging set-up: `LOG_FORMAT` (`text` lines or one `json` object per
//! line) and the `RUST_LOG` filter (`info` when unset or unreadable).
//!
//! What it guarantees: a bad `LOG_FORMAT` is refused before anything is
//! logged, naming the setting.

use crate::settings::{invalid, ConfigError};
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `text` or `json`.
    pub fn parse(text: &str) -> Result<LogFormat, ConfigError> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(invalid("LOG_FORMAT", "must be text or json")),
        }
    }
}

/// Installs the process' logger. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
}

/// Parses `LOG_FORMAT` and installs the logger.
pub fn init_from(format: &str) -> Result<(), ConfigError> {
    init(LogFormat::parse(format)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse("yaml").unwrap_err().setting, "LOG_FORMAT");
    }
}
