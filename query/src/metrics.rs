//! `/metrics`: the API's Prometheus metrics, with bounded labels.
//!
//! Names follow `observatory_api_<noun>_<unit>`. Every label is bounded: a
//! request's path becomes its route template ([`route`]: ids, scopes and tag
//! names never reach a label; unknown paths are `other`), methods outside
//! the standard ones are `other`, statuses are HTTP codes, and the cache's
//! `endpoint` is one of the handful of names the handlers pass
//! ([`Metrics::endpoint`] caps them at [`MAX_ENDPOINTS`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::RwLock;
use std::time::Duration;

/// Labels of a served request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template ([`route`]).
    pub route: &'static str,
    /// The HTTP method (`other` outside the standard ones).
    pub method: &'static str,
    /// The HTTP status code.
    pub status: u16,
}

/// Labels of request durations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template ([`route`]).
    pub route: &'static str,
}

/// Labels of cache lookups.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CacheLabels {
    /// The endpoint the handler named ([`Metrics::endpoint`]).
    pub endpoint: &'static str,
    /// `hit`, `miss` or `error` (Redis failed, timed out or is known down:
    /// the answer was computed).
    pub result: &'static str,
}

/// Labels of refused authentications.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AuthLabels {
    /// `missing`, `invalid` or `forbidden`.
    pub reason: &'static str,
    /// The route template ([`route`]).
    pub route: &'static str,
}

/// Labels of rate-limit refusals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TenantLabels {
    /// The tenant, one of the first [`MAX_TENANT_LABELS`] seen, else `_other`.
    pub tenant: &'static str,
}

/// Labels of dropped audit events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AuditSinkLabels {
    /// `stdout` or `kafka`.
    pub sink: &'static str,
}

/// Most distinct tenants that get a label of their own in
/// `rate_limited_requests_total`; later ones count as `_other`.
pub const MAX_TENANT_LABELS: usize = 100;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request durations: 0.25 ms to ~8 s. The fine low end is for cached
/// answers, whose target is 2 ms.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Most distinct cache endpoint labels. The handlers pass a handful of
/// fixed names; anything past this bound is counted as `other`, so a
/// mistake in a handler cannot grow the label set.
pub const MAX_ENDPOINTS: usize = 32;

