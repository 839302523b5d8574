//! Scores: `POST /api/v1/scores` and `DELETE /api/v1/scores/{id}` (role
//! editor or above) publish to the `scores` topic; `GET /api/v1/scores`,
//! `GET /api/v1/scores/summary` and the score configs read and set what
//! the PostgreSQL sink stored.
//!
//! What it guarantees: a write is answered 202 only once the broker
//! acknowledged every score of the request ([`publish`]); nothing of a
//! request is published unless all of it is valid: each score passes
//! [`Score::check`] and its name's config ([`configs`]), and its target (a
//! trace, a span of it, a session) is stored for the token's tenant, so a
//! score never lands on another tenant's trace. The author is the token's
//! subject. A score without an id gets one derived from its tenant, target,
//! name, source and author: writing it again (a retry, a changed thumbs
//! vote) replaces it instead of adding one.
//!
//! Files: [`publish`] the producer, [`read`] the list and summary,
//! [`configs`] the per-name definitions.

pub mod configs;
pub mod publish;
pub mod read;

use crate::auth::Claims;
use crate::filters::parse_rfc3339;
use crate::problem::Problem;
use crate::routes::State;
use observatory_schemas::kafka::parse_hex;
use observatory_schemas::scores::{derived_id, DataType, Score, ScoreMessage, Source};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warp::http::StatusCode;
use warp::{Rejection, Reply};

/// Most scores one request writes.
pub const MAX_BATCH: usize = 1_000;
/// Largest request body, bytes: large enough that an oversized comment is
/// refused by its own check (naming `comment`), not by the body limit.
pub const MAX_BODY: u64 = 16 << 20;
/// How far ahead of the server's clock a score's time may be.
const MAX_AHEAD: Duration = Duration::from_secs(3600);

/// One score as a client writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreInput {
    id: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
    session_id: Option<String>,
    name: String,
    data_type: Option<DataType>,
    value: Value,
    comment: Option<String>,
    source: Option<Source>,
    time: Option<String>,
    #[serde(default)]
    metadata: serde_json::Map<String, Value>,
}

fn bad(index: Option<usize>, field: &str, detail: impl std::fmt::Display) -> Problem {
    let at = index.map_or(String::new(), |i| format!("scores[{i}]: "));
    Problem::bad_parameter(field, format!("{at}{detail}"))
}

/// The value as (data type, number, label), from the declared type or,
/// without one, from the JSON type (number, boolean, string).
fn value_of(
    declared: Option<DataType>,
    value: &Value,
) -> Result<(DataType, Option<f64>, Option<String>), String> {
    match (declared, value) {
        (None | Some(DataType::Numeric), Value::Number(n)) => {
            Ok((DataType::Numeric, n.as_f64(), None))
        }
        (None | Some(DataType::Boolean), Value::Bool(b)) => Ok((
            DataType::Boolean,
            Some(f64::from(u8::from(*b))),
            Some(b.to_string()),
        )),
        (Some(DataType::Boolean), Value::Number(n)) if matches!(n.as_f64(), Some(v) if v == 0.0 || v == 1.0) =>
        {
            let b = n.as_f64() == Some(1.0);
            Ok((DataType::Boolean, n.as_f64(), Some(b.to_string())))
        }
        (None | Some(DataType::Categorical), Value::String(s)) => {
            Ok((DataType::Categorical, None, Some(s.clone())))
        }
        (Some(DataType::Text), Value::String(s)) => Ok((DataType::Text, None, Some(s.clone()))),
        (Some(t), v) => Err(format!("a {} score's value cannot be {v}", t.as_str())),
        (None, v) => Err(format!(
            "a number, a boolean or a label, not {}",
            if v.is_null() { "null" } else { "this" }
        )),
    }
}

