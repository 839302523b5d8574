//! GenAI spans in every dialect, normalized into one [`LlmCall`].
//!
//! LLM instrumentations describe a model call in several dialects: the
//! current OpenTelemetry GenAI conventions, their older names (OpenLLMetry),
//! Arize OpenInference, and the Vercel AI SDK. [`llm_call`] reads any of them
//! and returns the call's provider, model, operation, token counts, finish
//! reasons, time to first token, user, session, agent, tool and
//! client-reported cost, or `None` for a span that is not a model call (an
//! agent step or a tool call is a GenAI span, but has no model and no
//! tokens; it stays in `spans` only).
//!
//! Token rules (`genai-conventions.md`): the normalized `input_tokens`
//! **includes** cache reads and cache writes, and `output_tokens` **includes**
//! reasoning, as the OpenTelemetry attributes do. Some sources report them
//! exclusively (Anthropic's own `input_tokens` leaves out cache reads); an
//! input count below its own cache subsets can only be exclusive, so the
//! subsets are added to it, and likewise for reasoning. No token is ever
//! counted twice. Pure code: no I/O.

use crate::otlp::common::{any_value::Value, KeyValue};
use crate::otlp::trace::{span::Event, Span};

/// A model call, normalized.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmCall {
    /// `openai`, `anthropic`, `aws.bedrock`, ...; `unknown` when not said.
    pub provider: String,
    /// The billed model: the response model when present, else the requested one.
    pub model: String,
    /// The requested model.
    pub request_model: Option<String>,
    /// `chat`, `text_completion`, `embeddings`, `generate_content`, ...
    pub operation: String,
    /// All input tokens, cached ones included.
    pub input_tokens: Option<i64>,
    /// All output tokens, reasoning included.
    pub output_tokens: Option<i64>,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: Option<i64>,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: Option<i64>,
    /// Reasoning tokens (part of the output).
    pub reasoning_tokens: Option<i64>,
    /// Why generation stopped, one per choice.
    pub finish_reasons: Vec<String>,
    /// Time to the first streamed chunk, milliseconds.
    pub time_to_first_token_ms: Option<f64>,
    /// The end user.
    pub user: Option<String>,
    /// Session or conversation.
    pub session: Option<String>,
    /// The agent that made the call.
    pub agent: Option<String>,
    /// The tool, for tool-calling spans.
    pub tool: Option<String>,
    /// The cost the client computed, USD.
    pub client_cost_usd: Option<f64>,
    /// The prompt text, when the span carries it.
    pub prompt: Option<String>,
    /// The completion text, when the span carries it.
    pub completion: Option<String>,
}

impl LlmCall {
    /// The call's token counts for pricing (unreported counts are 0).
    pub fn usage(&self) -> crate::pricing::Usage {
        crate::pricing::Usage {
            input: self.input_tokens.unwrap_or(0),
            output: self.output_tokens.unwrap_or(0),
            cache_read: self.cache_read_tokens.unwrap_or(0),
            cache_write: self.cache_write_tokens.unwrap_or(0),
        }
    }
}

/// Attribute lookups over one span (and its resource for a few keys).
struct Attrs<'a>(&'a [KeyValue]);

