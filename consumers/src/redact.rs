//! What happens to message content and sensitive attributes before anything
//! is stored.
//!
//! - With `CAPTURE_CONTENT=false` (the default) every attribute that carries
//!   prompt or completion text, in any dialect, is removed from the span and
//!   its events, so the text reaches no store: neither `spans` and
//!   `llm_calls` nor the Tempo blocks.
//! - With it on, that text is redacted (e-mail addresses, phone numbers,
//!   card numbers that pass the Luhn check, API-key-like tokens) and capped
//!   at `CONTENT_MAX_BYTES`.
//! - Keys in `DROP_ATTRIBUTES` are removed; values of keys in
//!   `HASH_ATTRIBUTES` are replaced by `hmac-sha256:<hex>`, HMAC-SHA-256 of
//!   their text keyed by `SECRET_KEY`: a plain hash of an e-mail address or
//!   a user id is reversed by hashing a list of candidates, a keyed one is
//!   not without the key. Without a key (development only: production
//!   refuses to start so) they become `sha256:<hex>`.
//!
//! Pure functions over OTLP values; no I/O.

use observatory_schemas::otlp::common::{any_value::Value, KeyValue};
use observatory_schemas::otlp::trace::Span;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use regex::Regex;
use sha2::{Digest, Sha256};

/// HMAC-SHA-256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
use std::collections::HashSet;

/// Whether an attribute carries prompt or completion text.
pub fn is_content_key(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
        "gen_ai.prompt",
        "gen_ai.completion",
        "input.value",
        "output.value",
        "ai.prompt",
        "ai.prompt.messages",
        "ai.response.text",
        "ai.response.toolCalls",
        "content",
        "message",
    ];
    const PREFIXES: &[&str] = &[
        "gen_ai.prompt.",
        "gen_ai.completion.",
        "llm.input_messages.",
        "llm.output_messages.",
    ];
    EXACT.contains(&key)
        || PREFIXES
            .iter()
            .any(|p| key.starts_with(p) && (key.ends_with("content") || key.ends_with("text")))
}

/// The content policy.
pub struct Policy {
    capture_content: bool,
    max_bytes: usize,
    drop: HashSet<String>,
    hash: HashSet<String>,
    hash_key: Option<Vec<u8>>,
    patterns: Vec<(Regex, &'static str)>,
    card: Regex,
}

impl Policy {
    /// A policy from the settings.
    pub fn new(
        capture_content: bool,
        max_bytes: usize,
        drop: Vec<String>,
        hash: Vec<String>,
    ) -> Policy {
        let patterns = vec![
            (Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").expect("valid regex"), "[EMAIL]"),
            (
                Regex::new(r"\b(?:sk|pk|rk)[-_][A-Za-z0-9_-]{16,}\b|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}\b|\bAIza[0-9A-Za-z_-]{30,}\b|\bBearer\s+[A-Za-z0-9._~+/-]{20,}=*")
                    .expect("valid regex"),
                "[SECRET]",
            ),
        ];
        Policy {
            capture_content,
            max_bytes,
            drop: drop.into_iter().collect(),
            hash: hash.into_iter().collect(),
            hash_key: None,
            patterns,
            card: Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").expect("valid regex"),
        }
    }

    /// Hashes the values of `HASH_ATTRIBUTES` with HMAC-SHA-256 keyed by
    /// `key` (`SECRET_KEY`).
    pub fn with_hash_key(mut self, key: Option<&[u8]>) -> Policy {
        self.hash_key = key.filter(|k| !k.is_empty()).map(<[u8]>::to_vec);
        self
    }

    /// Whether any attribute is hashed.
    pub fn hashes(&self) -> bool {
        !self.hash.is_empty()
    }

    /// Redacts personal data and secrets in `text`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (re, label) in &self.patterns {
            if re.is_match(&out) {
                out = re.replace_all(&out, *label).into_owned();
            }
        }
        if self.card.is_match(&out) {
            out = self
                .card
                .replace_all(&out, |c: &regex::Captures<'_>| {
                    let digits: Vec<u32> = c[0].chars().filter_map(|ch| ch.to_digit(10)).collect();
                    if luhn(&digits) {
                        "[CARD]".to_owned()
                    } else {
                        c[0].to_owned()
                    }
                })
                .into_owned();
        }
        // Phone numbers: 8 to 15 digits with separators, after cards are gone.
        static PHONE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
        let phone = PHONE.get_or_init(|| {
            Regex::new(r"\+?\(?\d{1,4}\)?[\s.-]?\d{2,4}[\s.-]\d{3,4}[\s.-]?\d{0,4}\b")
                .expect("valid regex")
        });
        out = phone
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let digits = c[0].chars().filter(char::is_ascii_digit).count();
                if (8..=15).contains(&digits) {
                    "[PHONE]".to_owned()
                } else {
                    c[0].to_owned()
                }
            })
            .into_owned();
        if out.len() > self.max_bytes {
            let mut cut = self.max_bytes;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("…[truncated]");
        }
        out
    }

    /// Whether prompt and completion text is stored (`CAPTURE_CONTENT`).
    pub fn captures_content(&self) -> bool {
        self.capture_content
    }

    /// Applies the policy to attributes (of a span, an event, a log
    /// record), in place: dropped, hashed, content removed or redacted.
    pub fn apply_to_attributes(&self, attributes: &mut Vec<KeyValue>) {
        self.apply(attributes);
    }

    fn apply(&self, attributes: &mut Vec<KeyValue>) {
        attributes.retain(|kv| {
            !self.drop.contains(&kv.key) && (self.capture_content || !is_content_key(&kv.key))
        });
        for kv in attributes.iter_mut() {
            let Some(value) = kv.value.as_mut().and_then(|v| v.value.as_mut()) else {
                continue;
            };
            if self.hash.contains(&kv.key) {
                let text = match &*value {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                *value = Value::StringValue(match &self.hash_key {
                    Some(key) => format!("hmac-sha256:{}", hex(&hmac_sha256(key, text.as_bytes()))),
                    None => format!("sha256:{}", hex(&Sha256::digest(text.as_bytes()))),
                });
            } else if self.capture_content && is_content_key(&kv.key) {
                if let Value::StringValue(s) = value {
                    *s = self.redact(s);
                }
            }
        }
    }

    /// Applies the policy to every span of a request, in place.
    pub fn apply_to_request(&self, request: &mut ExportTraceServiceRequest) {
        for rs in &mut request.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    self.apply_to_span(span);
                }
            }
        }
    }

    /// Applies the policy to a span and its events, in place.
    pub fn apply_to_span(&self, span: &mut Span) {
        self.apply(&mut span.attributes);
        for event in &mut span.events {
            self.apply(&mut event.attributes);
        }
    }
}

