//! Grafana's dashboards of `deploy/grafana/dashboards/` as Grafana runs
//! them, for the test that runs every query (`tests/e2e/monitoring.rs`) and the
//! benchmark that times them on a large tenant (`dashboardbench`): the
//! panels' queries, and a dashboard SQL expanded as Grafana's PostgreSQL data
//! source expands its variables and macros before sending it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A dashboard of deploy/grafana/dashboards.
pub fn dashboard(file: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/grafana/dashboards")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (panel title, query) of every target's `field` (`expr`, `rawSql`).
pub fn panel_queries(dashboard: &serde_json::Value, field: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(q) = target[field].as_str() {
                out.push((
                    panel["title"].as_str().unwrap_or_default().to_owned(),
                    q.to_owned(),
                ));
            }
        }
    }
    out
}

/// What Grafana's PostgreSQL data source does to a query before sending it:
/// the dashboard's variables, then the macros.
pub struct Grafana {
    /// The range.
    pub from: SystemTime,
    /// The end of the range.
    pub to: SystemTime,
    /// `$__interval`, in seconds.
    pub interval_secs: u64,
    /// The dashboard variables' values as Grafana inserts them (see
    /// [`Grafana::variable`]).
    pub vars: Vec<(String, String)>,
}

impl Grafana {
    /// The query Grafana sends.
    pub fn expand(&self, query: &str) -> String {
        let time = |t| format!("'{}'", humantime::format_rfc3339_seconds(t));
        let mut sql = query
            .replace("$__interval_ms", &(self.interval_secs * 1000).to_string())
            .replace("$__interval", &format!("{}s", self.interval_secs))
            .replace("$__timeFrom()", &time(self.from))
            .replace("$__timeTo()", &time(self.to));
        for (name, value) in &self.vars {
            sql = sql.replace(&format!("${name}"), value);
        }
        let (from, to) = (time(self.from), time(self.to));
        let step = self.interval_secs;
        sql = macro_calls(&sql, "$__timeFilter(", |col| {
            format!("{col} BETWEEN {from} AND {to}")
        });
        sql = macro_calls(&sql, "$__timeGroupAlias(", |col| {
            format!("floor(extract(epoch from {col})/{step})*{step} AS \"time\"")
        });
        sql = macro_calls(&sql, "$__timeGroup(", |col| {
            format!("floor(extract(epoch from {col})/{step})*{step}")
        });
        assert!(
            !sql.contains('$'),
            "a variable or macro the test does not expand: {sql}"
        );
        sql
    }
}

/// `text` with every `name...)` replaced by `with(first argument)`.
fn macro_calls(text: &str, name: &str, with: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(name) {
        out.push_str(&rest[..at]);
        let args = &rest[at + name.len()..];
        let end = args.find(')').expect("a macro call is closed");
        let column = args[..end].split(',').next().unwrap().trim();
        out.push_str(&with(column));
        rest = &args[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The rows of a query, as text (the simple query protocol), panicking
/// with the query when PostgreSQL refuses it.
pub async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{sql}"));
    messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

impl Grafana {
    /// Sets a variable of `dashboard` as Grafana does when it loads it: a
    /// multi-value one to All, which inserts its custom all value as
    /// written (Grafana does not quote it); a single-value one to the first
    /// value its query lists, inserted with its quotes doubled.
    pub fn variable(&mut self, var: &serde_json::Value, listed: &[Vec<Option<String>>]) {
        let name = var["name"]
            .as_str()
            .expect("a variable has a name")
            .to_owned();
        let value = if var["multi"] == true {
            var["allValue"]
                .as_str()
                .expect("a custom all value")
                .to_owned()
        } else {
            let first = listed.first().and_then(|r| r[0].clone());
            first
                .unwrap_or_else(|| panic!("variable {name} lists nothing"))
                .replace('\'', "''")
        };
        self.vars.push((name, value));
    }

    /// A range ending `ahead` after now.
    pub fn last(range: Duration, ahead: Duration, interval_secs: u64) -> Grafana {
        let now = SystemTime::now();
        Grafana {
            from: now - range,
            to: now + ahead,
            interval_secs,
            vars: Vec::new(),
        }
    }
}
