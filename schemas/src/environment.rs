//! `ENVIRONMENT`: where a binary runs, which switches its production safety
//! checks (a warning or a refusal to start where a laptop default would be
//! unsafe in production).

use std::fmt;
use std::str::FromStr;

/// The deployment environment of a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// A laptop or a test: permissive defaults.
    #[default]
    Development,
    /// Production: the safety checks are on.
    Production,
}

impl Environment {
    /// Its name, as `ENVIRONMENT` spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
        }
    }

    /// Whether the production checks apply.
    pub const fn is_production(self) -> bool {
        matches!(self, Environment::Production)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = String;

    /// `development` (also `dev`) or `production` (also `prod`), any case.
    ///
    /// ```
    /// use observatory_schemas::environment::Environment;
    /// assert_eq!("Production".parse::<Environment>(), Ok(Environment::Production));
    /// assert!("staging".parse::<Environment>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Environment, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "production" | "prod" => Ok(Environment::Production),
            other => Err(format!(
                "{other:?} is not an environment: use development or production"
            )),
        }
    }
}
