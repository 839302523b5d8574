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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::Params;
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::time::SystemTime;

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
        out
    }

    fn query_parameters(doc: &Value, path: &str) -> BTreeSet<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_document_is_openapi_3_1_and_its_refs_resolve() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = BTreeSet::new();
        for (path, method, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(
                ids.insert(id.clone()),
                "{method} {path}: operationId {id:?} twice"
            );
            assert!(!op["responses"].as_object().unwrap().is_empty());
        }
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let pointer = r.strip_prefix('#').expect("local refs only");
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn the_paths_are_the_served_routes() {
        let documented: BTreeSet<&str> = doc()["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| Box::leak(k.clone().into_boxed_str()) as &str)
            .collect();
        let served: BTreeSet<&str> = crate::metrics::ROUTES
            .iter()
            .copied()
            .filter(|r| *r != "other")
            .collect();
        assert_eq!(documented, served);
        for path in documented {
            let concrete = path
                .replace("{trace_id}", "0af7651916cd43dd8448eb211c80319c")
                .replace("{service}", "support-bot")
                .replace("{tag}", "service.name")
                .replace("{score_id}", "s-1")
                .replace("{name}", "helpfulness")
                .replace("{session_id}", "sess-1")
                .replace("{user_id}", "user-1");
            assert_eq!(crate::metrics::route(&concrete), path);
        }
    }

    /// The query parameters of each `/api/v1` endpoint are exactly those
    /// its parser asks for.
    #[test]
    fn the_parameters_are_the_parsed_ones() {
        let doc = doc();
        let now = SystemTime::now();
        let asked = |parse: &dyn Fn(&mut Params)| -> BTreeSet<String> {
            let mut p = Params::new(vec![]).unwrap();
            parse(&mut p);
            p.asked().iter().cloned().collect()
        };
        let named = |parse: &dyn Fn(&mut Params)| -> BTreeSet<String> {
            let mut p = Params::new(vec![("name".into(), "m".into())]).unwrap();
            parse(&mut p);
            p.asked().iter().cloned().collect()
        };
        let cases: [(&str, BTreeSet<String>); 13] = [
            (
                "/api/v1/logs",
                asked(&|p| {
                    crate::logs::ListQuery::parse(p, now).unwrap();
                }),
            ),
            (
                "/api/v1/metrics/query",
                named(&|p| {
                    crate::metric_queries::MetricQuery::parse(p, now).unwrap();
                }),
            ),
            (
                "/api/v1/traces",
                asked(&|p| {
                    crate::search::Search::parse(p, now).unwrap();
                }),
            ),
            (
                "/api/v1/llm/metrics",
                asked(&|p| {
                    crate::analytics::MetricsQuery::parse(p, now).unwrap();
                }),
            ),
            (
                "/api/v1/llm/costs",
                asked(&|p| {
                    crate::analytics::CostsQuery::parse(p, now).unwrap();
                }),
            ),
            (
                "/api/v1/models",
                asked(&|p| {
                    crate::analytics::parse_models(p, now).unwrap();
                }),
            ),
            (
                "/api/v1/scores",
                asked(&|p| {
                    crate::scores::read::ListQuery::parse(p, now).unwrap();
                }),
            ),
            (
                "/api/v1/scores/summary",
                asked(&|p| {
                    crate::scores::read::SummaryQuery::parse(p, now).unwrap();
                }),
            ),
            (
                "/api/v1/sessions",
                asked(&|p| {
                    crate::sessions::ListQuery::parse(p, now).unwrap();
                }),
            ),
            (
                "/api/v1/users",
                asked(&|p| {
                    crate::users::ListQuery::parse(p, now).unwrap();
                }),
            ),
            (
                "/api/v1/users/{user_id}",
                asked(&|p| {
                    crate::users::parse_detail(p, now).unwrap();
                }),
            ),
            ("/api/v1/budgets", BTreeSet::new()),
            ("/api/v1/pipeline", BTreeSet::new()),
        ];
        for (path, parsed) in cases {
            assert_eq!(query_parameters(&doc, path), parsed, "{path}");
        }
    }

    /// The query parameters of each Grafana Tempo route are exactly those
    /// it reads (Tempo routes ignore names they do not read, as Tempo does,
    /// so only this test keeps the document true).
    #[test]
    fn the_tempo_parameters_are_the_read_ones() {
        use crate::tempo_api::{self, Query};
        let doc = doc();
        let asked = |parse: &dyn Fn(&mut Query)| -> BTreeSet<String> {
            let mut q = Query::default();
            parse(&mut q);
            q.asked().iter().map(|name| (*name).to_owned()).collect()
        };
        let trace = asked(&|q| {
            tempo_api::parse_trace_range(q).unwrap();
        });
        let search = asked(&|q| {
            tempo_api::parse_search(q).unwrap();
        });
        let names = asked(&|q| {
            tempo_api::parse_tag_names(q).unwrap();
        });
        let values = asked(&|q| {
            tempo_api::parse_tag_values(q).unwrap();
        });
        let cases = [
            ("/api/echo", BTreeSet::new()),
            ("/api/status/buildinfo", BTreeSet::new()),
            ("/api/traces/{trace_id}", trace.clone()),
            ("/api/v2/traces/{trace_id}", trace),
            ("/api/search", search),
            ("/api/search/tags", names.clone()),
            ("/api/v2/search/tags", names),
            ("/api/search/tag/{tag}/values", values.clone()),
            ("/api/v2/search/tag/{tag}/values", values),
        ];
        let tempo_paths: BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|p| {
                p.starts_with("/api/") && !p.starts_with("/api/v1/") && !p.starts_with("/api/prom/")
            })
            .collect();
        assert_eq!(
            tempo_paths,
            cases.iter().map(|(p, _)| *p).collect::<BTreeSet<&str>>(),
            "every Tempo route has a case here"
        );
        for (path, read) in cases {
            assert_eq!(query_parameters(&doc, path), read, "{path}");
        }
    }

    /// Every documented operation is served: without a token it is refused
    /// (401) or answered, never "no such endpoint" or "method not allowed".
    #[tokio::test]
    async fn every_documented_operation_is_served() {
        let manager = deadpool_postgres::Manager::new(
            "postgres://nobody@127.0.0.1:1/none".parse().unwrap(),
            tokio_postgres::NoTls,
        );
        let state = crate::routes::State {
            keys: crate::auth::Keys::hs256(b"a secret of enough length"),
            db: deadpool_postgres::Pool::builder(manager).build().unwrap(),
            cache: crate::cache::Cache::disabled(),
            blocks: None,
            metrics: std::sync::Arc::new(crate::metrics::Metrics::default()),
            trace_max_spans: 10_000,
            search_time_budget: std::time::Duration::from_millis(400),
            traces_retention: std::time::Duration::from_secs(30 * 86_400),
            pipeline: Default::default(),
            pipeline_tenants: Default::default(),
            scores: None,
        };
        let routes = crate::routes::routes(state);
        for (path, method, op) in operations(&doc()) {
            let concrete = path
                .replace("{trace_id}", "0af7651916cd43dd8448eb211c80319c")
                .replace("{service}", "support-bot")
                .replace("{tag}", "service.name")
                .replace("{score_id}", "s-1")
                .replace("{name}", "helpfulness")
                .replace("{session_id}", "sess-1")
                .replace("{user_id}", "user-1");
            let response = warp::test::request()
                .method(&method.to_uppercase())
                .path(&concrete)
                .reply(&routes)
                .await;
            let status = response.status().as_u16();
            let public = op["security"] == serde_json::json!([]);
            if public {
                assert!(status == 200 || status == 503, "{method} {path}: {status}");
            } else {
                assert_eq!(status, 401, "{method} {path}");
            }
        }
    }
}