/// The API's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests served, by route template, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to serve a request, by route template.
    pub request_duration: HistogramFamily<RouteLabels>,
    /// Cache lookups by endpoint and result.
    pub cache_requests: Family<CacheLabels, Counter>,
    /// Requests refused with 429 by the per-token rate limit.
    pub rate_limited: Counter,
    /// 1 while Redis answers, 0 during an outage (cache off, rate limit
    /// open) or when Redis is not configured.
    pub redis_up: Gauge,
    /// Refused authentications by reason and route.
    pub auth_failures: Family<AuthLabels, Counter>,
    /// Rate-limit refusals by tenant (bounded: [`MAX_TENANT_LABELS`]).
    pub rate_limited_tenants: Family<TenantLabels, Counter>,
    /// Requests refused because they named another tenant than their token's.
    pub cross_tenant_refusals: Counter,
    /// Scores published by `POST /api/v1/scores`.
    pub scores_written: Counter,
    /// Audit events written.
    pub audit_events: Counter,
    /// Audit events dropped because their sink could not keep up.
    pub audit_dropped: Family<AuditSinkLabels, Counter>,
    /// Bytes of Tempo blocks read by trace lookups and searches.
    pub blocks_read_bytes: Counter,
    endpoints: RwLock<Vec<&'static str>>,
    tenants: RwLock<Vec<&'static str>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(request_histogram),
            cache_requests: Family::default(),
            rate_limited: Counter::default(),
            redis_up: Gauge::default(),
            auth_failures: Family::default(),
            rate_limited_tenants: Family::default(),
            cross_tenant_refusals: Counter::default(),
            scores_written: Counter::default(),
            audit_events: Counter::default(),
            audit_dropped: Family::default(),
            blocks_read_bytes: Counter::default(),
            endpoints: RwLock::new(Vec::new()),
            tenants: RwLock::new(Vec::new()),
        };
        let p = "observatory_api_";
        registry.register(
            format!("{p}requests"),
            "Requests served, by route template, method and status",
            m.requests.clone(),
        );
        registry.register(
            format!("{p}request_duration_seconds"),
            "Time to serve a request, by route template",
            m.request_duration.clone(),
        );
        registry.register(
            format!("{p}cache_requests"),
            "Cache lookups by endpoint and result: hit, miss or error (answered from the database)",
            m.cache_requests.clone(),
        );
        registry.register(
            format!("{p}rate_limited"),
            "Requests refused with 429 by the per-token rate limit",
            m.rate_limited.clone(),
        );
        registry.register(
            format!("{p}auth_failures"),
            "Requests refused for their token (missing, invalid, forbidden), by route",
            m.auth_failures.clone(),
        );
        registry.register(
            format!("{p}rate_limited_requests"),
            "Requests refused with 429, by tenant (the first 100 tenants seen; then _other)",
            m.rate_limited_tenants.clone(),
        );
        registry.register(
            format!("{p}scores_written"),
            "Scores the broker acknowledged from POST /api/v1/scores",
            m.scores_written.clone(),
        );
        registry.register(
            format!("{p}cross_tenant_refusals"),
            "Requests refused because their X-Scope-OrgID named another tenant than their token's",
            m.cross_tenant_refusals.clone(),
        );
        registry.register(
            format!("{p}audit_events"),
            "Audit events written",
            m.audit_events.clone(),
        );
        registry.register(
            format!("{p}audit_events_dropped"),
            "Audit events dropped because stdout or Kafka could not keep up, by sink",
            m.audit_dropped.clone(),
        );
        registry.register(
            format!("{p}blocks_read_bytes"),
            "Bytes of Tempo blocks read from object storage by trace lookups and searches (bloom shards, metas, indexes, footers, pages, column chunks)",
            m.blocks_read_bytes.clone(),
        );
        registry.register(
            format!("{p}redis_up"),
            "1 while Redis answers; 0 during an outage or when REDIS_URL is unset",
            m.redis_up.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a served request (route label bounded by the route table).
    pub fn observe(&self, info: warp::log::Info<'_>) {
        self.record(
            route(info.path()),
            method(info.method()),
            info.status().as_u16(),
            info.elapsed(),
        );
    }

    /// Counts a served request, labels already bounded.
    fn record(&self, route: &'static str, method: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a cache lookup of `endpoint` with `result` (`hit`, `miss`,
    /// `error`).
    pub fn cache_result(&self, endpoint: &'static str, result: &'static str) {
        self.cache_requests
            .get_or_create(&CacheLabels { endpoint, result })
            .inc();
    }

    /// The label for a cache endpoint name: the name itself for the first
    /// [`MAX_ENDPOINTS`] names made of `[A-Za-z0-9_./-]` (at most 64
    /// bytes), `other` for anything else.
    pub fn endpoint(&self, name: &str) -> &'static str {
        if let Some(known) = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|k| **k == name)
        {
            return known;
        }
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_./-".contains(&b));
        if !valid || name == "other" {
            return "other";
        }
        let mut known = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = known.iter().find(|k| **k == name) {
            return k;
        }
        if known.len() >= MAX_ENDPOINTS {
            return "other";
        }
        // Leaked on purpose: at most MAX_ENDPOINTS short names, once each,
        // so the labels can be `&'static str` like every other label here.
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        known.push(name);
        name
    }

    /// Counts a refused authentication of a request to `path`.
    pub fn auth_failure(&self, reason: &'static str, path: &str) {
        self.auth_failures
            .get_or_create(&AuthLabels {
                reason,
                route: route(path),
            })
            .inc();
    }

    /// Counts a rate-limit refusal of `tenant` (a verified token's tenant).
    pub fn rate_limited_tenant(&self, tenant: &str) {
        let label = self.tenant_label(tenant);
        self.rate_limited_tenants
            .get_or_create(&TenantLabels { tenant: label })
            .inc();
    }

    /// `tenant` as a label: itself for the first [`MAX_TENANT_LABELS`]
    /// tenants seen, `_other` after (a tenant name is at most 64 safe
    /// characters, and leaked once each, like the endpoint names).
    fn tenant_label(&self, tenant: &str) -> &'static str {
        if let Some(known) = self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|k| **k == tenant)
        {
            return known;
        }
        if observatory_schemas::tenant::validate(tenant).is_err() {
            return "_other";
        }
        let mut known = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = known.iter().find(|k| **k == tenant) {
            return k;
        }
        if known.len() >= MAX_TENANT_LABELS {
            return "_other";
        }
        let name: &'static str = Box::leak(tenant.to_owned().into_boxed_str());
        known.push(name);
        name
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The method as a bounded label.
fn method(m: &warp::http::Method) -> &'static str {
    use warp::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Every route template the API serves (the OpenAPI document's paths, a
/// test checks), and `other`.
pub const ROUTES: [&str; 42] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/traces",
    "/api/v1/traces/{trace_id}",
    "/api/v1/llm/metrics",
    "/api/v1/llm/costs",
    "/api/v1/budgets",
    "/api/v1/budgets/tenant",
    "/api/v1/budgets/services/{service}",
    "/api/v1/models",
    "/api/v1/pipeline",
    "/api/v1/scores",
    "/api/v1/scores/summary",
    "/api/v1/scores/{score_id}",
    "/api/v1/score-configs",
    "/api/v1/score-configs/{name}",
    "/api/v1/sessions",
    "/api/v1/sessions/{session_id}",
    "/api/v1/users",
    "/api/v1/users/{user_id}",
    "/api/v1/logs",
    "/api/v1/metrics/names",
    "/api/v1/metrics/labels",
    "/api/v1/metrics/query",
    "/api/v1/openapi.json",
    "/api/echo",
    "/api/status/buildinfo",
    "/api/traces/{trace_id}",
    "/api/v2/traces/{trace_id}",
    "/api/search",
    "/api/search/tags",
    "/api/v2/search/tags",
    "/api/search/tag/{tag}/values",
    "/api/v2/search/tag/{tag}/values",
    "/api/prom/api/v1/query_range",
    "/api/prom/api/v1/query",
    "/api/prom/api/v1/labels",
    "/api/prom/api/v1/label/{name}/values",
    "/api/prom/api/v1/series",
    "/api/prom/api/v1/status/buildinfo",
    "other",
];