fn luhn(digits: &[u32]) -> bool {
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_schemas::testing::kv_str;

    fn policy(capture: bool) -> Policy {
        Policy::new(
            capture,
            64,
            vec!["secret.header".into()],
            vec!["user.id".into()],
        )
    }

    #[test]
    fn redacts_personal_data_and_secrets() {
        let p = policy(true);
        let text = "mail me at jane.doe@example.com or +1 415-555-0132, card 4111 1111 1111 1111, key sk-abcdefghijklmnop1234";
        let out = Policy::new(true, 10_000, vec![], vec![]).redact(text);
        assert!(!out.contains("jane.doe"), "{out}");
        assert!(
            out.contains("[EMAIL]")
                && out.contains("[PHONE]")
                && out.contains("[CARD]")
                && out.contains("[SECRET]"),
            "{out}"
        );
        assert!(p.redact(&"x".repeat(100)).ends_with("…[truncated]"));
        // A number that fails Luhn is not a card.
        assert!(Policy::new(true, 100, vec![], vec![])
            .redact("order 1234 5678 9012 3456")
            .contains("1234"));
    }

    #[test]
    fn content_is_removed_unless_captured() {
        let mut span = Span {
            attributes: vec![
                kv_str("gen_ai.input.messages", "hello jane@example.com"),
                kv_str("gen_ai.prompt.0.content", "hi"),
                kv_str("gen_ai.request.model", "gpt-4o"),
                kv_str("secret.header", "x"),
                kv_str("user.id", "alice"),
            ],
            ..Default::default()
        };
        let mut captured = span.clone();
        policy(false).apply_to_span(&mut span);
        let keys: Vec<_> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["gen_ai.request.model", "user.id"]);
        assert!(format!("{:?}", span.attributes[1]).contains("sha256:"));

        policy(true).apply_to_span(&mut captured);
        assert!(format!("{:?}", captured.attributes[0]).contains("[EMAIL]"));
        assert_eq!(captured.attributes.len(), 4);
    }

    #[test]
    fn hmac_matches_rfc_4231_and_keys_the_hashes() {
        // RFC 4231, test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        let policy = |key: Option<&[u8]>| {
            Policy::new(false, 1024, vec![], vec!["user.id".into()]).with_hash_key(key)
        };
        let hashed = |p: &Policy| {
            let mut attributes = vec![KeyValue {
                key: "user.id".into(),
                value: Some(observatory_schemas::otlp::common::AnyValue {
                    value: Some(Value::StringValue("jane@example.com".into())),
                }),
                ..Default::default()
            }];
            p.apply(&mut attributes);
            format!("{:?}", attributes[0].value)
        };
        let a = hashed(&policy(Some(b"key one")));
        let b = hashed(&policy(Some(b"key two")));
        assert!(a.contains("hmac-sha256:") && b.contains("hmac-sha256:"));
        assert_ne!(a, b, "the key changes the hash");
        assert!(!a.contains("jane"));
        assert!(hashed(&policy(None)).contains("\"sha256:"));
    }
}
