//! Turning one Kafka message into the rows it adds: `spans`, `llm_calls`,
//! and the scores of evaluation events (`gen_ai.evaluation.result`).
//!
//! Everything that can fail for good happens here, before any I/O, so that a
//! message that can never be stored is recognised at once and sent to the
//! DLQ: undecodable protobuf, a message of another signal, invalid ids, an
//! invalid tenant header, a span that starts further in the future than
//! `ACCEPT_SPANS_MAX_FUTURE` (a client's wrong clock; stored, such spans
//! would create a daily partition each, thousands in one transaction for a
//! hostile request). Spans older than `ACCEPT_SPANS_MAX_AGE` are left out
//! and counted.
//! Content policy, GenAI mapping and pricing (with the price in force on the
//! day of the call) are applied here too; the writer only copies rows.

use crate::redact::Policy;
use crate::scores::store::ScoreWrite;
use crate::source::InMessage;
use observatory_schemas::genai::{environment, llm_call};
use observatory_schemas::histogram;
use observatory_schemas::kafka::headers;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::pricing::{cost_usd, PriceBook};
use observatory_schemas::resource_key::stored_resource_id;
use observatory_schemas::scores::{from_evaluation_event, ScoreMessage};
use observatory_schemas::span::{flatten, SpanRow};
use prost::Message;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A `spans` row: the normalized span of `observatory_schemas::span`, with
/// what the message adds (tenant, receipt time) and the typed timestamp.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// Tenant.
    pub tenant: String,
    /// The span.
    pub row: SpanRow,
    /// Start.
    pub start: SystemTime,
    /// Duration.
    pub duration_ns: i64,
    /// When the collector received it.
    pub received_at: SystemTime,
    /// The id its resource is stored under, once per tenant (`resources`).
    pub resource_id: i64,
}

/// An `llm_calls` row.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// Tenant.
    pub tenant: String,
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// Start.
    pub start: SystemTime,
    /// Service.
    pub service: String,
    /// Deployment environment, "" when unknown.
    pub environment: String,
    /// Provider.
    pub provider: String,
    /// Billed model.
    pub model: String,
    /// Requested model.
    pub request_model: Option<String>,
    /// Operation.
    pub operation: String,
    /// Duration, ms.
    pub duration_ms: f64,
    /// Status error.
    pub is_error: bool,
    /// Input tokens (cache included).
    pub input_tokens: Option<i64>,
    /// Output tokens (reasoning included).
    pub output_tokens: Option<i64>,
    /// Cache reads.
    pub cache_read_tokens: Option<i64>,
    /// Cache writes.
    pub cache_write_tokens: Option<i64>,
    /// Reasoning.
    pub reasoning_tokens: Option<i64>,
    /// The client's cost when it sent one, else ours; `None` when neither.
    pub cost_usd: Option<f64>,
    /// Our cost from the price table; `None` for an unpriced model.
    pub computed_cost_usd: Option<f64>,
    /// The client's cost.
    pub client_cost_usd: Option<f64>,
    /// Time to first token, ms.
    pub time_to_first_token_ms: Option<f64>,
    /// Finish reasons.
    pub finish_reasons: Vec<String>,
    /// User.
    pub user_id: Option<String>,
    /// Session.
    pub session_id: Option<String>,
    /// Agent.
    pub agent: Option<String>,
    /// Tool.
    pub tool: Option<String>,
    /// Prompt text (only with content capture).
    pub prompt: Option<String>,
    /// Completion text (only with content capture).
    pub completion: Option<String>,
    /// Latency histogram bucket.
    pub latency_bucket: i16,
    /// Time-to-first-token histogram bucket.
    pub ttft_bucket: Option<i16>,
}

/// The rows of one message.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Spans.
    pub spans: Vec<SpanRecord>,
    /// LLM calls.
    pub calls: Vec<CallRecord>,
    /// LLM calls without a price.
    pub unpriced: u64,
    /// Spans left out because they are older than the traces retention.
    pub expired: u64,
    /// Scores of the spans' `gen_ai.evaluation.result` events.
    pub scores: Vec<ScoreWrite>,
    /// Evaluation events that are not a valid score (no name, no value).
    pub invalid_scores: u64,
}

/// Why a message can never be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unstorable {
    /// A span starts too far ahead of now.
    #[error("span {span} starts {ahead_secs} s ahead of now, more than ACCEPT_SPANS_MAX_FUTURE ({max_secs} s): a client clock is wrong")]
    Future {
        /// The span id, hex.
        span: String,
        /// How far ahead, s.
        ahead_secs: u64,
        /// The bound, s.
        max_secs: u64,
        /// Spans in the message.
        spans: u64,
    },
    /// Anything else.
    #[error("{0}")]
    Invalid(String),
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// Makes rows from messages.
pub struct Preparer {
    /// The content policy.
    pub policy: Policy,
    /// The prices.
    pub prices: PriceBook,
    /// Spans older than this are not stored (`ACCEPT_SPANS_MAX_AGE`, at
    /// most the retention: retention would drop them within the hour, and
    /// storing them again later would count their calls in the longer-kept
    /// rollups twice).
    pub max_age: Duration,
    /// A message with a span starting further ahead is not stored.
    pub max_future: Duration,
    /// The environment of calls whose resource names none
    /// (`deployment.environment`): the sink's `ENVIRONMENT`.
    pub default_environment: String,
}

