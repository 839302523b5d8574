//! Builders of realistic GenAI traces, for tests, benches and the load
//! generator (feature `testing`).
//!
//! A generated trace looks like what an LLM application sends: an agent or
//! workflow root span with model calls, tool calls, embeddings and retrievals
//! below it, 1 to 20 spans, the model calls written in one of the dialects of
//! `genai-conventions.md` (current OpenTelemetry GenAI names, the older
//! OpenLLMetry names, OpenInference, the Vercel AI SDK, Anthropic with prompt
//! caching), optionally with prompt and completion text of a chosen size, and
//! about 2% of spans failed. Everything is derived from a seed, so a test can
//! rebuild what it sent.

use crate::otlp::common::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
use crate::otlp::resource::Resource;
use crate::otlp::trace::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use crate::otlp::trace_service::ExportTraceServiceRequest;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A string attribute.
pub fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    kv(key, Value::IntValue(value))
}

/// A floating-point attribute.
pub fn kv_f64(key: &str, value: f64) -> KeyValue {
    kv(key, Value::DoubleValue(value))
}

/// A boolean attribute.
pub fn kv_bool(key: &str, value: bool) -> KeyValue {
    kv(key, Value::BoolValue(value))
}

/// An attribute holding an array of strings.
pub fn kv_str_array(key: &str, values: &[&str]) -> KeyValue {
    let values = values
        .iter()
        .map(|v| AnyValue {
            value: Some(Value::StringValue((*v).into())),
        })
        .collect();
    kv(key, Value::ArrayValue(ArrayValue { values }))
}

/// An attribute of any value.
pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The dialect a model call is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Current OpenTelemetry GenAI semantic conventions (`gen_ai.provider.name`, ...).
    OtelCurrent,
    /// OpenLLMetry / older OpenTelemetry names (`gen_ai.system`, `gen_ai.usage.prompt_tokens`).
    OpenLlmetry,
    /// Arize OpenInference (`llm.model_name`, `llm.token_count.*`).
    OpenInference,
    /// The Vercel AI SDK (`ai.model.id`, `ai.usage.promptTokens`).
    VercelAi,
    /// Current names, Anthropic, with cache reads and cache writes.
    AnthropicCached,
}

impl Dialect {
    /// All dialects.
    pub const ALL: [Dialect; 5] = [
        Dialect::OtelCurrent,
        Dialect::OpenLlmetry,
        Dialect::OpenInference,
        Dialect::VercelAi,
        Dialect::AnthropicCached,
    ];

    fn scope_name(self) -> &'static str {
        match self {
            Dialect::OtelCurrent => "opentelemetry.instrumentation.openai_v2",
            Dialect::OpenLlmetry => "opentelemetry.instrumentation.openai",
            Dialect::OpenInference => "openinference.instrumentation.openai",
            Dialect::VercelAi => "ai",
            Dialect::AnthropicCached => "opentelemetry.instrumentation.anthropic",
        }
    }
}

const SERVICES: [&str; 4] = ["support-bot", "search-api", "summarizer", "code-assistant"];
const OPENAI_MODELS: [&str; 3] = ["gpt-4o-2024-08-06", "gpt-4o-mini", "o3-mini"];
const ANTHROPIC_MODELS: [&str; 2] = ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"];
const TOOLS: [&str; 4] = ["search_docs", "get_weather", "run_sql", "send_email"];
const FILLER: &str = "The quick brown fox jumps over the lazy dog while the model thinks. ";

/// Makes GenAI traces and OTLP export requests from a seed.
#[derive(Debug, Clone)]
pub struct TraceGenerator {
    rng: SmallRng,
    content_bytes: usize,
    error_rate: f64,
    max_spans: usize,
    now_ns: u64,
}

/// One span with its dialect, before it is placed in a request.
struct GenSpan {
    dialect: Dialect,
    span: Span,
}

impl TraceGenerator {
    /// A generator with 2% errors, no message content, 1 to 20 spans a trace.
    pub fn new(seed: u64) -> Self {
        TraceGenerator {
            rng: SmallRng::seed_from_u64(seed),
            content_bytes: 0,
            error_rate: 0.02,
            max_spans: 20,
            now_ns: 1_780_000_000_000_000_000,
        }
    }

