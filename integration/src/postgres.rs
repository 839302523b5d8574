//! A fresh PostgreSQL database per test, on the stack's server.

use tokio_postgres::{Client, NoTls};

/// The stack's server: `DATABASE_URL`'s server, else postgres@127.0.0.1:5432.
fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Connects to `url`.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("postgres is reachable (integration/stack.sh up)");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database that exists for one test.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl TestDb {
    /// Creates a database with a unique name.
    pub async fn create() -> TestDb {
        let name = crate::unique("obs");
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => format!("{base}/{name}"),
        };
        TestDb { name, url }
    }

    /// The URL with another host and port (to go through a proxy).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        format!("postgres://postgres@{addr}/{}", self.name)
    }

    /// A connection.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// A single number from a query.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .expect("query")
            .get::<_, Option<i64>>(0)
            .unwrap_or(0)
    }
}

/// Every column of `trace_summaries` that the spans and calls stored
/// determine, computed from them afresh, as text rows sorted by key
/// (`actual` from the table). Costs are rounded to 1e-9 USD: a sum's last
/// bits depend on the order it was added in.
const SUMMARIES_EXPECTED: &str = r#"
SELECT s.tenant, encode(s.trace_id, 'hex'), min(s.start_time),
       max(s.start_time + (s.duration_ns / 1000) * interval '1 microsecond'),
       (array_agg(s.service ORDER BY s.parent_span_id IS NOT NULL, s.start_time))[1],
       (array_agg(s.name ORDER BY s.parent_span_id IS NOT NULL, s.start_time))[1],
       bool_and(s.parent_span_id IS NOT NULL),
       count(*),
       bit_or(CASE s.status_code WHEN 2 THEN 4 WHEN 1 THEN 2 ELSE 1 END)::int2,
       count(c.span_id),
       coalesce(sum(c.input_tokens), 0), coalesce(sum(c.output_tokens), 0),
       coalesce(sum(c.cache_read_tokens), 0), coalesce(sum(c.cache_write_tokens), 0),
       coalesce(sum(c.reasoning_tokens), 0),
       round(coalesce(sum(c.cost_usd), 0)::numeric, 9),
       array_to_string(array_agg(DISTINCT s.service COLLATE "C" ORDER BY s.service COLLATE "C"), ','),
       coalesce(array_to_string(array_agg(DISTINCT c.model COLLATE "C" ORDER BY c.model COLLATE "C") FILTER (WHERE c.model IS NOT NULL), ','), ''),
       coalesce(array_to_string(array_agg(DISTINCT c.environment COLLATE "C" ORDER BY c.environment COLLATE "C") FILTER (WHERE c.environment <> ''), ','), ''),
       (array_agg(c.user_id ORDER BY c.start_time) FILTER (WHERE c.user_id IS NOT NULL))[1],
       (array_agg(c.session_id ORDER BY c.start_time) FILTER (WHERE c.session_id IS NOT NULL))[1]
  FROM spans s
  LEFT JOIN llm_calls c
    ON c.tenant = s.tenant AND c.trace_id = s.trace_id AND c.span_id = s.span_id AND c.start_time = s.start_time
 GROUP BY s.tenant, s.trace_id
 ORDER BY 1, 2"#;

const SUMMARIES_ACTUAL: &str = r#"
SELECT tenant, encode(trace_id, 'hex'), start_time, end_time, root_service, root_name, root_parented,
       span_count, statuses, llm_calls, input_tokens, output_tokens, cache_read_tokens,
       cache_write_tokens, reasoning_tokens, round(cost_usd::numeric, 9),
       array_to_string(services, ','), array_to_string(models, ','), array_to_string(environments, ','),
       user_id, session_id
  FROM trace_summaries
 ORDER BY 1, 2"#;

/// Asserts that `trace_summaries` holds exactly one row per stored trace,
/// equal to what its stored spans and calls say, and that each duration is
/// its end minus its start; returns how many traces.
pub async fn assert_summaries_match_spans(client: &Client) -> usize {
    let text = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        let v: Option<String> = r.get(i);
                        v.unwrap_or_else(|| "NULL".into())
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect()
    };
    let cast = |sql: &str| format!("SELECT row(x.*)::text FROM ({sql}) x");
    let expected = text(
        client
            .query(&cast(SUMMARIES_EXPECTED), &[])
            .await
            .expect("expected summaries"),
    );
    let actual = text(
        client
            .query(&cast(SUMMARIES_ACTUAL), &[])
            .await
            .expect("trace_summaries"),
    );
    let missing: Vec<&String> = expected.iter().filter(|e| !actual.contains(e)).collect();
    let extra: Vec<&String> = actual.iter().filter(|a| !expected.contains(a)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "trace_summaries differs from the spans stored:\n  expected, not found: {missing:#?}\n  found, not expected: {extra:#?}"
    );
    let bad_durations: i64 = client
        .query_one(
            "SELECT count(*) FROM trace_summaries
              WHERE duration_us <> (extract(epoch FROM end_time - start_time) * 1000000)::bigint",
            &[],
        )
        .await
        .expect("durations")
        .get(0);
    assert_eq!(bad_durations, 0, "duration_us is end minus start");
    expected.len()
}