/// The scores of a request body (one object or an array of them), checked
/// and with ids, for `claims`' tenant and author.
fn parse_body(body: &[u8], claims: &Claims, now: SystemTime) -> Result<Vec<Score>, Problem> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_parameter("body", format!("not JSON: {e}")))?;
    let (items, batch) = match json {
        Value::Array(items) => (items, true),
        one @ Value::Object(_) => (vec![one], false),
        _ => {
            return Err(Problem::bad_parameter(
                "body",
                "a score object or an array of them",
            ))
        }
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(Problem::bad_parameter(
            "body",
            format!("1 to {MAX_BATCH} scores per request"),
        ));
    }
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = batch.then_some(i);
        let input: ScoreInput =
            serde_json::from_value(item).map_err(|e| bad(at, "body", format!("{e}")))?;
        let (data_type, value, label) =
            value_of(input.data_type, &input.value).map_err(|e| bad(at, "value", e))?;
        let source = match input.source.unwrap_or(Source::Api) {
            Source::Otlp => {
                return Err(bad(
                    at,
                    "source",
                    "otlp scores come from gen_ai.evaluation.result events; use api, annotation or eval",
                ))
            }
            s => s,
        };
        let time_unix_nano = match &input.time {
            None => now_ns,
            Some(t) => {
                let t = parse_rfc3339(t).map_err(|e| bad(at, "time", e))?;
                if t > now + MAX_AHEAD {
                    return Err(bad(
                        at,
                        "time",
                        "more than an hour ahead of the server's clock",
                    ));
                }
                t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
            }
        };
        let mut score = Score {
            id: input.id.clone().unwrap_or_default(),
            tenant: claims.tenant.clone(),
            trace_id: input.trace_id.map(|t| t.to_ascii_lowercase()),
            span_id: input.span_id.map(|s| s.to_ascii_lowercase()),
            session_id: input.session_id,
            name: input.name,
            data_type,
            value,
            label,
            comment: input.comment,
            source,
            author: Some(claims.sub.clone()),
            time_unix_nano,
            metadata: input.metadata,
        };
        if input.id.is_none() {
            score.id = derived_id(&score, "");
        }
        score.check().map_err(|e| bad(at, e.field, e.detail))?;
        out.push(score);
    }
    Ok(out)
}

