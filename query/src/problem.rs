//! Errors as RFC 9457 problem details (`application/problem+json`), each
//! naming what was wrong: the parameter, or the credential.
//!
//! Every refusal of the API goes through [`Problem`], so a client always
//! gets a machine-readable `type`, the HTTP `status`, and for a bad
//! parameter its name in `parameter`. Internal errors are logged with their
//! cause and answered without it.

use crate::auth::AuthError;
use serde::Serialize;
use std::convert::Infallible;
use warp::http::StatusCode;
use warp::reply::Reply;

/// A problem details document.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// The request parameter at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// Seconds to wait before retrying: sent as the `Retry-After` header
    /// (429), not in the document.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl warp::reject::Reject for Problem {}

const BASE: &str = "https://llm-observatory.dev/problems/";

impl Problem {
    fn new(code: &str, title: &'static str, status: StatusCode, detail: String) -> Problem {
        Problem {
            kind: format!("{BASE}{code}"),
            title,
            status: status.as_u16(),
            detail,
            parameter: None,
            retry_after: None,
        }
    }

    /// A parameter with a value we cannot use (400).
    pub fn bad_parameter(parameter: &str, detail: impl Into<String>) -> Problem {
        Problem {
            parameter: Some(parameter.to_owned()),
            ..Problem::new(
                "bad-parameter",
                "Invalid request parameter",
                StatusCode::BAD_REQUEST,
                detail.into(),
            )
        }
    }

    /// A valid token that may not do this (403).
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(
            "forbidden",
            "Forbidden",
            StatusCode::FORBIDDEN,
            detail.into(),
        )
    }

    /// Nothing there for this tenant (404).
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(
            "not-found",
            "Not found",
            StatusCode::NOT_FOUND,
            detail.into(),
        )
    }

    /// A store failed (503: worth retrying). The cause is logged, not sent.
    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Problem {
        tracing::warn!(%cause, "{what} unavailable");
        Problem::new(
            "unavailable",
            "A store is unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} is unavailable; retry later"),
        )
    }

    /// The token made more requests than its rate limit allows (429); the
    /// reply carries `Retry-After: retry_after_secs` (at least 1).
    pub fn too_many_requests(retry_after_secs: u64) -> Problem {
        let secs = retry_after_secs.max(1);
        Problem {
            retry_after: Some(secs),
            ..Problem::new(
                "too-many-requests",
                "Too many requests",
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this caller (tenant and subject) is over its rate limit; retry in {secs} s"
                ),
            )
        }
    }

    /// A failed lookup in the Tempo blocks: too many in flight for the
    /// tenant is a 429 (retry in a second), anything else unavailable.
    pub fn blocks(e: crate::blocks::BlocksError) -> Problem {
        match e {
            crate::blocks::BlocksError::Busy(_) => Problem {
                retry_after: Some(1),
                ..Problem::new(
                    "too-many-requests",
                    "Too many requests",
                    StatusCode::TOO_MANY_REQUESTS,
                    e.to_string(),
                )
            },
            other => Problem::unavailable("object storage", other),
        }
    }

    /// A PostgreSQL error: one the request caused (a regular expression
    /// PostgreSQL refuses) as a 400, any other as unavailable (503; a query
    /// past `DB_STATEMENT_TIMEOUT` says so).
    pub fn postgres(e: tokio_postgres::Error) -> Problem {
        use tokio_postgres::error::SqlState;
        match e.code() {
            Some(c) if *c == SqlState::INVALID_REGULAR_EXPRESSION => {
                Problem::bad_parameter("attr", "PostgreSQL refused the regular expression")
            }
            Some(c) if *c == SqlState::QUERY_CANCELED => Problem::unavailable(
                "PostgreSQL (the query ran past its time limit; narrow it)",
                e,
            ),
            _ => Problem::unavailable("PostgreSQL", e),
        }
    }

    /// The reply.
    pub fn reply(&self) -> warp::reply::Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response =
            warp::reply::with_status(warp::reply::json(self), status).into_response();
        response.headers_mut().insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                warp::http::header::WWW_AUTHENTICATE,
                warp::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Problem {
        match e {
            AuthError::Forbidden { .. } => Problem::new(
                "forbidden",
                "Forbidden",
                StatusCode::FORBIDDEN,
                e.to_string(),
            ),
            AuthError::Missing | AuthError::Invalid(_) => Problem {
                parameter: Some("Authorization".into()),
                ..Problem::new(
                    "unauthorized",
                    "Unauthorized",
                    StatusCode::UNAUTHORIZED,
                    e.to_string(),
                )
            },
        }
    }
}

/// Turns every rejection into a problem document.
pub async fn recover(rejection: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    let problem = if let Some(p) = rejection.find::<Problem>() {
        p.clone()
    } else if rejection.is_not_found() {
        Problem::not_found("no such endpoint")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        Problem::new(
            "method-not-allowed",
            "Method not allowed",
            StatusCode::METHOD_NOT_ALLOWED,
            "this endpoint does not take that method".into(),
        )
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        Problem::bad_parameter("query", e.to_string())
    } else {
        Problem::new(
            "bad-request",
            "Bad request",
            StatusCode::BAD_REQUEST,
            format!("{rejection:?}"),
        )
    };
    Ok(problem.reply())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let p = Problem::too_many_requests(0);
        let r = p.reply();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[warp::http::header::RETRY_AFTER], "1");
        let r = Problem::too_many_requests(7).reply();
        assert_eq!(r.headers()[warp::http::header::RETRY_AFTER], "7");
        assert_eq!(
            r.headers()[warp::http::header::CONTENT_TYPE],
            "application/problem+json"
        );
        let doc = serde_json::to_value(&p).unwrap();
        assert_eq!(doc["status"], 429);
        assert!(doc.get("retry_after").is_none());
        assert!(Problem::not_found("x")
            .reply()
            .headers()
            .get(warp::http::header::RETRY_AFTER)
            .is_none());
    }
}
