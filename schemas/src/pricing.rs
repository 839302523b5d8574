//! Model prices and the cost of an LLM call.
//!
//! A [`PriceBook`] holds USD prices per million input, output, cache-read
//! and cache-write tokens, each for a model-name prefix and from an
//! effective date, so that a backfill of last month is priced with last
//! month's prices. The book shipped with the code (`prices.json`) covers the
//! OpenAI, Anthropic, Google Gemini, Mistral, Meta Llama and DeepSeek
//! families; operators add or override entries from a file of the same shape
//! (`PRICING_FILE`). A model nobody priced has no cost (`None`), never zero.
//!
//! Token rules (see `genai-conventions.md`): input tokens **include** cache
//! reads and cache writes, output tokens **include** reasoning tokens; each
//! token is priced once, cached ones at their own rates (the input rate when
//! a model has none).

use serde::Deserialize;
use thiserror::Error;

/// The price table shipped with the code.
pub const BUILTIN_PRICES: &str = include_str!("prices.json");

/// Nanoseconds in a day.
const DAY_NS: u64 = 86_400 * 1_000_000_000;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Price {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens, reasoning included.
    pub output: f64,
    /// Input tokens read from the prompt cache; `None`: the input price.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Input tokens written to the prompt cache; `None`: the input price.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct PriceFile {
    models: Vec<FileEntry>,
}

#[derive(Debug, Deserialize)]
struct FileEntry {
    #[serde(default)]
    provider: Option<String>,
    model: String,
    effective_from: String,
    #[serde(flatten)]
    price: Price,
}

#[derive(Debug, Clone)]
struct Entry {
    prefix: String,
    from_day: i64,
    rank: u32,
    provider: Option<String>,
    price: Price,
}

/// Why a price file was refused.
#[derive(Debug, Error)]
pub enum PricingError {
    /// Not JSON of the expected shape.
    #[error("price file is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A bad date.
    #[error("model {model:?}: effective_from {date:?} is not a YYYY-MM-DD date")]
    Date {
        /// The entry's model.
        model: String,
        /// The bad date.
        date: String,
    },
    /// A negative or non-finite price.
    #[error("model {0:?}: prices must be finite and not negative")]
    BadPrice(String),
}

/// Every known price.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    entries: Vec<Entry>,
    next_rank: u32,
}

fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && (1..=12).contains(&m) && (1..=31).contains(&d))
        .then(|| crate::civil::days_from_civil(y, m, d))
}

/// A model name as the price table spells it: lowercase, without the
/// provider or path prefixes that SDKs and gateways put in front.
///
/// ```
/// use observatory_schemas::pricing::normalize_model;
/// assert_eq!(normalize_model("models/Gemini-1.5-Pro"), "gemini-1.5-pro");
/// assert_eq!(normalize_model("us.anthropic.claude-3-5-sonnet-20240620-v1:0"), "claude-3-5-sonnet-20240620-v1:0");
/// ```
pub fn normalize_model(model: &str) -> String {
    let mut m = model.trim().to_ascii_lowercase();
    for prefix in ["us.", "eu.", "apac.", "global."] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest.to_owned();
        }
    }
    for prefix in [
        "openai/",
        "anthropic/",
        "google/",
        "models/",
        "gemini/",
        "mistralai/",
        "mistral/",
        "deepseek/",
        "anthropic.",
        "meta.",
        "deepseek.",
    ] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest.to_owned();
        }
    }
    m
}

impl PriceBook {
    /// The book shipped with the code.
    pub fn builtin() -> PriceBook {
        let mut book = PriceBook::default();
        book.add_json(BUILTIN_PRICES)
            .expect("the built-in price table is valid");
        book
    }

    /// Adds the entries of a price file; where an entry has the same model
    /// and date as an earlier one, the later file wins.
    pub fn add_json(&mut self, text: &str) -> Result<(), PricingError> {
        let file: PriceFile = serde_json::from_str(text)?;
        let rank = self.next_rank;
        self.next_rank += 1;
        for e in file.models {
            let from_day = parse_date(&e.effective_from).ok_or_else(|| PricingError::Date {
                model: e.model.clone(),
                date: e.effective_from.clone(),
            })?;
            let p = e.price;
            let all = [Some(p.input), Some(p.output), p.cache_read, p.cache_write];
            if all.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(PricingError::BadPrice(e.model));
            }
            self.entries.push(Entry {
                prefix: normalize_model(&e.model),
                from_day,
                rank,
                provider: e.provider,
                price: p,
            });
        }
        Ok(())
    }

    /// The price of `model` on the day of `at_unix_nano`: the entry with the
    /// longest matching prefix, then the latest effective date on or before
    /// that day, then the last file loaded.
    pub fn lookup(&self, model: &str, at_unix_nano: u64) -> Option<&Price> {
        let name = normalize_model(model);
        let day = (at_unix_nano / DAY_NS) as i64;
        self.entries
            .iter()
            .filter(|e| name.starts_with(&e.prefix) && e.from_day <= day)
            .max_by_key(|e| (e.prefix.len(), e.from_day, e.rank))
            .map(|e| &e.price)
    }

    /// Models in the book with their provider and latest price, for listings.
    pub fn latest(&self) -> Vec<(&str, Option<&str>, &Price)> {
        let mut out: Vec<(&str, Option<&str>, &Price)> = Vec::new();
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by_key(|e| (e.prefix.clone(), std::cmp::Reverse((e.from_day, e.rank))));
        for e in entries {
            if out.last().is_none_or(|(m, _, _)| *m != e.prefix) {
                out.push((&e.prefix, e.provider.as_deref(), &e.price));
            }
        }
        out
    }
}

