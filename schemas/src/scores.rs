//! Scores: how good an answer was, from a user, a reviewer or an automated
//! evaluator. This is the contract of the `scores` topic (issue 17) that the
//! API writes, OTLP evaluation events feed, and the PostgreSQL sink stores.
//!
//! - A [`Score`] targets a trace (optionally one of its spans) or a session,
//!   has a name, a [`DataType`], a value and where it came from
//!   ([`Source`]). Numeric and boolean scores carry `value` (a boolean is 0
//!   or 1, with the label `true`/`false`); categorical scores carry a
//!   `label` (and a `value` when their config maps labels to numbers); text
//!   scores carry the text as `label`.
//! - Its id is the client's, or derived from what makes it the same score
//!   ([`derived_id`]), so a retried request or a replayed event never
//!   stores it twice; a later write of the same id replaces the earlier one
//!   (the one with the later `time_unix_nano` wins, so a replay in any order
//!   ends the same).
//! - On the topic ([`crate::kafka::SCORES_TOPIC`]) a message is a JSON
//!   [`ScoreMessage`], an upsert or a delete (which keeps its time, so an
//!   older upsert replayed after it stays deleted), keyed by
//!   [`ScoreMessage::key`]: the target trace id as the trace topic keys it,
//!   so a trace's spans and scores share a partition number.
//!
//! What it guarantees: [`Score::check`] and [`ScoreConfig::check`] refuse
//! every malformed or oversized score with a [`ScoreError`] naming the
//! field, before anything is published. No I/O here.

use crate::kafka::push_hex;
use crate::otlp::common::{any_value::Value, KeyValue};
use crate::otlp::trace::span::Event;
use serde::{Deserialize, Serialize};

/// Longest score name, bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Longest client-given id, bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest label or text value, bytes.
pub const MAX_LABEL_LEN: usize = 4_096;
/// Longest comment, bytes.
pub const MAX_COMMENT_LEN: usize = 16_384;
/// Longest metadata, bytes of JSON.
pub const MAX_METADATA_LEN: usize = 16_384;
/// Longest author or session id, bytes.
pub const MAX_REF_LEN: usize = 256;
/// The OTLP event an evaluation result arrives as.
pub const EVALUATION_EVENT: &str = "gen_ai.evaluation.result";

/// What kind of value a score holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// A number.
    Numeric,
    /// A label from a set.
    Categorical,
    /// True or false.
    Boolean,
    /// Free text.
    Text,
}

impl DataType {
    /// Its name, as the API and the table spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Numeric => "numeric",
            DataType::Categorical => "categorical",
            DataType::Boolean => "boolean",
            DataType::Text => "text",
        }
    }

    /// The type a name spells ([`DataType::as_str`]).
    pub fn parse(name: &str) -> Option<DataType> {
        [
            DataType::Numeric,
            DataType::Categorical,
            DataType::Boolean,
            DataType::Text,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }
}

/// Where a score came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Written through `POST /api/v1/scores`.
    Api,
    /// Added by a person in the web UI.
    Annotation,
    /// An automated evaluator through the API.
    Eval,
    /// A `gen_ai.evaluation.result` event in OTLP.
    Otlp,
}

impl Source {
    /// Its name, as the API and the table spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Annotation => "annotation",
            Source::Eval => "eval",
            Source::Otlp => "otlp",
        }
    }
}

/// One score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Stable id: the client's, or [`derived_id`].
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Target trace, 32 lowercase hex characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Target span of that trace, 16 lowercase hex characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// Target session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Name (`helpfulness`, `thumbs`).
    pub name: String,
    /// Kind of value.
    pub data_type: DataType,
    /// The number (numeric, boolean, and categorical with a mapped value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The label (categorical, boolean) or the text (text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Where it came from.
    pub source: Source,
    /// Who: the JWT subject through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// When it was given, ns since the epoch; the later write of an id wins.
    pub time_unix_nano: u64,
    /// Anything else (evaluator version, prompt version).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A message of the `scores` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ScoreMessage {
    /// Store the score, replacing an earlier write of its id.
    Upsert {
        /// The score.
        score: Score,
    },
    /// Delete the score with this id (kept as deleted at this time).
    Delete {
        /// Tenant.
        tenant: String,
        /// The id.
        id: String,
        /// Its target trace, when known (the message key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
        /// When, ns since the epoch.
        time_unix_nano: u64,
    },
}

