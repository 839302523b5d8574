//! The message key of metrics and logs: a stable hash of the resource.
//!
//! Metrics and logs have no trace id; they are keyed by their resource so
//! that one service instance's data stays in one partition, in order. The key
//! is FNV-1a 64 over the resource attributes sorted by key, each as
//! `key 0x00 value-protobuf 0x00`, printed as 16 lowercase hex characters. It
//! depends only on the attributes, not on their order on the wire, and is
//! stable across versions of this crate (changing it is a contract change).

use crate::kafka::push_hex;
use crate::otlp::resource::Resource;
use prost::Message;

/// FNV-1a 64's offset basis: the hash of nothing.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`, continuing from `hash` ([`FNV_OFFSET`] to start):
/// the stable hash of stored ids (resources, metric series, log records).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= *b as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The id under which PostgreSQL stores a span's resource once per tenant
/// (table `resources`): FNV-1a 64 of the resource's JSON text as the sink
/// renders it, as a signed 64-bit integer. Stable across versions (a
/// change would store every resource again under a new id).
///
/// ```
/// use observatory_schemas::resource_key::stored_resource_id;
/// assert_eq!(stored_resource_id("{}"), stored_resource_id("{}"));
/// assert_ne!(stored_resource_id(r#"{"a":1}"#), stored_resource_id(r#"{"a":2}"#));
/// ```
pub fn stored_resource_id(json: &str) -> i64 {
    fnv1a(FNV_OFFSET, json.as_bytes()) as i64
}

/// The key of a resource's messages.
///
/// ```
/// use observatory_schemas::resource_key::resource_key;
/// // A message with no resource still gets a key.
/// assert_eq!(resource_key(None).len(), 16);
/// ```
pub fn resource_key(resource: Option<&Resource>) -> String {
    let mut attrs: Vec<_> = resource
        .map(|r| r.attributes.iter().collect())
        .unwrap_or_default();
    attrs.sort_by(|a, b| a.key.cmp(&b.key));
    let mut hash = FNV_OFFSET;
    let mut value_buf = Vec::new();
    for kv in attrs {
        hash = fnv1a(hash, kv.key.as_bytes());
        hash = fnv1a(hash, &[0]);
        value_buf.clear();
        if let Some(value) = &kv.value {
            value.encode(&mut value_buf).expect("a Vec grows as needed");
        }
        hash = fnv1a(hash, &value_buf);
        hash = fnv1a(hash, &[0]);
    }
    let mut out = String::with_capacity(16);
    push_hex(&mut out, &hash.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::common::{any_value::Value, AnyValue, KeyValue};

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn resource(attrs: Vec<KeyValue>) -> Resource {
        Resource {
            attributes: attrs,
            ..Default::default()
        }
    }

    #[test]
    fn key_ignores_attribute_order() {
        let a = resource(vec![kv("service.name", "chat"), kv("host", "h1")]);
        let b = resource(vec![kv("host", "h1"), kv("service.name", "chat")]);
        assert_eq!(resource_key(Some(&a)), resource_key(Some(&b)));
    }

    #[test]
    fn key_separates_resources() {
        let a = resource(vec![kv("service.name", "chat")]);
        let b = resource(vec![kv("service.name", "chat2")]);
        assert_ne!(resource_key(Some(&a)), resource_key(Some(&b)));
    }

    #[test]
    fn key_of_no_resource_is_the_empty_hash() {
        assert_eq!(resource_key(None), "cbf29ce484222325");
    }
}