/// Refuses scores whose target is not stored for the tenant.
async fn check_targets(
    client: &tokio_postgres::Client,
    tenant: &str,
    scores: &[Score],
) -> Result<(), Problem> {
    let traces: BTreeSet<Vec<u8>> = scores
        .iter()
        .filter_map(|s| s.trace_id.as_deref().and_then(parse_hex))
        .collect();
    if !traces.is_empty() {
        let ids: Vec<&[u8]> = traces.iter().map(Vec::as_slice).collect();
        let found: BTreeSet<Vec<u8>> = client
            .query(
                "SELECT trace_id FROM trace_summaries WHERE tenant = $1 AND trace_id = ANY($2)",
                &[&tenant, &ids],
            )
            .await
            .map_err(Problem::postgres)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some((i, s)) = scores.iter().enumerate().find(|(_, s)| {
            s.trace_id
                .as_deref()
                .and_then(parse_hex)
                .is_some_and(|t| !found.contains(&t))
        }) {
            return Err(bad(
                (scores.len() > 1).then_some(i),
                "trace_id",
                format!(
                    "no trace {} is stored for your tenant (yet)",
                    s.trace_id.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    // Spans in one query for the whole batch.
    let pairs: Vec<(usize, Vec<u8>, Vec<u8>)> = scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            Some((
                i,
                parse_hex(s.trace_id.as_deref()?)?,
                parse_hex(s.span_id.as_deref()?)?,
            ))
        })
        .collect();
    if !pairs.is_empty() {
        let traces: Vec<&[u8]> = pairs.iter().map(|p| p.1.as_slice()).collect();
        let spans: Vec<&[u8]> = pairs.iter().map(|p| p.2.as_slice()).collect();
        let found: BTreeSet<(Vec<u8>, Vec<u8>)> = client
            .query(
                "SELECT DISTINCT s.trace_id, s.span_id FROM spans s
                   JOIN unnest($2::bytea[], $3::bytea[]) AS w(trace_id, span_id)
                     ON s.trace_id = w.trace_id AND s.span_id = w.span_id
                  WHERE s.tenant = $1",
                &[&tenant, &traces, &spans],
            )
            .await
            .map_err(Problem::postgres)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        if let Some((i, _, _)) = pairs
            .iter()
            .find(|(_, t, s)| !found.contains(&(t.clone(), s.clone())))
        {
            let s = &scores[*i];
            return Err(bad(
                (scores.len() > 1).then_some(*i),
                "span_id",
                format!(
                    "trace {} has no span {}",
                    s.trace_id.as_deref().unwrap_or_default(),
                    s.span_id.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    let sessions: Vec<&str> = scores
        .iter()
        .filter(|s| s.trace_id.is_none())
        .filter_map(|s| s.session_id.as_deref())
        .collect();
    if !sessions.is_empty() {
        let found: BTreeSet<String> = client
            .query(
                "SELECT session_id FROM session_summaries WHERE tenant = $1 AND session_id = ANY($2)",
                &[&tenant, &sessions],
            )
            .await
            .map_err(Problem::postgres)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(missing) = sessions.iter().find(|s| !found.contains(**s)) {
            return Err(Problem::bad_parameter(
                "session_id",
                format!("no session {missing:?} is stored for your tenant (yet)"),
            ));
        }
    }
    Ok(())
}

fn publisher(state: &State) -> Result<&publish::Publisher, Problem> {
    state.scores.as_deref().ok_or_else(|| {
        Problem::unavailable(
            "the scores topic",
            "KAFKA_SCORES_TOPIC is empty: score writes are off",
        )
    })
}

/// `POST /api/v1/scores`: one score object or an array; 202 with their ids
/// once the broker has them.
pub async fn post(
    claims: Claims,
    body: bytes::Bytes,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let run = async {
        let publisher = publisher(&state)?;
        let mut scores = parse_body(&body, &claims, SystemTime::now())?;
        let client = crate::v1::db(&state).await?;
        let names: Vec<&str> = scores.iter().map(|s| s.name.as_str()).collect();
        let configs = configs::for_names(&client, &claims.tenant, &names).await?;
        let many = scores.len() > 1;
        for (i, score) in scores.iter_mut().enumerate() {
            if let Some(config) = configs.get(&score.name) {
                config
                    .check(score)
                    .map_err(|e| bad(many.then_some(i), e.field, e.detail))?;
            }
        }
        check_targets(&client, &claims.tenant, &scores).await?;
        drop(client);
        let ids: Vec<String> = scores.iter().map(|s| s.id.clone()).collect();
        let messages: Vec<ScoreMessage> = scores
            .into_iter()
            .map(|score| ScoreMessage::Upsert { score })
            .collect();
        publisher
            .publish(&claims.tenant, &messages)
            .await
            .map_err(|e| Problem::unavailable("Kafka", e))?;
        state.metrics.scores_written.inc_by(ids.len() as u64);
        Ok::<_, Problem>(warp::reply::with_status(
            warp::reply::json(&serde_json::json!({ "ids": ids })),
            StatusCode::ACCEPTED,
        ))
    };
    run.await
        .map(Reply::into_response)
        .map_err(warp::reject::custom)
}

/// `DELETE /api/v1/scores/{id}`: 202 once the broker has the deletion.
pub async fn delete(
    id: String,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let run = async {
        let publisher = publisher(&state)?;
        let id = percent_encoding::percent_decode_str(&id)
            .decode_utf8()
            .map_err(|_| Problem::bad_parameter("id", "not UTF-8 once decoded"))?
            .into_owned();
        let client = crate::v1::db(&state).await?;
        let row = client
            .query_opt(
                "SELECT trace_id, time_ns FROM scores WHERE tenant = $1 AND id = $2 AND NOT deleted",
                &[&claims.tenant, &id],
            )
            .await
            .map_err(Problem::postgres)?
            .ok_or_else(|| Problem::not_found("no score with this id for your tenant"))?;
        drop(client);
        let trace: Option<Vec<u8>> = row.get(0);
        let stored_ns: i64 = row.get(1);
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        // Later than the stored write even when its time was set ahead.
        let time_unix_nano = now_ns.max(stored_ns as u64 + 1);
        let message = ScoreMessage::Delete {
            tenant: claims.tenant.clone(),
            id: id.clone(),
            trace_id: trace.as_deref().map(crate::traces::hex),
            time_unix_nano,
        };
        publisher
            .publish(&claims.tenant, &[message])
            .await
            .map_err(|e| Problem::unavailable("Kafka", e))?;
        Ok::<_, Problem>(warp::reply::with_status(
            warp::reply::json(&serde_json::json!({ "id": id, "deleted": true })),
            StatusCode::ACCEPTED,
        ))
    };
    run.await
        .map(Reply::into_response)
        .map_err(warp::reject::custom)
}

/// Scores of one trace by span (`""` for the trace's own), for the trace view.
pub async fn of_trace(
    client: &tokio_postgres::Client,
    tenant: &str,
    trace_id: &[u8; 16],
) -> Result<HashMap<String, Vec<read::ScoreView>>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM scores WHERE tenant = $1 AND trace_id = $2 AND NOT deleted ORDER BY time",
                read::COLUMNS
            ),
            &[&tenant, &&trace_id[..]],
        )
        .await?;
    let mut out: HashMap<String, Vec<read::ScoreView>> = HashMap::new();
    for row in &rows {
        let view = read::ScoreView::of(row);
        out.entry(view.span_id.clone().unwrap_or_default())
            .or_default()
            .push(view);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn claims() -> Claims {
        Claims {
            sub: "ann".into(),
            tenant: "acme".into(),
            role: Role::Editor,
            exp: 0,
        }
    }

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    fn parse(body: &str) -> Result<Vec<Score>, Problem> {
        parse_body(
            body.as_bytes(),
            &claims(),
            UNIX_EPOCH + Duration::from_secs(1_000),
        )
    }

    #[test]
    fn values_take_their_type_from_json_or_the_declared_type() {
        let s = parse(&format!(
            r#"[{{"trace_id":"{TRACE}","name":"q","value":0.5}},
                {{"trace_id":"{TRACE}","name":"thumbs","value":true}},
                {{"trace_id":"{TRACE}","name":"tone","value":"polite"}},
                {{"trace_id":"{TRACE}","name":"note","data_type":"text","value":"fine"}},
                {{"trace_id":"{TRACE}","name":"ok","data_type":"boolean","value":0}}]"#
        ))
        .unwrap();
        let got: Vec<(DataType, Option<f64>, Option<&str>)> = s
            .iter()
            .map(|s| (s.data_type, s.value, s.label.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (DataType::Numeric, Some(0.5), None),
                (DataType::Boolean, Some(1.0), Some("true")),
                (DataType::Categorical, None, Some("polite")),
                (DataType::Text, None, Some("fine")),
                (DataType::Boolean, Some(0.0), Some("false")),
            ]
        );
        assert!(s.iter().all(|s| s.author.as_deref() == Some("ann")));
        assert!(s.iter().all(|s| s.tenant == "acme"));
        assert_eq!(s[0].time_unix_nano, 1_000_000_000_000);
    }

    #[test]
    fn the_same_score_again_gets_the_same_id() {
        let body = format!(r#"{{"trace_id":"{TRACE}","name":"q","value":1}}"#);
        let again = format!(r#"{{"trace_id":"{TRACE}","name":"q","value":0}}"#);
        assert_eq!(parse(&body).unwrap()[0].id, parse(&again).unwrap()[0].id);
        let other = format!(r#"{{"trace_id":"{TRACE}","name":"r","value":1}}"#);
        assert_ne!(parse(&body).unwrap()[0].id, parse(&other).unwrap()[0].id);
        let given = format!(r#"{{"id":"mine-1","trace_id":"{TRACE}","name":"q","value":1}}"#);
        assert_eq!(parse(&given).unwrap()[0].id, "mine-1");
    }

    #[test]
    fn bad_scores_name_their_field() {
        let field = |body: String| parse(&body).unwrap_err().parameter.unwrap();
        assert_eq!(
            field(format!(
                r#"{{"trace_id":"{TRACE}","name":"q","value":null}}"#
            )),
            "value"
        );
        assert_eq!(
            field(format!(
                r#"{{"trace_id":"{TRACE}","name":"q","data_type":"numeric","value":"x"}}"#
            )),
            "value"
        );
        assert_eq!(field(r#"{"name":"q","value":1}"#.into()), "trace_id");
        assert_eq!(
            field(format!(r#"{{"trace_id":"{TRACE}","name":"","value":1}}"#)),
            "name"
        );
        assert_eq!(
            field(format!(
                r#"{{"trace_id":"{TRACE}","name":"q","value":1,"source":"otlp"}}"#
            )),
            "source"
        );
        assert_eq!(
            field(format!(
                r#"{{"trace_id":"{TRACE}","name":"q","value":1,"colour":"red"}}"#
            )),
            "body"
        );
        let huge = "x".repeat(10 << 20);
        assert_eq!(
            field(format!(
                r#"{{"trace_id":"{TRACE}","name":"q","value":1,"comment":"{huge}"}}"#
            )),
            "comment"
        );
        assert_eq!(
            field(format!(
                r#"{{"trace_id":"{TRACE}","name":"q","value":1,"time":"2100-01-01T00:00:00Z"}}"#
            )),
            "time"
        );
        let e = parse(&format!(
            r#"[{{"trace_id":"{TRACE}","name":"q","value":1}},{{"trace_id":"xyz","name":"q","value":1}}]"#
        ))
        .unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("trace_id"));
        assert!(e.detail.starts_with("scores[1]: "), "{}", e.detail);
        assert_eq!(field("[]".into()), "body");
    }
}