    /// Adds prompt and completion text of about `bytes` bytes each to model calls.
    pub fn with_content_bytes(mut self, bytes: usize) -> Self {
        self.content_bytes = bytes;
        self
    }

    /// Sets the share of failed spans, 0.0 to 1.0.
    pub fn with_error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// Sets the largest number of spans in a trace (at least 1).
    pub fn with_max_spans(mut self, max: usize) -> Self {
        self.max_spans = max.max(1);
        self
    }

    /// Sets the time the traces are placed at, nanoseconds since the epoch.
    pub fn with_now_ns(mut self, now_ns: u64) -> Self {
        self.now_ns = now_ns;
        self
    }

    fn random_id<const N: usize>(&mut self) -> [u8; N] {
        loop {
            let mut id = [0u8; N];
            self.rng.fill(&mut id[..]);
            if id != [0u8; N] {
                return id;
            }
        }
    }

    fn content(&mut self, role: &str) -> String {
        let mut text = String::with_capacity(self.content_bytes + FILLER.len());
        text.push_str(role);
        text.push_str(": ");
        while text.len() < self.content_bytes {
            text.push_str(FILLER);
        }
        text.truncate(self.content_bytes.max(role.len() + 2));
        text
    }

    /// One trace of 1 to `max_spans` spans, each tagged with its dialect.
    fn trace(&mut self) -> Vec<GenSpan> {
        let trace_id: [u8; 16] = self.random_id();
        let count = self.rng.random_range(1..=self.max_spans);
        let start = self.now_ns - self.rng.random_range(0..5_000_000_000u64);
        let dialect = Dialect::ALL[self.rng.random_range(0..Dialect::ALL.len())];
        let root_id: [u8; 8] = self.random_id();
        let total_ns = 200_000_000 + 100_000_000 * count as u64;

        let mut spans = Vec::with_capacity(count);
        let mut root = Span {
            trace_id: trace_id.to_vec(),
            span_id: root_id.to_vec(),
            name: "invoke_agent support_agent".into(),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + total_ns,
            attributes: vec![
                kv_str("gen_ai.operation.name", "invoke_agent"),
                kv_str("gen_ai.agent.name", "support_agent"),
                kv_str(
                    "gen_ai.conversation.id",
                    format!("conv-{}", self.rng.random_range(0..1000)),
                ),
                kv_str(
                    "session.id",
                    format!("sess-{}", self.rng.random_range(0..1000)),
                ),
                kv_str("user.id", format!("user-{}", self.rng.random_range(0..200))),
                kv_str("traceloop.span.kind", "workflow"),
            ],
            ..Default::default()
        };
        if count == 1 {
            // A lone model call: the root is the call itself.
            root = self.model_call(dialect, trace_id, root_id, None, start, total_ns);
            spans.push(GenSpan {
                dialect,
                span: root,
            });
            return spans;
        }
        let mut offset = 10_000_000u64;
        for i in 1..count {
            let span_id: [u8; 8] = self.random_id();
            let duration = 50_000_000 + self.rng.random_range(0..50_000_000u64);
            let child_start = start + offset;
            offset += duration / 2;
            let span = match i % 4 {
                1 | 3 => self.model_call(
                    dialect,
                    trace_id,
                    span_id,
                    Some(root_id),
                    child_start,
                    duration,
                ),
                2 => self.tool_call(trace_id, span_id, root_id, child_start, duration),
                _ => self.embedding(trace_id, span_id, root_id, child_start, duration),
            };
            spans.push(GenSpan { dialect, span });
        }
        self.maybe_fail(&mut root);
        spans.insert(
            0,
            GenSpan {
                dialect,
                span: root,
            },
        );
        spans
    }

    fn maybe_fail(&mut self, span: &mut Span) {
        if self.rng.random_bool(self.error_rate) {
            span.status = Some(Status {
                code: status::StatusCode::Error as i32,
                message: "upstream returned 529: overloaded".into(),
            });
            span.attributes
                .push(kv_str("error.type", "overloaded_error"));
        }
    }