impl ScoreMessage {
    /// The message key: the target trace id (32 hex characters, as the
    /// trace topic keys it), else the session id, else the score id.
    pub fn key(&self) -> &str {
        match self {
            ScoreMessage::Upsert { score } => score
                .trace_id
                .as_deref()
                .or(score.session_id.as_deref())
                .unwrap_or(&score.id),
            ScoreMessage::Delete { id, trace_id, .. } => trace_id.as_deref().unwrap_or(id),
        }
    }
}

/// Why a score is refused; `field` names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct ScoreError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub detail: String,
}

fn refuse<T>(field: &'static str, detail: impl Into<String>) -> Result<T, ScoreError> {
    Err(ScoreError {
        field,
        detail: detail.into(),
    })
}

fn at_most(field: &'static str, text: Option<&str>, max: usize) -> Result<(), ScoreError> {
    match text {
        Some(t) if t.len() > max => refuse(field, format!("at most {max} bytes")),
        _ => Ok(()),
    }
}

fn lower_hex(field: &'static str, text: Option<&str>, len: usize) -> Result<(), ScoreError> {
    match text {
        Some(t)
            if t.len() != len
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                || t.bytes().all(|b| b == b'0') =>
        {
            refuse(
                field,
                format!("{len} lowercase hex characters, not all zero"),
            )
        }
        _ => Ok(()),
    }
}

impl Score {
    /// Refuses a score that is malformed or too large, naming the field.
    pub fn check(&self) -> Result<(), ScoreError> {
        if self.id.is_empty()
            || self.id.len() > MAX_ID_LEN
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return refuse(
                "id",
                format!("1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 - _ . :"),
            );
        }
        if self.name.trim().is_empty() || self.name.len() > MAX_NAME_LEN {
            return refuse("name", format!("1 to {MAX_NAME_LEN} bytes, not blank"));
        }
        lower_hex("trace_id", self.trace_id.as_deref(), 32)?;
        lower_hex("span_id", self.span_id.as_deref(), 16)?;
        if self.span_id.is_some() && self.trace_id.is_none() {
            return refuse("span_id", "a span is scored with its trace_id");
        }
        if self.trace_id.is_none() && self.session_id.is_none() {
            return refuse("trace_id", "a score targets a trace_id or a session_id");
        }
        if self.session_id.as_deref().is_some_and(str::is_empty) {
            return refuse("session_id", "empty");
        }
        at_most("session_id", self.session_id.as_deref(), MAX_REF_LEN)?;
        at_most("author", self.author.as_deref(), MAX_REF_LEN)?;
        at_most("label", self.label.as_deref(), MAX_LABEL_LEN)?;
        at_most("comment", self.comment.as_deref(), MAX_COMMENT_LEN)?;
        if !self.metadata.is_empty() {
            let len = serde_json::to_string(&self.metadata).map_or(usize::MAX, |s| s.len());
            if len > MAX_METADATA_LEN {
                return refuse(
                    "metadata",
                    format!("at most {MAX_METADATA_LEN} bytes of JSON"),
                );
            }
        }
        if self.value.is_some_and(|v| !v.is_finite()) {
            return refuse("value", "a finite number");
        }
        match (self.data_type, self.value, self.label.as_deref()) {
            (DataType::Numeric, Some(_), None) => Ok(()),
            (DataType::Numeric, _, _) => {
                refuse("value", "a numeric score has a value and no label")
            }
            (DataType::Boolean, Some(v), label) if v == 0.0 || v == 1.0 => {
                let want = if v == 1.0 { "true" } else { "false" };
                match label {
                    None => Ok(()),
                    Some(l) if l == want => Ok(()),
                    Some(_) => refuse(
                        "label",
                        format!("a boolean score of {v} is labelled {want}"),
                    ),
                }
            }
            (DataType::Boolean, _, _) => refuse("value", "a boolean score's value is 0 or 1"),
            (DataType::Categorical, _, Some(l)) if !l.is_empty() => Ok(()),
            (DataType::Categorical, _, _) => refuse("label", "a categorical score has a label"),
            (DataType::Text, None, Some(l)) if !l.is_empty() => Ok(()),
            (DataType::Text, _, _) => {
                refuse("label", "a text score has its text as label and no value")
            }
        }
    }
}

