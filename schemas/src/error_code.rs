//! The one map from our error codes to gRPC and HTTP status.
//!
//! The collector and the query API both answer errors; each of their error
//! enums names an [`ErrorCode`], and this table turns it into the status of
//! the transport. Keeping the table here means an OTLP client sees the same
//! kind of answer over gRPC and over HTTP.

/// What kind of failure an error is, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed; retrying it cannot help.
    InvalidArgument,
    /// No valid credentials.
    Unauthenticated,
    /// Valid credentials that may not do this.
    PermissionDenied,
    /// The thing asked for does not exist.
    NotFound,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// The request would take more memory than the server may give it
    /// (decoded, say); retrying it cannot help.
    ResourceExhausted,
    /// The request's media type or encoding is not supported.
    UnsupportedMediaType,
    /// The caller sends too much; retry later.
    RateLimited,
    /// A dependency is down or a budget is spent; retry later.
    Unavailable,
    /// A bug or an unexpected failure.
    Internal,
}

/// gRPC status codes (`google.rpc.Code`) we use.
pub mod grpc {
    /// OK.
    pub const OK: i32 = 0;
    /// INVALID_ARGUMENT.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// NOT_FOUND.
    pub const NOT_FOUND: i32 = 5;
    /// PERMISSION_DENIED.
    pub const PERMISSION_DENIED: i32 = 7;
    /// RESOURCE_EXHAUSTED.
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// INTERNAL.
    pub const INTERNAL: i32 = 13;
    /// UNAVAILABLE.
    pub const UNAVAILABLE: i32 = 14;
    /// UNAUTHENTICATED.
    pub const UNAUTHENTICATED: i32 = 16;
}

impl ErrorCode {
    /// The HTTP status code.
    ///
    /// ```
    /// use observatory_schemas::error_code::ErrorCode;
    /// assert_eq!(ErrorCode::Unavailable.http_status(), 503);
    /// ```
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::PayloadTooLarge | ErrorCode::ResourceExhausted => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The gRPC status code. Over gRPC a too-large payload and a wrong media
    /// type are plain `INVALID_ARGUMENT`; a rate limit is `UNAVAILABLE`,
    /// which OTLP exporters retry (they do not retry `RESOURCE_EXHAUSTED`
    /// without a retry hint).
    pub const fn grpc_code(self) -> i32 {
        match self {
            ErrorCode::InvalidArgument
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UnsupportedMediaType => grpc::INVALID_ARGUMENT,
            ErrorCode::Unauthenticated => grpc::UNAUTHENTICATED,
            ErrorCode::PermissionDenied => grpc::PERMISSION_DENIED,
            ErrorCode::NotFound => grpc::NOT_FOUND,
            ErrorCode::ResourceExhausted => grpc::RESOURCE_EXHAUSTED,
            ErrorCode::RateLimited | ErrorCode::Unavailable => grpc::UNAVAILABLE,
            ErrorCode::Internal => grpc::INTERNAL,
        }
    }

    /// Whether a client should retry the same request later.
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::Unavailable)
    }

    /// A short, stable name, fit for a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes_are_retryable_on_both_transports() {
        for code in [ErrorCode::RateLimited, ErrorCode::Unavailable] {
            assert!(code.is_retryable());
            assert_eq!(code.grpc_code(), grpc::UNAVAILABLE);
            assert!(matches!(code.http_status(), 429 | 503));
        }
        assert!(!ErrorCode::InvalidArgument.is_retryable());
    }
}