impl Preparer {
    /// The rows of one message, or why it can never be stored.
    pub fn prepare(&self, message: &InMessage) -> Result<Prepared, Unstorable> {
        if let Some(signal) = message.header(headers::OTLP_SIGNAL) {
            if signal != "traces" {
                return Err(Unstorable::Invalid(format!(
                    "a {signal} message on a traces topic"
                )));
            }
        }
        let tenant = message.tenant().map_err(Unstorable::Invalid)?.to_owned();
        let mut request = ExportTraceServiceRequest::decode(&message.payload[..])
            .map_err(|e| Unstorable::Invalid(format!("undecodable OTLP protobuf: {e}")))?;
        self.policy.apply_to_request(&mut request);
        let received_at = message
            .received_at_ms()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .map_or_else(SystemTime::now, time);
        let rows =
            flatten(&request).map_err(|e| Unstorable::Invalid(format!("invalid span: {e}")))?;
        let mut out = Prepared {
            spans: Vec::with_capacity(rows.len()),
            ..Prepared::default()
        };
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let oldest_ns = now_ns.saturating_sub(self.max_age.as_nanos() as u64);
        let latest_ns = now_ns.saturating_add(self.max_future.as_nanos() as u64);
        if let Some((row, _, _)) = rows.iter().find(|(r, _, _)| r.start_unix_nano > latest_ns) {
            let mut span = String::with_capacity(16);
            observatory_schemas::kafka::push_hex(&mut span, &row.span_id);
            return Err(Unstorable::Future {
                span,
                ahead_secs: (row.start_unix_nano - now_ns) / 1_000_000_000,
                max_secs: self.max_future.as_secs(),
                spans: rows.len() as u64,
            });
        }
        for (row, span, rs) in rows {
            if row.start_unix_nano < oldest_ns {
                out.expired += 1;
                continue;
            }
            let start = time(row.start_unix_nano);
            let duration_ns = row.duration_ns().min(i64::MAX as u64) as i64;
            if let Some(call) = llm_call(span) {
                let usage = call.usage();
                let computed = self
                    .prices
                    .lookup(&call.model, row.start_unix_nano)
                    .map(|price| cost_usd(price, &usage));
                if computed.is_none() {
                    out.unpriced += 1;
                }
                let duration_ms = duration_ns as f64 / 1e6;
                let env = rs
                    .resource
                    .as_ref()
                    .and_then(|r| environment(&r.attributes));
                out.calls.push(CallRecord {
                    tenant: tenant.clone(),
                    trace_id: row.trace_id,
                    span_id: row.span_id,
                    start,
                    service: row.service.clone(),
                    environment: env.unwrap_or_else(|| self.default_environment.clone()),
                    provider: call.provider,
                    model: call.model,
                    request_model: call.request_model,
                    operation: call.operation,
                    duration_ms,
                    is_error: row.status_code == 2,
                    input_tokens: call.input_tokens,
                    output_tokens: call.output_tokens,
                    cache_read_tokens: call.cache_read_tokens,
                    cache_write_tokens: call.cache_write_tokens,
                    reasoning_tokens: call.reasoning_tokens,
                    cost_usd: call.client_cost_usd.or(computed),
                    computed_cost_usd: computed,
                    client_cost_usd: call.client_cost_usd,
                    time_to_first_token_ms: call.time_to_first_token_ms,
                    finish_reasons: call.finish_reasons,
                    user_id: call.user,
                    session_id: call.session,
                    agent: call.agent,
                    tool: call.tool,
                    prompt: call.prompt,
                    completion: call.completion,
                    latency_bucket: histogram::bucket(duration_ms),
                    ttft_bucket: call.time_to_first_token_ms.map(histogram::bucket),
                });
            }
            for event in &span.events {
                match from_evaluation_event(&tenant, &row.trace_id, &row.span_id, event) {
                    None => {}
                    Some(Ok(mut score)) => {
                        if score.time_unix_nano == 0 {
                            score.time_unix_nano = row.start_unix_nano;
                        }
                        out.scores
                            .push(ScoreWrite::of(ScoreMessage::Upsert { score }));
                    }
                    Some(Err(_)) => out.invalid_scores += 1,
                }
            }
            out.spans.push(SpanRecord {
                tenant: tenant.clone(),
                resource_id: stored_resource_id(&row.resource),
                row,
                start,
                duration_ns,
                received_at,
            });
        }
        Ok(out)
    }
}
