//! Why a request was not accepted, and how each reason is answered.
//!
//! Every variant maps to one [`ErrorCode`] (and so one gRPC and one HTTP
//! status, through the table in `observatory-schemas`) and to a bounded
//! metric label; its message says exactly what was wrong, because that text
//! reaches the client that has to fix it.

use crate::split::SplitError;
use observatory_schemas::error_code::ErrorCode;
use observatory_schemas::tenant::TenantError;
use thiserror::Error;

/// A refused request.
#[derive(Debug, Error)]
pub enum IngestError {
    /// The body is not a valid protobuf message of the signal.
    #[error("malformed protobuf: {0}")]
    MalformedProtobuf(#[from] prost::DecodeError),
    /// The body is not valid OTLP/JSON.
    #[error("malformed OTLP/JSON: {0}")]
    MalformedJson(String),
    /// A span's id is invalid.
    #[error("invalid span: {0}")]
    InvalidSpan(#[from] SplitError),
    /// The body could not be decompressed.
    #[error("invalid {encoding} body: {detail}")]
    BadCompression {
        /// The content encoding.
        encoding: &'static str,
        /// What the decompressor said.
        detail: String,
    },
    /// The body could not be read: the client broke off or was too slow.
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// The body, before or after decompression, is larger than allowed.
    #[error("request body is larger than {limit} bytes{after}")]
    TooLarge {
        /// The limit.
        limit: usize,
        /// Which limit, and at which step.
        after: &'static str,
    },
    /// Decoded, the request would take more memory than the whole budget.
    #[error("the request would take about {estimate} bytes of memory decoded, more than the collector's budget of {limit} bytes (COLLECTOR_MAX_INFLIGHT_BYTES); send fewer spans, data points or log records per request")]
    TooLargeDecoded {
        /// The estimate.
        estimate: usize,
        /// The budget, COLLECTOR_MAX_INFLIGHT_BYTES.
        limit: usize,
    },
    /// Neither protobuf nor JSON.
    #[error("unsupported content type {0:?}: send application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    /// A content encoding we do not decode.
    #[error("unsupported content encoding {0:?}: send gzip, deflate, zstd or identity")]
    UnsupportedEncoding(String),
    /// The tenant header holds an invalid name.
    #[error("invalid X-Scope-OrgID: {0}")]
    InvalidTenant(#[from] TenantError),
    /// API keys are required and none valid was given.
    #[error("missing or unknown API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key'")]
    Unauthenticated,
    /// Too much data is waiting for Kafka already.
    #[error("the collector is at its in-flight limit of {limit} bytes; retry later")]
    Overloaded {
        /// The limit, COLLECTOR_MAX_INFLIGHT_BYTES.
        limit: usize,
    },
    /// The tenant sends more than its ingest quota.
    #[error("the tenant is over its ingest quota (INGEST_TENANT_SPANS_PER_SECOND); retry in {retry_after_secs} s")]
    OverQuota {
        /// Seconds until the request fits.
        retry_after_secs: u32,
    },
    /// Kafka did not acknowledge every message in time.
    #[error("kafka did not acknowledge the data: {0}; retry later")]
    Kafka(String),
}

impl IngestError {
    /// Seconds a client is asked to wait before it retries, when this error
    /// says how long (a quota); `None`: the configured default.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            IngestError::OverQuota { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The kind of failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            IngestError::MalformedProtobuf(_)
            | IngestError::MalformedJson(_)
            | IngestError::InvalidSpan(_)
            | IngestError::BadCompression { .. }
            | IngestError::InvalidTenant(_) => ErrorCode::InvalidArgument,
            IngestError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            IngestError::TooLargeDecoded { .. } => ErrorCode::ResourceExhausted,
            IngestError::UnsupportedContentType(_) | IngestError::UnsupportedEncoding(_) => {
                ErrorCode::UnsupportedMediaType
            }
            IngestError::Unauthenticated => ErrorCode::Unauthenticated,
            IngestError::OverQuota { .. } => ErrorCode::RateLimited,
            // A slow or broken-off body may be the network's fault: let the client retry.
            IngestError::Overloaded { .. } | IngestError::Kafka(_) | IngestError::Body(_) => {
                ErrorCode::Unavailable
            }
        }
    }

    /// A bounded label for the refused-requests metric.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::MalformedProtobuf(_) => "malformed_protobuf",
            IngestError::MalformedJson(_) => "malformed_json",
            IngestError::InvalidSpan(_) => "invalid_span",
            IngestError::BadCompression { .. } => "bad_compression",
            IngestError::Body(_) => "unreadable_body",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::TooLargeDecoded { .. } => "too_large_decoded",
            IngestError::UnsupportedContentType(_) => "unsupported_content_type",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
            IngestError::InvalidTenant(_) => "invalid_tenant",
            IngestError::Unauthenticated => "unauthenticated",
            IngestError::Overloaded { .. } => "overloaded",
            IngestError::OverQuota { .. } => "over_quota",
            IngestError::Kafka(_) => "kafka_unavailable",
        }
    }
}

impl From<IngestError> for tonic::Status {
    fn from(err: IngestError) -> Self {
        let code = tonic::Code::from_i32(err.code().grpc_code());
        tonic::Status::new(code, err.to_string())
    }
}