/// The route template of a request path: one of [`ROUTES`], `other` for
/// anything else (so a scan of random paths adds one label value, not one
/// per path).
pub fn route(path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix('/') else {
        return "other";
    };
    let mut s = [""; 7];
    let mut n = 0;
    for part in rest.split('/') {
        if n == s.len() || part.is_empty() {
            return "other";
        }
        s[n] = part;
        n += 1;
    }
    match &s[..n] {
        ["healthz"] => "/healthz",
        ["readyz"] => "/readyz",
        ["metrics"] => "/metrics",
        ["api", "v1", "traces"] => "/api/v1/traces",
        ["api", "v1", "traces", _] => "/api/v1/traces/{trace_id}",
        ["api", "v1", "llm", "metrics"] => "/api/v1/llm/metrics",
        ["api", "v1", "llm", "costs"] => "/api/v1/llm/costs",
        ["api", "v1", "budgets"] => "/api/v1/budgets",
        ["api", "v1", "budgets", "tenant"] => "/api/v1/budgets/tenant",
        ["api", "v1", "budgets", "services", _] => "/api/v1/budgets/services/{service}",
        ["api", "v1", "models"] => "/api/v1/models",
        ["api", "v1", "pipeline"] => "/api/v1/pipeline",
        ["api", "v1", "scores"] => "/api/v1/scores",
        ["api", "v1", "scores", "summary"] => "/api/v1/scores/summary",
        ["api", "v1", "scores", _] => "/api/v1/scores/{score_id}",
        ["api", "v1", "score-configs"] => "/api/v1/score-configs",
        ["api", "v1", "score-configs", _] => "/api/v1/score-configs/{name}",
        ["api", "v1", "sessions"] => "/api/v1/sessions",
        ["api", "v1", "sessions", _] => "/api/v1/sessions/{session_id}",
        ["api", "v1", "users"] => "/api/v1/users",
        ["api", "v1", "users", _] => "/api/v1/users/{user_id}",
        ["api", "v1", "logs"] => "/api/v1/logs",
        ["api", "v1", "metrics", "names"] => "/api/v1/metrics/names",
        ["api", "v1", "metrics", "labels"] => "/api/v1/metrics/labels",
        ["api", "v1", "metrics", "query"] => "/api/v1/metrics/query",
        ["api", "v1", "openapi.json"] => "/api/v1/openapi.json",
        ["api", "echo"] => "/api/echo",
        ["api", "status", "buildinfo"] => "/api/status/buildinfo",
        ["api", "traces", _] => "/api/traces/{trace_id}",
        ["api", "v2", "traces", _] => "/api/v2/traces/{trace_id}",
        ["api", "search"] => "/api/search",
        ["api", "search", "tags"] => "/api/search/tags",
        ["api", "v2", "search", "tags"] => "/api/v2/search/tags",
        ["api", "search", "tag", _, "values"] => "/api/search/tag/{tag}/values",
        ["api", "v2", "search", "tag", _, "values"] => "/api/v2/search/tag/{tag}/values",
        ["api", "prom", "api", "v1", "query_range"] => "/api/prom/api/v1/query_range",
        ["api", "prom", "api", "v1", "query"] => "/api/prom/api/v1/query",
        ["api", "prom", "api", "v1", "labels"] => "/api/prom/api/v1/labels",
        ["api", "prom", "api", "v1", "label", _, "values"] => {
            "/api/prom/api/v1/label/{name}/values"
        }
        ["api", "prom", "api", "v1", "series"] => "/api/prom/api/v1/series",
        ["api", "prom", "api", "v1", "status", "buildinfo"] => "/api/prom/api/v1/status/buildinfo",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates() {
        for (path, want) in [
            ("/healthz", "/healthz"),
            ("/readyz", "/readyz"),
            ("/metrics", "/metrics"),
            ("/api/v1/traces", "/api/v1/traces"),
            (
                "/api/v1/traces/0af7651916cd43dd8448eb211c80319c",
                "/api/v1/traces/{trace_id}",
            ),
            ("/api/v1/traces/x%2Fy", "/api/v1/traces/{trace_id}"),
            ("/api/v1/llm/metrics", "/api/v1/llm/metrics"),
            ("/api/v1/llm/costs", "/api/v1/llm/costs"),
            ("/api/v1/budgets", "/api/v1/budgets"),
            ("/api/v1/budgets/tenant", "/api/v1/budgets/tenant"),
            (
                "/api/v1/budgets/services/support%20bot",
                "/api/v1/budgets/services/{service}",
            ),
            ("/api/v1/models", "/api/v1/models"),
            ("/api/v1/openapi.json", "/api/v1/openapi.json"),
            ("/api/echo", "/api/echo"),
            ("/api/traces/abc", "/api/traces/{trace_id}"),
            ("/api/v2/traces/abc", "/api/v2/traces/{trace_id}"),
            ("/api/search", "/api/search"),
            ("/api/search/tags", "/api/search/tags"),
            ("/api/v2/search/tags", "/api/v2/search/tags"),
            (
                "/api/search/tag/service.name/values",
                "/api/search/tag/{tag}/values",
            ),
            (
                "/api/v2/search/tag/.service.name/values",
                "/api/v2/search/tag/{tag}/values",
            ),
            (
                "/api/prom/api/v1/query_range",
                "/api/prom/api/v1/query_range",
            ),
            (
                "/api/prom/api/v1/label/gen_ai_system/values",
                "/api/prom/api/v1/label/{name}/values",
            ),
            (
                "/api/prom/api/v1/status/buildinfo",
                "/api/prom/api/v1/status/buildinfo",
            ),
        ] {
            assert_eq!(route(path), want, "{path}");
        }
        for path in [
            "",
            "/",
            "healthz",
            "/healthz/",
            "/api/v1/traces/",
            "/api/v1/traces/a/b",
            "/api/v1//traces",
            "/api/v1/llm",
            "/api/v1/budgets/services",
            "/api/search/tag//values",
            "/api/v3/search/tags",
            "/api/prom/api/v1/label//values",
            "/api/prom/api/v2/query",
            "/wp-admin/setup.php",
            "/a/b/c/d/e/f/g/h/i",
        ] {
            assert_eq!(route(path), "other", "{path}");
        }
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method(&warp::http::Method::GET), "GET");
        let odd = warp::http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method(&odd), "other");
    }

    #[test]
    fn endpoint_labels_are_bounded() {
        let m = Metrics::new();
        assert_eq!(m.endpoint("llm_metrics"), "llm_metrics");
        assert_eq!(m.endpoint("llm_metrics"), "llm_metrics");
        assert_eq!(m.endpoint(""), "other");
        assert_eq!(m.endpoint("has space"), "other");
        assert_eq!(m.endpoint(&"x".repeat(65)), "other");
        for i in 1..MAX_ENDPOINTS {
            assert_eq!(m.endpoint(&format!("e{i}")), format!("e{i}"));
        }
        assert_eq!(m.endpoint("one_too_many"), "other");
        assert_eq!(m.endpoint("e1"), "e1");
    }

    #[test]
    fn every_metric_is_exported() {
        let m = Metrics::new();
        m.record(
            "/api/v1/llm/metrics",
            "GET",
            200,
            Duration::from_micros(800),
        );
        m.cache_result(m.endpoint("llm_metrics"), "hit");
        m.rate_limited.inc();
        m.redis_up.set(1);
        let text = m.encode();
        for line in [
            "observatory_api_requests_total{route=\"/api/v1/llm/metrics\",method=\"GET\",status=\"200\"} 1",
            "observatory_api_request_duration_seconds_bucket{le=\"0.001\",route=\"/api/v1/llm/metrics\"} 1",
            "observatory_api_request_duration_seconds_count{route=\"/api/v1/llm/metrics\"} 1",
            "observatory_api_cache_requests_total{endpoint=\"llm_metrics\",result=\"hit\"} 1",
            "observatory_api_rate_limited_total 1",
            "observatory_api_redis_up 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }
}
