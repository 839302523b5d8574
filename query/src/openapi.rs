//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the API, kept
//! in `query/openapi.json` and checked against the routes by a test.

/// The document.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// The reply.
pub fn reply() -> warp::reply::Response {
    let mut r = warp::reply::Reply::into_response(DOCUMENT);
    r.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}