/// Token counts of one call, normalized: `input` includes cache reads and
/// writes, `output` includes reasoning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens.
    pub input: i64,
    /// All output tokens.
    pub output: i64,
    /// Input tokens read from the cache.
    pub cache_read: i64,
    /// Input tokens written to the cache.
    pub cache_write: i64,
}

/// The cost in USD of `usage` at `price`.
///
/// ```
/// use observatory_schemas::pricing::{cost_usd, Price, Usage};
/// // Claude Sonnet 4: 3 $/M input, 15 output, 0.30 cache read, 3.75 cache write.
/// let price = Price { input: 3.0, output: 15.0, cache_read: Some(0.3), cache_write: Some(3.75) };
/// // 10 000 input tokens of which 6 000 cache reads and 1 000 cache writes, 500 output.
/// let usage = Usage { input: 10_000, output: 500, cache_read: 6_000, cache_write: 1_000 };
/// let cost = cost_usd(&price, &usage);
/// assert!((cost - (3_000.0 * 3.0 + 6_000.0 * 0.3 + 1_000.0 * 3.75 + 500.0 * 15.0) / 1e6).abs() < 1e-12);
/// ```
pub fn cost_usd(price: &Price, usage: &Usage) -> f64 {
    let uncached = (usage.input - usage.cache_read - usage.cache_write).max(0) as f64;
    let cache_read = usage.cache_read.max(0) as f64;
    let cache_write = usage.cache_write.max(0) as f64;
    let output = usage.output.max(0) as f64;
    (uncached * price.input
        + cache_read * price.cache_read.unwrap_or(price.input)
        + cache_write * price.cache_write.unwrap_or(price.input)
        + output * price.output)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str) -> u64 {
        parse_date(date).unwrap() as u64 * DAY_NS + 3_600_000_000_000
    }

    #[test]
    fn dates_convert_to_days() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-03-01"), Some(19_783));
        assert_eq!(parse_date("2024-13-01"), None);
    }

    #[test]
    fn the_longest_prefix_wins() {
        let book = PriceBook::builtin();
        assert_eq!(
            book.lookup("gpt-4o-mini-2024-07-18", at("2025-01-01"))
                .unwrap()
                .input,
            0.15
        );
        assert_eq!(
            book.lookup("gpt-4o-2024-08-06", at("2025-01-01"))
                .unwrap()
                .input,
            2.5
        );
        assert_eq!(
            book.lookup("claude-sonnet-4-5-20250929", at("2025-11-01"))
                .unwrap()
                .cache_write,
            Some(3.75)
        );
        assert_eq!(
            book.lookup("gemini-2.5-flash-lite", at("2025-11-01"))
                .unwrap()
                .input,
            0.1
        );
    }

    #[test]
    fn prices_are_versioned_by_date() {
        let book = PriceBook::builtin();
        assert_eq!(book.lookup("gpt-4o", at("2024-09-01")).unwrap().input, 5.0);
        assert_eq!(book.lookup("gpt-4o", at("2024-11-01")).unwrap().input, 2.5);
        assert_eq!(book.lookup("o3", at("2025-05-01")).unwrap().input, 10.0);
        assert_eq!(book.lookup("o3", at("2025-07-01")).unwrap().input, 2.0);
        assert!(
            book.lookup("o3", at("2025-01-01")).is_none(),
            "not priced before it existed"
        );
    }

    #[test]
    fn an_unknown_model_has_no_price() {
        assert!(PriceBook::builtin()
            .lookup("my-finetune-v7", at("2025-01-01"))
            .is_none());
    }

    #[test]
    fn an_operator_file_overrides_and_extends() {
        let mut book = PriceBook::builtin();
        book.add_json(
            r#"{"models":[
                {"model":"gpt-4o","effective_from":"2024-10-02","input":2.0,"output":8.0},
                {"model":"acme-llm","effective_from":"2020-01-01","input":1.0,"output":2.0}]}"#,
        )
        .unwrap();
        assert_eq!(book.lookup("gpt-4o", at("2025-01-01")).unwrap().input, 2.0);
        assert_eq!(
            book.lookup("acme-llm-large", at("2025-01-01"))
                .unwrap()
                .output,
            2.0
        );
    }

    #[test]
    fn a_bad_file_is_refused_with_a_reason() {
        let mut book = PriceBook::default();
        let err = book
            .add_json(r#"{"models":[{"model":"x","effective_from":"soon","input":1,"output":1}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("soon"));
        assert!(book
            .add_json(
                r#"{"models":[{"model":"x","effective_from":"2024-01-01","input":-1,"output":1}]}"#
            )
            .is_err());
    }

    #[test]
    fn cached_and_reasoning_tokens_are_priced_once() {
        // o3-mini: 1.10 input, 4.40 output, 0.55 cached.
        let price = Price {
            input: 1.1,
            output: 4.4,
            cache_read: Some(0.55),
            cache_write: None,
        };
        // 2000 input of which 500 cached; 1000 output of which 600 reasoning (inside output).
        let usage = Usage {
            input: 2000,
            output: 1000,
            cache_read: 500,
            cache_write: 0,
        };
        let expected = (1500.0 * 1.1 + 500.0 * 0.55 + 1000.0 * 4.4) / 1e6;
        assert!((cost_usd(&price, &usage) - expected).abs() < 1e-15);
    }
}