/// A tenant's definition of one score name; writes are checked against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreConfig {
    /// The score name.
    pub name: String,
    /// Its kind.
    pub data_type: DataType,
    /// Allowed labels of a categorical score, each with an optional value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<Category>,
    /// Least numeric value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Greatest numeric value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// One allowed label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    /// The label.
    pub label: String,
    /// Its number, for means and charts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

impl ScoreConfig {
    /// Checks `score` (already [`Score::check`]ed) against this config;
    /// fills a categorical score's value from its label's.
    pub fn check(&self, score: &mut Score) -> Result<(), ScoreError> {
        if score.data_type != self.data_type {
            return refuse(
                "data_type",
                format!("{:?} is configured as {:?}", self.name, self.data_type),
            );
        }
        if let Some(v) = score.value.filter(|_| self.data_type == DataType::Numeric) {
            if self.min.is_some_and(|min| v < min) || self.max.is_some_and(|max| v > max) {
                return refuse(
                    "value",
                    format!(
                        "{v} is outside {:?}'s range [{}, {}]",
                        self.name,
                        self.min.map_or("-inf".into(), |m| m.to_string()),
                        self.max.map_or("inf".into(), |m| m.to_string())
                    ),
                );
            }
        }
        if self.data_type == DataType::Categorical && !self.categories.is_empty() {
            let label = score.label.as_deref().unwrap_or_default();
            let Some(category) = self.categories.iter().find(|c| c.label == label) else {
                let allowed: Vec<&str> = self.categories.iter().map(|c| c.label.as_str()).collect();
                return refuse("label", format!("one of {}", allowed.join(", ")));
            };
            score.value = category.value;
        }
        Ok(())
    }
}

/// The id of a score that has none of its own: a UUID (version 5) of what
/// makes it the same score, so writing it again replaces it. `extra`
/// separates scores that share the rest (an evaluation event's time).
pub fn derived_id(score: &Score, extra: &str) -> String {
    let fields = [
        score.tenant.as_str(),
        score.trace_id.as_deref().unwrap_or_default(),
        score.span_id.as_deref().unwrap_or_default(),
        score.session_id.as_deref().unwrap_or_default(),
        score.name.as_str(),
        score.source.as_str(),
        score.author.as_deref().unwrap_or_default(),
        extra,
    ];
    // Each field's length first, so no two field lists read alike.
    let mut text = String::new();
    for f in fields {
        text.push_str(&f.len().to_string());
        text.push(':');
        text.push_str(f);
    }
    uuid::Uuid::new_v5(&NAMESPACE, text.as_bytes()).to_string()
}

/// The namespace of derived ids: fixed for good (changing it would change
/// every derived id, and a replay would then store scores twice).
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5c0b_e5a1_7e4d_4b0e_9f3a_0b5e_7a11_5c0e);

