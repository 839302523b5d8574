//! One Kafka message as the sinks see it: owned, with its headers, and the
//! few header readings every sink needs.

use observatory_schemas::kafka::headers;
use observatory_schemas::tenant;

/// One Kafka message, owned.
#[derive(Debug, Clone)]
pub struct InMessage {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value (shared, not copied, by a sink that keeps it).
    pub payload: bytes::Bytes,
    /// All headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl InMessage {
    /// Copies a message the consumer returned.
    pub fn from_kafka<M: rdkafka::message::Message>(m: &M) -> InMessage {
        use rdkafka::message::Headers;
        InMessage {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default()),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The tenant: its header, or `default` when there is none (producers
    /// other than our collector, such as the OpenTelemetry Collector's kafka
    /// exporter, send none). A header that is present but not a valid
    /// tenant name is an error, never `default`: the message goes to the
    /// dead-letter topic instead of into another tenant's data.
    pub fn tenant(&self) -> Result<&str, String> {
        let Some((_, raw)) = self.headers.iter().find(|(k, _)| k == headers::TENANT) else {
            return Ok(tenant::DEFAULT_TENANT);
        };
        let name =
            std::str::from_utf8(raw).map_err(|_| "invalid tenant header: not UTF-8".to_owned())?;
        tenant::validate(name).map_err(|e| format!("invalid tenant header {name:?}: {e}"))?;
        Ok(name)
    }

    /// The collector's receive time.
    pub fn received_at_ms(&self) -> Option<u64> {
        self.header(headers::RECEIVED_AT_MS)?.parse().ok()
    }

    /// The span count header, 1 when absent.
    pub fn span_count(&self) -> usize {
        self.header(headers::SPAN_COUNT)
            .and_then(|c| c.parse().ok())
            .unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_tenant(value: Option<&[u8]>) -> InMessage {
        InMessage {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: None,
            payload: bytes::Bytes::new(),
            headers: value
                .map(|v| vec![(headers::TENANT.to_owned(), v.to_vec())])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn a_missing_tenant_is_default_an_invalid_one_an_error() {
        assert_eq!(with_tenant(None).tenant().unwrap(), "default");
        assert_eq!(with_tenant(Some(b"acme")).tenant().unwrap(), "acme");
        let err = with_tenant(Some(b"../etc")).tenant().unwrap_err();
        assert!(err.starts_with("invalid tenant header \"../etc\""), "{err}");
        assert!(with_tenant(Some(b"")).tenant().is_err());
        assert!(with_tenant(Some(&[0xff, 0xfe])).tenant().is_err());
    }
}