    fn base_span(
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent: Option<[u8; 8]>,
        start: u64,
        duration: u64,
    ) -> Span {
        Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + duration,
            ..Default::default()
        }
    }

    fn model_call(
        &mut self,
        dialect: Dialect,
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent: Option<[u8; 8]>,
        start: u64,
        duration: u64,
    ) -> Span {
        let mut span = Self::base_span(trace_id, span_id, parent, start, duration);
        let input = self.rng.random_range(50..4000i64);
        let output = self.rng.random_range(10..1500i64);
        let content = self.content_bytes > 0;
        let a = &mut span.attributes;
        match dialect {
            Dialect::OtelCurrent => {
                let model = OPENAI_MODELS[self.rng.random_range(0..OPENAI_MODELS.len())];
                span.name = format!("chat {model}");
                let reasoning = if model.starts_with('o') {
                    output / 2
                } else {
                    0
                };
                a.extend([
                    kv_str("gen_ai.operation.name", "chat"),
                    kv_str("gen_ai.provider.name", "openai"),
                    kv_str("gen_ai.request.model", model),
                    kv_str("gen_ai.response.model", model),
                    kv_str(
                        "gen_ai.response.id",
                        format!("chatcmpl-{}", self.rng.random::<u32>()),
                    ),
                    kv_int("gen_ai.usage.input_tokens", input),
                    kv_int("gen_ai.usage.output_tokens", output),
                    kv_int("gen_ai.usage.reasoning.output_tokens", reasoning),
                    kv_int("gen_ai.usage.cache_read.input_tokens", input / 4),
                    kv_f64("gen_ai.request.temperature", 0.2),
                    kv_int("gen_ai.request.max_tokens", 2048),
                    kv_str_array("gen_ai.response.finish_reasons", &["stop"]),
                    kv_f64("gen_ai.response.time_to_first_chunk", 0.35),
                ]);
                if content {
                    let prompt = self.content("user");
                    let completion = self.content("assistant");
                    let a = &mut span.attributes;
                    a.extend(chat_messages(&prompt, &completion, "stop"));
                }
            }
            Dialect::OpenLlmetry => {
                let model = OPENAI_MODELS[self.rng.random_range(0..OPENAI_MODELS.len())];
                span.name = "openai.chat".into();
                a.extend([
                    kv_str("gen_ai.system", "openai"),
                    kv_str("llm.request.type", "chat"),
                    kv_str("traceloop.span.kind", "task"),
                    kv_str("gen_ai.request.model", model),
                    kv_str("gen_ai.response.model", model),
                    kv_int("gen_ai.usage.prompt_tokens", input),
                    kv_int("gen_ai.usage.completion_tokens", output),
                    kv_int("llm.usage.total_tokens", input + output),
                    kv_bool("llm.is_streaming", false),
                ]);
                if content {
                    let prompt = self.content("user");
                    let completion = self.content("assistant");
                    let a = &mut span.attributes;
                    a.extend([
                        kv_str("gen_ai.prompt.0.role", "user"),
                        kv_str("gen_ai.prompt.0.content", prompt),
                        kv_str("gen_ai.completion.0.role", "assistant"),
                        kv_str("gen_ai.completion.0.content", completion),
                    ]);
                }
            }
            Dialect::OpenInference => {
                let model = OPENAI_MODELS[self.rng.random_range(0..OPENAI_MODELS.len())];
                span.name = "ChatCompletion".into();
                span.kind = span::SpanKind::Internal as i32;
                a.extend([
                    kv_str("openinference.span.kind", "LLM"),
                    kv_str("llm.provider", "openai"),
                    kv_str("llm.system", "openai"),
                    kv_str("llm.model_name", model),
                    kv_int("llm.token_count.prompt", input),
                    kv_int("llm.token_count.completion", output),
                    kv_int("llm.token_count.total", input + output),
                    kv_int("llm.token_count.prompt_details.cache_read", input / 5),
                ]);
                if content {
                    let prompt = self.content("user");
                    let completion = self.content("assistant");
                    let a = &mut span.attributes;
                    a.extend([
                        kv_str("llm.input_messages.0.message.role", "user"),
                        kv_str("llm.input_messages.0.message.content", prompt.clone()),
                        kv_str("input.value", prompt),
                        kv_str("output.value", completion),
                    ]);
                }
            }
            Dialect::VercelAi => {
                let model = OPENAI_MODELS[self.rng.random_range(0..OPENAI_MODELS.len())];
                span.name = "ai.generateText.doGenerate".into();
                a.extend([
                    kv_str("ai.operationId", "ai.generateText.doGenerate"),
                    kv_str("ai.model.provider", "openai.chat"),
                    kv_str("ai.model.id", model),
                    kv_int("ai.usage.promptTokens", input),
                    kv_int("ai.usage.completionTokens", output),
                    kv_str("ai.response.finishReason", "stop"),
                ]);
                if content {
                    let prompt = self.content("user");
                    let completion = self.content("assistant");
                    let a = &mut span.attributes;
                    a.extend([
                        kv_str("ai.prompt", prompt),
                        kv_str("ai.response.text", completion),
                    ]);
                }
            }
            Dialect::AnthropicCached => {
                let model = ANTHROPIC_MODELS[self.rng.random_range(0..ANTHROPIC_MODELS.len())];
                span.name = format!("chat {model}");
                a.extend([
                    kv_str("gen_ai.operation.name", "chat"),
                    kv_str("gen_ai.provider.name", "anthropic"),
                    kv_str("gen_ai.request.model", model),
                    kv_str("gen_ai.response.model", model),
                    kv_int("gen_ai.usage.input_tokens", input),
                    kv_int("gen_ai.usage.output_tokens", output),
                    kv_int("gen_ai.usage.cache_read.input_tokens", input / 2),
                    kv_int("gen_ai.usage.cache_creation.input_tokens", input / 8),
                    kv_str_array("gen_ai.response.finish_reasons", &["end_turn"]),
                ]);
                if content {
                    let prompt = self.content("user");
                    let completion = self.content("assistant");
                    let a = &mut span.attributes;
                    // As the current conventions' JSON: the instructions
                    // apart, then the conversation, then the answer.
                    a.push(kv_str(
                        "gen_ai.system_instructions",
                        r#"[{"type":"text","content":"You are the support agent of an online shop. Answer briefly."}]"#,
                    ));
                    a.extend(chat_messages(&prompt, &completion, "end_turn"));
                }
            }
        }
        self.maybe_fail(&mut span);
        span
    }

    fn tool_call(
        &mut self,
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent: [u8; 8],
        start: u64,
        duration: u64,
    ) -> Span {
        let tool = TOOLS[self.rng.random_range(0..TOOLS.len())];
        let mut span = Self::base_span(trace_id, span_id, Some(parent), start, duration);
        span.kind = span::SpanKind::Internal as i32;
        span.name = format!("execute_tool {tool}");
        span.attributes.extend([
            kv_str("gen_ai.operation.name", "execute_tool"),
            kv_str("gen_ai.tool.name", tool),
            kv_str("gen_ai.tool.type", "function"),
            kv_str(
                "gen_ai.tool.call.id",
                format!("call_{}", self.rng.random::<u32>()),
            ),
        ]);
        self.maybe_fail(&mut span);
        span
    }

    fn embedding(
        &mut self,
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent: [u8; 8],
        start: u64,
        duration: u64,
    ) -> Span {
        let mut span = Self::base_span(trace_id, span_id, Some(parent), start, duration);
        span.name = "embeddings text-embedding-3-small".into();
        span.attributes.extend([
            kv_str("gen_ai.operation.name", "embeddings"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", "text-embedding-3-small"),
            kv_int("gen_ai.usage.input_tokens", self.rng.random_range(5..500)),
            kv_int("gen_ai.embeddings.dimension.count", 1536),
        ]);
        span.events.push(span::Event {
            time_unix_nano: start + duration / 2,
            name: "retrieval.done".into(),
            attributes: vec![kv_int("retrieval.documents", 8)],
            dropped_attributes_count: 0,
        });
        self.maybe_fail(&mut span);
        span
    }

    /// An export request with exactly `spans` spans, from one service, the
    /// spans of several traces interleaved by end time as an SDK's batch
    /// processor exports them, grouped in one scope per dialect.
    pub fn request(&mut self, spans: usize) -> ExportTraceServiceRequest {
        let mut all: Vec<GenSpan> = Vec::with_capacity(spans);
        while all.len() < spans {
            let mut trace = self.trace();
            trace.truncate(spans - all.len());
            all.extend(trace);
        }
        all.sort_by_key(|s| s.span.end_time_unix_nano);

        let service = SERVICES[self.rng.random_range(0..SERVICES.len())];
        let resource = Resource {
            attributes: vec![
                kv_str("service.name", service),
                kv_str("service.version", "1.4.2"),
                kv_str("deployment.environment.name", "production"),
                kv_str("telemetry.sdk.language", "python"),
                kv_str("telemetry.sdk.name", "opentelemetry"),
                kv_str("k8s.pod.name", format!("{service}-7d9f8b6c4-x2x9q")),
            ],
            ..Default::default()
        };
        let mut scopes: Vec<ScopeSpans> = Vec::new();
        for gen in all {
            let name = gen.dialect.scope_name();
            let index = match scopes
                .iter()
                .position(|s| s.scope.as_ref().is_some_and(|sc| sc.name == name))
            {
                Some(i) => i,
                None => {
                    scopes.push(ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: name.into(),
                            version: "0.48.0".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                    scopes.len() - 1
                }
            };
            scopes[index].spans.push(gen.span);
        }
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: scopes,
                schema_url: "https://opentelemetry.io/schemas/1.37.0".into(),
            }],
        }
    }
}