/// The score of a `gen_ai.evaluation.result` event on span `span_id` of
/// trace `trace_id`: `None` when the event is another one; an error when it
/// has no name or neither a value nor a label.
pub fn from_evaluation_event(
    tenant: &str,
    trace_id: &[u8; 16],
    span_id: &[u8; 8],
    event: &Event,
) -> Option<Result<Score, ScoreError>> {
    if event.name != EVALUATION_EVENT {
        return None;
    }
    let get = |key: &str| -> Option<&Value> {
        event
            .attributes
            .iter()
            .find(|kv: &&KeyValue| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    };
    let text = |key: &str| match get(key) {
        Some(Value::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let value = match get("gen_ai.evaluation.score.value") {
        Some(Value::DoubleValue(v)) => Some(*v),
        Some(Value::IntValue(v)) => Some(*v as f64),
        Some(Value::StringValue(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let label = text("gen_ai.evaluation.score.label");
    let Some(name) = text("gen_ai.evaluation.name") else {
        return Some(refuse(
            "name",
            "an evaluation event without gen_ai.evaluation.name",
        ));
    };
    let data_type = match (&value, &label) {
        (_, Some(_)) => DataType::Categorical,
        (Some(_), None) => DataType::Numeric,
        (None, None) => {
            return Some(refuse(
                "value",
                "an evaluation event with neither score.value nor score.label",
            ))
        }
    };
    let (mut trace, mut span) = (String::with_capacity(32), String::with_capacity(16));
    push_hex(&mut trace, trace_id);
    push_hex(&mut span, span_id);
    let mut score = Score {
        id: String::new(),
        tenant: tenant.to_owned(),
        trace_id: Some(trace),
        span_id: Some(span),
        session_id: None,
        name,
        data_type,
        value,
        label,
        comment: text("gen_ai.evaluation.explanation"),
        source: Source::Otlp,
        author: None,
        time_unix_nano: event.time_unix_nano,
        metadata: serde_json::Map::new(),
    };
    score.id = derived_id(&score, &event.time_unix_nano.to_string());
    Some(score.check().map(|()| score))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::common::AnyValue;

    fn numeric(value: f64) -> Score {
        Score {
            id: "s-1".into(),
            tenant: "acme".into(),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: None,
            session_id: None,
            name: "helpfulness".into(),
            data_type: DataType::Numeric,
            value: Some(value),
            label: None,
            comment: None,
            source: Source::Api,
            author: Some("alice".into()),
            time_unix_nano: 1,
            metadata: serde_json::Map::new(),
        }
    }

    fn field(score: &Score) -> &'static str {
        score.check().unwrap_err().field
    }

    #[test]
    fn each_malformed_score_names_its_field() {
        assert_eq!(numeric(0.5).check(), Ok(()));
        let mut s = numeric(f64::NAN);
        assert_eq!(field(&s), "value");
        s = numeric(1.0);
        s.id = "a b".into();
        assert_eq!(field(&s), "id");
        s = numeric(1.0);
        s.trace_id = Some("0AF7651916CD43DD8448EB211C80319C".into());
        assert_eq!(field(&s), "trace_id");
        s.trace_id = None;
        assert_eq!(field(&s), "trace_id", "no target at all");
        s.session_id = Some("conv-7".into());
        assert_eq!(s.check(), Ok(()), "a session is a target");
        s.span_id = Some("00f067aa0ba902b7".into());
        assert_eq!(field(&s), "span_id", "a span needs its trace");
        s = numeric(1.0);
        s.comment = Some("x".repeat(10 << 20));
        assert_eq!(field(&s), "comment");
        s = numeric(1.0);
        s.data_type = DataType::Boolean;
        assert_eq!(s.check(), Ok(()));
        s.label = Some("false".into());
        assert_eq!(field(&s), "label");
        s.value = Some(0.5);
        assert_eq!(field(&s), "value");
        s = numeric(1.0);
        s.data_type = DataType::Text;
        assert_eq!(field(&s), "label");
        s.value = None;
        s.label = Some("the answer cited the wrong policy".into());
        assert_eq!(s.check(), Ok(()));
    }

    #[test]
    fn configs_check_ranges_and_labels_and_map_labels_to_values() {
        let range = ScoreConfig {
            name: "helpfulness".into(),
            data_type: DataType::Numeric,
            categories: vec![],
            min: Some(0.0),
            max: Some(1.0),
        };
        assert_eq!(range.check(&mut numeric(1.0)), Ok(()));
        assert_eq!(range.check(&mut numeric(1.5)).unwrap_err().field, "value");
        let labels = ScoreConfig {
            name: "verdict".into(),
            data_type: DataType::Categorical,
            categories: vec![
                Category {
                    label: "good".into(),
                    value: Some(1.0),
                },
                Category {
                    label: "bad".into(),
                    value: Some(0.0),
                },
            ],
            min: None,
            max: None,
        };
        assert_eq!(
            labels.check(&mut numeric(1.0)).unwrap_err().field,
            "data_type"
        );
        let mut s = numeric(1.0);
        s.data_type = DataType::Categorical;
        s.value = None;
        s.label = Some("good".into());
        assert_eq!(labels.check(&mut s), Ok(()));
        assert_eq!(s.value, Some(1.0));
        s.label = Some("meh".into());
        let e = labels.check(&mut s).unwrap_err();
        assert_eq!((e.field, e.detail.as_str()), ("label", "one of good, bad"));
    }

    #[test]
    fn derived_ids_are_stable_and_tell_scores_apart() {
        let s = numeric(1.0);
        assert_eq!(
            derived_id(&s, ""),
            derived_id(&numeric(0.0), ""),
            "the value is not identity"
        );
        let mut other = s.clone();
        other.author = Some("bob".into());
        assert_ne!(derived_id(&s, ""), derived_id(&other, ""));
        // Field boundaries count: "ab"+"c" is not "a"+"bc".
        let (mut a, mut b) = (s.clone(), s.clone());
        a.name = "ab".into();
        a.author = Some("c".into());
        b.name = "a".into();
        b.author = Some("bc".into());
        assert_ne!(derived_id(&a, ""), derived_id(&b, ""));
        assert_eq!(derived_id(&s, "").len(), 36);
    }

    #[test]
    fn messages_round_trip_as_json_keyed_by_trace() {
        let upsert = ScoreMessage::Upsert {
            score: numeric(0.25),
        };
        let json = serde_json::to_string(&upsert).unwrap();
        assert!(
            json.starts_with(r#"{"op":"upsert","score":{"id":"s-1""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<ScoreMessage>(&json).unwrap(), upsert);
        assert_eq!(upsert.key(), "0af7651916cd43dd8448eb211c80319c");
        let delete = ScoreMessage::Delete {
            tenant: "acme".into(),
            id: "s-1".into(),
            trace_id: None,
            time_unix_nano: 2,
        };
        let json = serde_json::to_string(&delete).unwrap();
        assert_eq!(serde_json::from_str::<ScoreMessage>(&json).unwrap(), delete);
        assert_eq!(delete.key(), "s-1");
    }

    #[test]
    fn evaluation_events_become_scores() {
        let kv = |k: &str, v: Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let event = Event {
            time_unix_nano: 42,
            name: EVALUATION_EVENT.into(),
            attributes: vec![
                kv(
                    "gen_ai.evaluation.name",
                    Value::StringValue("relevance".into()),
                ),
                kv("gen_ai.evaluation.score.value", Value::DoubleValue(0.8)),
                kv(
                    "gen_ai.evaluation.score.label",
                    Value::StringValue("relevant".into()),
                ),
                kv(
                    "gen_ai.evaluation.explanation",
                    Value::StringValue("cites the doc".into()),
                ),
            ],
            dropped_attributes_count: 0,
        };
        let s = from_evaluation_event("acme", &[1; 16], &[2; 8], &event)
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.name.as_str(), s.data_type, s.value, s.label.as_deref()),
            (
                "relevance",
                DataType::Categorical,
                Some(0.8),
                Some("relevant")
            )
        );
        assert_eq!(s.comment.as_deref(), Some("cites the doc"));
        assert_eq!((s.source, s.time_unix_nano), (Source::Otlp, 42));
        assert_eq!(s.span_id.as_deref(), Some("0202020202020202"));
        let again = from_evaluation_event("acme", &[1; 16], &[2; 8], &event)
            .unwrap()
            .unwrap();
        assert_eq!(again.id, s.id, "a replayed event is the same score");
        let mut later = event.clone();
        later.time_unix_nano = 43;
        let later = from_evaluation_event("acme", &[1; 16], &[2; 8], &later)
            .unwrap()
            .unwrap();
        assert_ne!(later.id, s.id, "a second evaluation is another score");
        let mut nameless = event.clone();
        nameless.attributes.remove(0);
        let e = from_evaluation_event("acme", &[1; 16], &[2; 8], &nameless)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.field, "name");
        let other = Event {
            name: "gen_ai.content.prompt".into(),
            ..event
        };
        assert!(from_evaluation_event("acme", &[1; 16], &[2; 8], &other).is_none());
    }
}