impl<'a> Attrs<'a> {
    fn value(&self, key: &str) -> Option<&'a Value> {
        self.0
            .iter()
            .rev()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn str(&self, keys: &[&str]) -> Option<&'a str> {
        keys.iter().find_map(|k| match self.value(k)? {
            Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        })
    }

    fn int(&self, keys: &[&str]) -> Option<i64> {
        keys.iter().find_map(|k| match self.value(k)? {
            Value::IntValue(i) => Some(*i),
            Value::DoubleValue(d) if d.is_finite() => Some(d.round() as i64),
            Value::StringValue(s) => s.trim().parse().ok(),
            _ => None,
        })
    }

    fn float(&self, keys: &[&str]) -> Option<f64> {
        keys.iter().find_map(|k| match self.value(k)? {
            Value::DoubleValue(d) if d.is_finite() => Some(*d),
            Value::IntValue(i) => Some(*i as f64),
            Value::StringValue(s) => s.trim().parse().ok().filter(|d: &f64| d.is_finite()),
            _ => None,
        })
    }

    fn strings(&self, keys: &[&str]) -> Vec<String> {
        for k in keys {
            match self.value(k) {
                Some(Value::ArrayValue(a)) => {
                    return a
                        .values
                        .iter()
                        .filter_map(|v| match v.value.as_ref()? {
                            Value::StringValue(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                }
                Some(Value::StringValue(s)) if !s.is_empty() => return vec![s.clone()],
                _ => {}
            }
        }
        Vec::new()
    }

    /// Joins `prefix.{i}.suffix` string values for i = 0, 1, ... in order.
    fn indexed(&self, prefix: &str, suffix: &str) -> Option<String> {
        let mut parts: Vec<(usize, &str)> = self
            .0
            .iter()
            .filter_map(|kv| {
                let rest = kv.key.strip_prefix(prefix)?.strip_prefix('.')?;
                let (index, tail) = rest.split_once('.')?;
                if tail != suffix {
                    return None;
                }
                match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some((index.parse().ok()?, s.as_str())),
                    _ => None,
                }
            })
            .collect();
        if parts.is_empty() {
            return None;
        }
        parts.sort_by_key(|(i, _)| *i);
        Some(parts.iter().map(|(_, s)| *s).collect::<Vec<_>>().join("\n"))
    }
}

const PROVIDER: &[&str] = &[
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",
    "llm.system",
    "ai.model.provider",
];
const RESPONSE_MODEL: &[&str] = &["gen_ai.response.model", "llm.response.model_name"];
const REQUEST_MODEL: &[&str] = &[
    "gen_ai.request.model",
    "llm.model_name",
    "llm.request.model_name",
    "ai.model.id",
];
const INPUT: &[&str] = &[
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "ai.usage.promptTokens",
    "ai.usage.inputTokens",
];
const OUTPUT: &[&str] = &[
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "ai.usage.completionTokens",
    "ai.usage.outputTokens",
];
const TOTAL: &[&str] = &[
    "llm.usage.total_tokens",
    "llm.token_count.total",
    "ai.usage.tokens",
    "gen_ai.usage.total_tokens",
];
const CACHE_READ: &[&str] = &[
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "ai.usage.cachedInputTokens",
];
const CACHE_WRITE: &[&str] = &[
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
];
const REASONING: &[&str] = &[
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
    "ai.usage.reasoningTokens",
];
const COST: &[&str] = &["gen_ai.usage.cost", "llm.cost.total"];
const USER: &[&str] = &[
    "user.id",
    "enduser.id",
    "llm.user",
    "langfuse.user.id",
    "traceloop.association.properties.user_id",
    "ai.telemetry.metadata.userId",
];
const SESSION: &[&str] = &[
    "session.id",
    "gen_ai.conversation.id",
    "langfuse.session.id",
    "traceloop.association.properties.session_id",
    "ai.telemetry.metadata.sessionId",
];
const PROMPT: &[&str] = &[
    "gen_ai.input.messages",
    "input.value",
    "ai.prompt",
    "ai.prompt.messages",
    "gen_ai.system_instructions",
];
const COMPLETION: &[&str] = &["gen_ai.output.messages", "output.value", "ai.response.text"];

/// The provider as the current conventions name it (`gen_ai.provider.name`
/// values): older and vendor spellings mapped, lower case. The Vercel AI
/// SDK's `openai.chat` style is cut at its first dot when `from_vercel`.
///
/// ```
/// use observatory_schemas::genai::normalize_provider;
/// assert_eq!(normalize_provider("Vertex", false), "gcp.vertex_ai");
/// assert_eq!(normalize_provider("openai.chat", true), "openai");
/// ```
pub fn normalize_provider(raw: &str, from_vercel: bool) -> String {
    let lower = raw.trim().to_ascii_lowercase();
    // The Vercel AI SDK writes `openai.chat`, `anthropic.messages`, ...
    let base = if from_vercel {
        lower.split('.').next().unwrap_or("").to_owned()
    } else {
        lower
    };
    match base.as_str() {
        "google" | "google.generative-ai" | "gemini" => "gcp.gemini".to_owned(),
        "vertex" | "vertexai" | "google.vertex" => "gcp.vertex_ai".to_owned(),
        "bedrock" | "amazon-bedrock" => "aws.bedrock".to_owned(),
        "azure" | "azure-openai" | "az.ai.openai" => "azure.ai.openai".to_owned(),
        "mistral" | "mistralai" => "mistral_ai".to_owned(),
        _ => base,
    }
}

/// The operation, from whichever dialect says it.
fn operation(attrs: &Attrs<'_>) -> Option<String> {
    if let Some(op) = attrs.str(&["gen_ai.operation.name", "llm.request.type"]) {
        return Some(op.to_ascii_lowercase());
    }
    if let Some(kind) = attrs.str(&["openinference.span.kind"]) {
        return match kind.to_ascii_uppercase().as_str() {
            "LLM" => Some("chat".into()),
            "EMBEDDING" => Some("embeddings".into()),
            _ => None,
        };
    }
    let id = attrs.str(&["ai.operationId"])?;
    Some(
        if id.contains("embed") {
            "embeddings"
        } else {
            "chat"
        }
        .into(),
    )
}

/// Message text from the events of older conventions (`gen_ai.user.message`,
/// `gen_ai.choice`, `gen_ai.content.prompt`, the inference-details event).
fn event_text(events: &[Event], prompt: bool) -> Option<String> {
    let mut parts = Vec::new();
    for e in events {
        let attrs = Attrs(&e.attributes);
        let wanted = match e.name.as_str() {
            "gen_ai.system.message"
            | "gen_ai.user.message"
            | "gen_ai.assistant.message"
            | "gen_ai.tool.message" => prompt,
            "gen_ai.choice" => !prompt,
            "gen_ai.content.prompt" => prompt,
            "gen_ai.content.completion" => !prompt,
            "gen_ai.client.inference.operation.details" => {
                let key = if prompt {
                    "gen_ai.input.messages"
                } else {
                    "gen_ai.output.messages"
                };
                if let Some(text) = attrs.str(&[key]) {
                    parts.push(text.to_owned());
                }
                false
            }
            _ => false,
        };
        if wanted {
            if let Some(text) =
                attrs.str(&["content", "gen_ai.prompt", "gen_ai.completion", "message"])
            {
                parts.push(text.to_owned());
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// The model call a span describes, or `None` when it describes none.
pub fn llm_call(span: &Span) -> Option<LlmCall> {
    let attrs = Attrs(&span.attributes);
    let request_model = attrs.str(REQUEST_MODEL).map(str::to_owned);
    let model = attrs
        .str(RESPONSE_MODEL)
        .map(str::to_owned)
        .or_else(|| request_model.clone());
    let mut input = attrs.int(INPUT);
    let mut output = attrs.int(OUTPUT);
    let total = attrs.int(TOTAL);
    let operation = operation(&attrs);
    let is_model_call = model.is_some()
        || input.is_some()
        || output.is_some()
        || matches!(
            operation.as_deref(),
            Some("chat" | "text_completion" | "generate_content" | "embeddings" | "completion")
        );
    if !is_model_call
        || matches!(
            operation.as_deref(),
            Some("execute_tool" | "invoke_agent" | "create_agent" | "invoke_workflow")
        ) && model.is_none()
    {
        return None;
    }

    // Totals fill in a missing side.
    match (input, output, total) {
        (None, Some(o), Some(t)) if t >= o => input = Some(t - o),
        (Some(i), None, Some(t)) if t >= i => output = Some(t - i),
        _ => {}
    }
    let cache_read = attrs.int(CACHE_READ);
    let cache_write = attrs.int(CACHE_WRITE);
    let reasoning = attrs.int(REASONING);
    // Subset rules: an input below its own cache subsets was reported without them.
    let cached = cache_read.unwrap_or(0) + cache_write.unwrap_or(0);
    if let Some(i) = input {
        if i < cached {
            input = Some(i + cached);
        }
    } else if cached > 0 {
        input = Some(cached);
    }
    if let (Some(o), Some(r)) = (output, reasoning) {
        if o < r {
            output = Some(o + r);
        }
    }

    let provider_raw = attrs.str(PROVIDER);
    let from_vercel = provider_raw.is_some() && attrs.str(&PROVIDER[..4]).is_none();
    let provider = provider_raw
        .map(|p| normalize_provider(p, from_vercel))
        .unwrap_or_else(|| "unknown".to_owned());
    let client_cost = attrs.float(COST).or_else(|| {
        match (
            attrs.float(&["llm.cost.prompt"]),
            attrs.float(&["llm.cost.completion"]),
        ) {
            (None, None) => None,
            (p, c) => Some(p.unwrap_or(0.0) + c.unwrap_or(0.0)),
        }
    });
    let ttft_ms = attrs
        .float(&[
            "gen_ai.response.time_to_first_chunk",
            "gen_ai.server.time_to_first_token",
        ])
        .map(|s| s * 1000.0)
        .or_else(|| attrs.float(&["ai.response.msToFirstChunk", "ai.stream.msToFirstChunk"]));
    let mut finish_reasons = attrs.strings(&[
        "gen_ai.response.finish_reasons",
        "ai.response.finishReason",
        "llm.finish_reason",
    ]);
    if finish_reasons.is_empty() {
        if let Some(r) = attrs.indexed("gen_ai.completion", "finish_reason") {
            finish_reasons = r.split('\n').map(str::to_owned).collect();
        }
    }
    let prompt = attrs
        .str(PROMPT)
        .map(str::to_owned)
        .or_else(|| attrs.indexed("gen_ai.prompt", "content"))
        .or_else(|| attrs.indexed("llm.input_messages", "message.content"))
        .or_else(|| event_text(&span.events, true));
    let completion = attrs
        .str(COMPLETION)
        .map(str::to_owned)
        .or_else(|| attrs.indexed("gen_ai.completion", "content"))
        .or_else(|| attrs.indexed("llm.output_messages", "message.content"))
        .or_else(|| event_text(&span.events, false));

    Some(LlmCall {
        provider,
        model: model.unwrap_or_else(|| "unknown".to_owned()),
        request_model,
        operation: operation.unwrap_or_else(|| "chat".to_owned()),
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        reasoning_tokens: reasoning,
        finish_reasons,
        time_to_first_token_ms: ttft_ms,
        user: attrs.str(USER).map(str::to_owned),
        session: attrs.str(SESSION).map(str::to_owned),
        agent: attrs.str(&["gen_ai.agent.name"]).map(str::to_owned),
        tool: attrs.str(&["gen_ai.tool.name"]).map(str::to_owned),
        client_cost_usd: client_cost,
        prompt,
        completion,
    })
}

/// The deployment environment of a resource (`deployment.environment.name`,
/// or the older `deployment.environment`).
pub fn environment(resource_attributes: &[KeyValue]) -> Option<String> {
    Attrs(resource_attributes)
        .str(&["deployment.environment.name", "deployment.environment"])
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{kv_f64, kv_int, kv_str, kv_str_array};

    fn span(attributes: Vec<KeyValue>) -> Span {
        Span {
            attributes,
            ..Default::default()
        }
    }

    #[test]
    fn current_otel_names_with_reasoning() {
        let call = llm_call(&span(vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", "o3-mini"),
            kv_str("gen_ai.response.model", "o3-mini-2025-01-31"),
            kv_int("gen_ai.usage.input_tokens", 2000),
            kv_int("gen_ai.usage.output_tokens", 1000),
            kv_int("gen_ai.usage.reasoning.output_tokens", 600),
            kv_int("gen_ai.usage.cache_read.input_tokens", 500),
            kv_str_array("gen_ai.response.finish_reasons", &["stop"]),
            kv_f64("gen_ai.response.time_to_first_chunk", 0.25),
            kv_str("user.id", "u1"),
            kv_str("gen_ai.conversation.id", "c1"),
        ]))
        .unwrap();
        assert_eq!(call.provider, "openai");
        assert_eq!(
            call.model, "o3-mini-2025-01-31",
            "the response model is billed"
        );
        assert_eq!(call.request_model.as_deref(), Some("o3-mini"));
        assert_eq!(
            (call.input_tokens, call.output_tokens),
            (Some(2000), Some(1000)),
            "subsets stay inside"
        );
        assert_eq!(call.reasoning_tokens, Some(600));
        assert_eq!(call.cache_read_tokens, Some(500));
        assert_eq!(call.finish_reasons, vec!["stop"]);
        assert_eq!(call.time_to_first_token_ms, Some(250.0));
        assert_eq!(call.user.as_deref(), Some("u1"));
        assert_eq!(call.session.as_deref(), Some("c1"));
    }

    #[test]
    fn anthropic_native_counts_exclude_the_cache_and_are_made_inclusive() {
        // Anthropic's own usage: input_tokens = 200 uncached, plus 5000 read and 1000 written.
        let call = llm_call(&span(vec![
            kv_str("gen_ai.system", "anthropic"),
            kv_str("gen_ai.request.model", "claude-sonnet-4-20250514"),
            kv_int("gen_ai.usage.input_tokens", 200),
            kv_int("gen_ai.usage.output_tokens", 300),
            kv_int("gen_ai.usage.cache_read_input_tokens", 5000),
            kv_int("gen_ai.usage.cache_creation_input_tokens", 1000),
        ]))
        .unwrap();
        assert_eq!(call.input_tokens, Some(6200));
        assert_eq!(call.cache_read_tokens, Some(5000));
        assert_eq!(call.cache_write_tokens, Some(1000));
    }

    #[test]
    fn openinference_and_openllmetry_and_vercel() {
        let oi = llm_call(&span(vec![
            kv_str("openinference.span.kind", "LLM"),
            kv_str("llm.provider", "openai"),
            kv_str("llm.model_name", "gpt-4o-mini"),
            kv_int("llm.token_count.prompt", 100),
            kv_int("llm.token_count.completion", 20),
            kv_str("llm.input_messages.1.message.content", "second"),
            kv_str("llm.input_messages.0.message.content", "first"),
            kv_f64("llm.cost.total", 0.001),
        ]))
        .unwrap();
        assert_eq!(
            (
                oi.provider.as_str(),
                oi.model.as_str(),
                oi.operation.as_str()
            ),
            ("openai", "gpt-4o-mini", "chat")
        );
        assert_eq!((oi.input_tokens, oi.output_tokens), (Some(100), Some(20)));
        assert_eq!(oi.prompt.as_deref(), Some("first\nsecond"));
        assert_eq!(oi.client_cost_usd, Some(0.001));

        let ol = llm_call(&span(vec![
            kv_str("gen_ai.system", "openai"),
            kv_str("llm.request.type", "chat"),
            kv_str("gen_ai.request.model", "gpt-4o"),
            kv_int("gen_ai.usage.prompt_tokens", 40),
            kv_int("llm.usage.total_tokens", 50),
            kv_str("gen_ai.completion.0.content", "hello"),
        ]))
        .unwrap();
        assert_eq!(
            (ol.input_tokens, ol.output_tokens),
            (Some(40), Some(10)),
            "output from the total"
        );
        assert_eq!(ol.completion.as_deref(), Some("hello"));

        let v = llm_call(&span(vec![
            kv_str("ai.operationId", "ai.generateText.doGenerate"),
            kv_str("ai.model.provider", "anthropic.messages"),
            kv_str("ai.model.id", "claude-3-5-haiku-20241022"),
            kv_int("ai.usage.promptTokens", 10),
            kv_int("ai.usage.completionTokens", 5),
            kv_str("ai.response.finishReason", "stop"),
        ]))
        .unwrap();
        assert_eq!(
            (v.provider.as_str(), v.model.as_str()),
            ("anthropic", "claude-3-5-haiku-20241022")
        );
        assert_eq!(v.finish_reasons, vec!["stop"]);
    }

    #[test]
    fn agent_and_tool_spans_are_not_model_calls() {
        assert!(llm_call(&span(vec![
            kv_str("gen_ai.operation.name", "execute_tool"),
            kv_str("gen_ai.tool.name", "x")
        ]))
        .is_none());
        assert!(llm_call(&span(vec![kv_str("gen_ai.operation.name", "invoke_agent")])).is_none());
        assert!(llm_call(&span(vec![kv_str("http.method", "GET")])).is_none());
    }
}