/// Every span of a request, in order.
pub fn spans_of(request: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .flat_map(|ss| ss.spans.iter())
}

/// A request's spans by trace id, one single-span `ResourceSpans` each
/// (its resource and scope repeated), as a trace's messages reach a sink.
pub fn spans_by_trace(
    request: ExportTraceServiceRequest,
) -> std::collections::BTreeMap<Vec<u8>, Vec<ResourceSpans>> {
    let mut out: std::collections::BTreeMap<Vec<u8>, Vec<ResourceSpans>> = Default::default();
    for rs in request.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                out.entry(s.trace_id.clone())
                    .or_default()
                    .push(ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: vec![ScopeSpans {
                            scope: ss.scope.clone(),
                            spans: vec![s.clone()],
                            schema_url: String::new(),
                        }],
                        schema_url: String::new(),
                    });
            }
        }
    }
    out
}

/// A user's prompt and the answer as the current conventions' JSON
/// attributes (`gen_ai.input.messages`, `gen_ai.output.messages`). The
/// texts are ASCII, so Rust's debug quoting is JSON's.
fn chat_messages(prompt: &str, completion: &str, finish: &str) -> [KeyValue; 2] {
    [
        kv_str(
            "gen_ai.input.messages",
            format!(r#"[{{"role":"user","parts":[{{"type":"text","content":{prompt:?}}}]}}]"#),
        ),
        kv_str(
            "gen_ai.output.messages",
            format!(
                r#"[{{"role":"assistant","parts":[{{"type":"text","content":{completion:?}}}],"finish_reason":"{finish}"}}]"#
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_the_asked_span_count_and_valid_ids() {
        let mut generator = TraceGenerator::new(7).with_content_bytes(100);
        let request = generator.request(512);
        assert_eq!(spans_of(&request).count(), 512);
        for span in spans_of(&request) {
            assert!(crate::ids::trace_id(&span.trace_id).is_ok());
            assert!(crate::ids::span_id(&span.span_id).is_ok());
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_request() {
        let a = TraceGenerator::new(1).request(64);
        let b = TraceGenerator::new(1).request(64);
        assert_eq!(a, b);
    }
}
