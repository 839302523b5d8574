//! A model call's captured content as chat messages, whatever the
//! instrumentation that captured it (design/genai-conventions.md, "content").
//!
//! Content arrives in five shapes: the current conventions' JSON
//! (`gen_ai.input.messages`, `gen_ai.output.messages`,
//! `gen_ai.system_instructions`, as span attributes or on the
//! `gen_ai.client.inference.operation.details` event), OpenLLMetry's indexed
//! attributes (`gen_ai.prompt.{i}.role`), OpenInference's
//! (`llm.input_messages.{i}.message.role`, `input.value`), the Vercel AI
//! SDK's (`ai.prompt.messages`, `ai.response.text`, `ai.response.toolCalls`)
//! and span events (`gen_ai.user.message`, `gen_ai.choice`, ...). [`chat`]
//! reads a stored span (attributes as one JSON object, events as the sink
//! writes them) and gives the same [`Chat`] for all of them: roles, text,
//! tool calls and tool results. Pure: no I/O; text is returned as text, never
//! interpreted.

use serde::Serialize;
use serde_json::{Map, Value};

/// One message of a conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool` (as the instrumentation says it).
    pub role: String,
    /// The text; empty when the message is only tool calls.
    pub content: String,
    /// Tools the model asked to call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool result: the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For an output message: why generation stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

/// A tool call the model made.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ToolCall {
    /// The call id, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool's name.
    pub name: String,
    /// Its arguments, as JSON text.
    pub arguments: String,
}

/// What went into a model call and what came out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Chat {
    /// System instructions and the conversation so far.
    pub input: Vec<Message>,
    /// The model's answer (one message per choice).
    pub output: Vec<Message>,
}

impl Chat {
    /// Nothing captured.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty() && self.output.is_empty()
    }
}

/// The chat of one span, from its attributes (a JSON object) and events (a
/// JSON array of `{name, attributes}`). Each side comes from the first
/// shape that holds it.
pub fn chat(attributes: &Value, events: &Value) -> Chat {
    let empty = Map::new();
    let attrs = attributes.as_object().unwrap_or(&empty);
    let events: &[Value] = events.as_array().map_or(&[], Vec::as_slice);
    let mut input = first_of(&[
        &|| conventions(attrs, "gen_ai.input.messages", "user"),
        &|| indexed(attrs, "gen_ai.prompt", ""),
        &|| indexed(attrs, "llm.input_messages", "message."),
        &|| vercel_prompt(attrs),
        &|| event_messages(events, true),
        &|| plain(attrs, "input.value", "user"),
    ]);
    if !input.iter().any(|m| m.role == "system") {
        if let Some(system) = attrs
            .get("gen_ai.system_instructions")
            .or_else(|| details(events, "gen_ai.system_instructions"))
        {
            let content = parts_text(&parse_json(system));
            if !content.is_empty() {
                input.insert(
                    0,
                    Message {
                        role: "system".into(),
                        content,
                        ..Message::default()
                    },
                );
            }
        }
    }
    let output = first_of(&[
        &|| conventions(attrs, "gen_ai.output.messages", "assistant"),
        &|| indexed(attrs, "gen_ai.completion", ""),
        &|| indexed(attrs, "llm.output_messages", "message."),
        &|| vercel_response(attrs),
        &|| event_messages(events, false),
        &|| plain(attrs, "output.value", "assistant"),
    ]);
    Chat { input, output }
}

fn first_of(sources: &[&dyn Fn() -> Vec<Message>]) -> Vec<Message> {
    sources
        .iter()
        .map(|f| f())
        .find(|m| !m.is_empty())
        .unwrap_or_default()
}

/// A JSON value that may have been sent as a string holding JSON.
fn parse_json(value: &Value) -> Value {
    match value {
        Value::String(s) if s.trim_start().starts_with(['[', '{']) => {
            serde_json::from_str(s).unwrap_or_else(|_| value.clone())
        }
        other => other.clone(),
    }
}

/// Text of a value: a string, or the text parts of an array of parts.
fn parts_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => ["content", "text"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_str))
                    .map(str::to_owned),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn text(value: Option<&Value>) -> String {
    value
        .map(|v| parts_text(&parse_json(v)))
        .unwrap_or_default()
}

fn json_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn str_of(o: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match o.get(*k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// One message in any of the JSON shapes: the conventions' `{role, parts}`,
/// OpenAI's `{role, content, tool_calls}`, the Vercel SDK's content parts.
fn json_message(value: &Value, default_role: &str) -> Option<Message> {
    let o = value.as_object()?;
    let mut message = Message {
        role: str_of(o, &["role"]).unwrap_or_else(|| default_role.to_owned()),
        finish_reason: str_of(o, &["finish_reason", "finishReason"]),
        tool_call_id: str_of(o, &["tool_call_id", "toolCallId"]),
        ..Message::default()
    };
    let mut texts = Vec::new();
    let parts = o
        .get("parts")
        .or_else(|| o.get("content").filter(|c| c.is_array()));
    if let Some(Value::Array(parts)) = parts {
        for part in parts {
            let Some(p) = part.as_object() else {
                if let Some(s) = part.as_str() {
                    texts.push(s.to_owned());
                }
                continue;
            };
            match p.get("type").and_then(Value::as_str).unwrap_or("text") {
                "tool_call" | "tool-call" | "function_call" => message.tool_calls.push(ToolCall {
                    id: str_of(p, &["id", "toolCallId", "call_id"]),
                    name: str_of(p, &["name", "toolName"]).unwrap_or_default(),
                    arguments: json_text(p.get("arguments").or(p.get("args")).or(p.get("input"))),
                }),
                "tool_call_response" | "tool-result" | "function_call_output" => {
                    message.tool_call_id = message
                        .tool_call_id
                        .or_else(|| str_of(p, &["id", "toolCallId", "call_id"]));
                    texts.push(json_text(
                        p.get("response")
                            .or(p.get("result"))
                            .or(p.get("output"))
                            .or(p.get("content")),
                    ));
                }
                _ => {
                    if let Some(t) = str_of(p, &["content", "text"]) {
                        texts.push(t);
                    }
                }
            }
        }
    } else if let Some(content) = o.get("content") {
        texts.push(text(Some(content)));
    }
    if let Some(Value::Array(calls)) = o.get("tool_calls").map(parse_json).as_ref() {
        for call in calls.iter().filter_map(Value::as_object) {
            let function = call
                .get("function")
                .and_then(Value::as_object)
                .unwrap_or(call);
            message.tool_calls.push(ToolCall {
                id: str_of(call, &["id"]),
                name: str_of(function, &["name"]).unwrap_or_default(),
                arguments: json_text(function.get("arguments")),
            });
        }
    }
    message.content = texts.join("\n");
    Some(message)
}

fn json_messages(value: &Value, default_role: &str) -> Vec<Message> {
    match parse_json(value) {
        Value::Array(items) => items
            .iter()
            .filter_map(|m| json_message(m, default_role))
            .collect(),
        obj @ Value::Object(_) => json_message(&obj, default_role).into_iter().collect(),
        Value::String(s) if !s.is_empty() => vec![Message {
            role: default_role.to_owned(),
            content: s,
            ..Message::default()
        }],
        _ => Vec::new(),
    }
}

/// The current conventions: one attribute holding the messages as JSON.
fn conventions(attrs: &Map<String, Value>, key: &str, default_role: &str) -> Vec<Message> {
    attrs
        .get(key)
        .map(|v| json_messages(v, default_role))
        .unwrap_or_default()
}

/// Indexed attributes: `{prefix}.{i}.{inner}role`, `.content`, `.tool_calls.{j}...`
/// (OpenLLMetry with an empty `inner`, OpenInference with `message.`).
fn indexed(attrs: &Map<String, Value>, prefix: &str, inner: &str) -> Vec<Message> {
    let mut by_index: std::collections::BTreeMap<usize, Map<String, Value>> = Default::default();
    let start = format!("{prefix}.");
    for (key, value) in attrs {
        let Some(rest) = key.strip_prefix(&start) else {
            continue;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        let (Ok(index), Some(field)) = (index.parse::<usize>(), field.strip_prefix(inner)) else {
            continue;
        };
        by_index
            .entry(index)
            .or_default()
            .insert(field.to_owned(), value.clone());
    }
    by_index
        .into_values()
        .map(|fields| {
            let mut message = Message {
                role: str_of(&fields, &["role"]).unwrap_or_else(|| "user".into()),
                content: text(fields.get("content")),
                finish_reason: str_of(&fields, &["finish_reason"]),
                tool_call_id: str_of(&fields, &["tool_call_id"]),
                ..Message::default()
            };
            let mut calls: std::collections::BTreeMap<usize, ToolCall> = Default::default();
            for (field, value) in &fields {
                let Some(rest) = field.strip_prefix("tool_calls.") else {
                    continue;
                };
                let Some((j, name)) = rest.split_once('.') else {
                    continue;
                };
                let Ok(j) = j.parse::<usize>() else { continue };
                let call = calls.entry(j).or_default();
                match name.trim_start_matches("tool_call.") {
                    "id" => call.id = value.as_str().map(str::to_owned),
                    "name" | "function.name" => call.name = json_text(Some(value)),
                    "arguments" | "function.arguments" => call.arguments = json_text(Some(value)),
                    _ => {}
                }
            }
            message.tool_calls = calls.into_values().collect();
            message
        })
        .collect()
}

/// The Vercel AI SDK: `ai.prompt.messages` (JSON), or `ai.prompt` as
/// `{system, prompt, messages}`.
fn vercel_prompt(attrs: &Map<String, Value>) -> Vec<Message> {
    if let Some(messages) = attrs.get("ai.prompt.messages") {
        return json_messages(messages, "user");
    }
    let Some(prompt) = attrs.get("ai.prompt").map(parse_json) else {
        return Vec::new();
    };
    let Some(o) = prompt.as_object() else {
        return json_messages(&prompt, "user");
    };
    let mut out = Vec::new();
    if let Some(system) = str_of(o, &["system"]) {
        out.push(Message {
            role: "system".into(),
            content: system,
            ..Message::default()
        });
    }
    if let Some(messages) = o.get("messages") {
        out.extend(json_messages(messages, "user"));
    } else if let Some(p) = o.get("prompt") {
        out.extend(json_messages(p, "user"));
    }
    out
}

/// The Vercel AI SDK's answer: `ai.response.text` and `ai.response.toolCalls`.
fn vercel_response(attrs: &Map<String, Value>) -> Vec<Message> {
    let content = attrs
        .get("ai.response.text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let tool_calls: Vec<ToolCall> = match attrs.get("ai.response.toolCalls").map(parse_json) {
        Some(Value::Array(calls)) => calls
            .iter()
            .filter_map(Value::as_object)
            .map(|c| ToolCall {
                id: str_of(c, &["toolCallId", "id"]),
                name: str_of(c, &["toolName", "name"]).unwrap_or_default(),
                arguments: json_text(c.get("args").or(c.get("input"))),
            })
            .collect(),
        _ => Vec::new(),
    };
    if content.is_empty() && tool_calls.is_empty() {
        return Vec::new();
    }
    vec![Message {
        role: "assistant".into(),
        content,
        tool_calls,
        finish_reason: str_of(attrs, &["ai.response.finishReason"]),
        ..Message::default()
    }]
}

fn event_attrs(event: &Value) -> Option<(&str, &Map<String, Value>)> {
    let name = event.get("name")?.as_str()?;
    let attrs = event.get("attributes")?.as_object()?;
    Some((name, attrs))
}

/// An attribute of the `gen_ai.client.inference.operation.details` event.
fn details<'a>(events: &'a [Value], key: &str) -> Option<&'a Value> {
    events.iter().find_map(|e| {
        let (name, attrs) = event_attrs(e)?;
        (name == "gen_ai.client.inference.operation.details")
            .then(|| attrs.get(key))
            .flatten()
    })
}

/// Span events: one per message (`gen_ai.user.message`, `gen_ai.choice`,
/// ...), the details event, or the older `gen_ai.content.*`.
fn event_messages(events: &[Value], input: bool) -> Vec<Message> {
    let key = if input {
        "gen_ai.input.messages"
    } else {
        "gen_ai.output.messages"
    };
    if let Some(v) = details(events, key) {
        return json_messages(v, if input { "user" } else { "assistant" });
    }
    let mut out = Vec::new();
    for event in events {
        let Some((name, attrs)) = event_attrs(event) else {
            continue;
        };
        let role = match (name, input) {
            ("gen_ai.system.message", true) => "system",
            ("gen_ai.user.message", true) => "user",
            ("gen_ai.assistant.message", true) => "assistant",
            ("gen_ai.tool.message", true) => "tool",
            ("gen_ai.content.prompt", true) => "user",
            ("gen_ai.choice", false) | ("gen_ai.content.completion", false) => "assistant",
            _ => continue,
        };
        let body = attrs
            .get("message")
            .or(attrs.get("content"))
            .or(attrs.get("gen_ai.prompt"))
            .or(attrs.get("gen_ai.completion"));
        let mut message = match body.map(parse_json) {
            Some(obj @ Value::Object(_)) => json_message(&obj, role).unwrap_or_default(),
            other => Message {
                role: role.into(),
                content: text(other.as_ref()),
                ..Message::default()
            },
        };
        if message.role.is_empty() {
            message.role = role.into();
        }
        if message.tool_call_id.is_none() {
            message.tool_call_id = str_of(attrs, &["id", "gen_ai.tool.call.id"]);
        }
        if message.finish_reason.is_none() {
            message.finish_reason = str_of(attrs, &["finish_reason"]);
        }
        if let Some(Value::Array(calls)) = attrs.get("tool_calls").map(parse_json).as_ref() {
            if message.tool_calls.is_empty() {
                let wrapped = serde_json::json!({ "tool_calls": calls });
                message.tool_calls = json_message(&wrapped, role).unwrap_or_default().tool_calls;
            }
        }
        out.push(message);
    }
    out
}

/// OpenInference's `input.value` / `output.value`: JSON with `messages`, or text.
fn plain(attrs: &Map<String, Value>, key: &str, role: &str) -> Vec<Message> {
    let Some(value) = attrs.get(key).map(parse_json) else {
        return Vec::new();
    };
    match &value {
        Value::Object(o) if o.contains_key("messages") => json_messages(&o["messages"], role),
        Value::Object(o) if o.contains_key("choices") => match &o["choices"] {
            Value::Array(choices) => choices
                .iter()
                .filter_map(|c| {
                    let mut m = json_message(c.get("message")?, role)?;
                    m.finish_reason = m
                        .finish_reason
                        .or_else(|| c.get("finish_reason")?.as_str().map(str::to_owned));
                    Some(m)
                })
                .collect(),
            _ => Vec::new(),
        },
        Value::Null => Vec::new(),
        other => vec![Message {
            role: role.into(),
            content: json_text(Some(other)),
            ..Message::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            ..Message::default()
        }
    }

    #[test]
    fn the_current_conventions_json_with_parts_tool_calls_and_system_instructions() {
        let attrs = json!({
            "gen_ai.system_instructions": "[{\"type\":\"text\",\"content\":\"Be brief.\"}]",
            "gen_ai.input.messages": "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"Weather in Paris?\"}]},{\"role\":\"tool\",\"parts\":[{\"type\":\"tool_call_response\",\"id\":\"c1\",\"response\":\"rainy, 57F\"}]}]",
            "gen_ai.output.messages": "[{\"role\":\"assistant\",\"parts\":[{\"type\":\"tool_call\",\"id\":\"c2\",\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}],\"finish_reason\":\"tool_call\"}]"
        });
        let chat = chat(&attrs, &json!([]));
        assert_eq!(chat.input[0], m("system", "Be brief."));
        assert_eq!(chat.input[1], m("user", "Weather in Paris?"));
        assert_eq!(chat.input[2].role, "tool");
        assert_eq!(chat.input[2].content, "rainy, 57F");
        assert_eq!(chat.input[2].tool_call_id.as_deref(), Some("c1"));
        let out = &chat.output[0];
        assert_eq!(out.finish_reason.as_deref(), Some("tool_call"));
        assert_eq!(out.tool_calls[0].name, "get_weather");
        assert_eq!(out.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
        assert_eq!(out.tool_calls[0].id.as_deref(), Some("c2"));
    }

    #[test]
    fn openllmetry_indexed_attributes_in_index_order() {
        let attrs = json!({
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": "second",
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "first",
            "gen_ai.prompt.10.role": "user",
            "gen_ai.prompt.10.content": "eleventh",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "",
            "gen_ai.completion.0.finish_reason": "tool_calls",
            "gen_ai.completion.0.tool_calls.0.name": "search",
            "gen_ai.completion.0.tool_calls.0.arguments": "{\"q\":\"x\"}",
            "gen_ai.completion.0.tool_calls.0.id": "t1"
        });
        let chat = chat(&attrs, &json!([]));
        let contents: Vec<&str> = chat.input.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["first", "second", "eleventh"]);
        assert_eq!(chat.output[0].tool_calls[0].name, "search");
        assert_eq!(chat.output[0].tool_calls[0].id.as_deref(), Some("t1"));
        assert_eq!(chat.output[0].finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn openinference_messages_and_plain_values() {
        let attrs = json!({
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": "hi",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "{}",
        });
        let chat = chat(&attrs, &json!([]));
        assert_eq!(chat.input, vec![m("user", "hi")]);
        assert_eq!(chat.output[0].tool_calls[0].name, "lookup");

        let plain = super::chat(
            &json!({"input.value": "question", "output.value": "answer"}),
            &json!([]),
        );
        assert_eq!(plain.input, vec![m("user", "question")]);
        assert_eq!(plain.output, vec![m("assistant", "answer")]);
    }

    #[test]
    fn vercel_ai_sdk_prompt_and_response() {
        let attrs = json!({
            "ai.prompt": "{\"system\":\"sys\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hello\"}]}]}",
            "ai.response.text": "hey",
            "ai.response.toolCalls": "[{\"toolCallId\":\"a\",\"toolName\":\"t\",\"args\":\"{}\"}]"
        });
        let chat = chat(&attrs, &json!([]));
        assert_eq!(chat.input, vec![m("system", "sys"), m("user", "hello")]);
        assert_eq!(chat.output[0].content, "hey");
        assert_eq!(chat.output[0].tool_calls[0].name, "t");
    }

    #[test]
    fn span_events_one_per_message() {
        let events = json!([
            {"name": "gen_ai.system.message", "attributes": {"content": "rules"}},
            {"name": "gen_ai.user.message", "attributes": {"content": "hello"}},
            {"name": "gen_ai.tool.message", "attributes": {"content": "42", "id": "call_1"}},
            {"name": "other", "attributes": {"content": "ignored"}},
            {"name": "gen_ai.choice", "attributes": {"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hi there"}}}
        ]);
        let chat = chat(&json!({}), &events);
        assert_eq!(chat.input.len(), 3);
        assert_eq!(chat.input[2].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(chat.output[0].content, "hi there");
        assert_eq!(chat.output[0].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn hostile_or_malformed_content_stays_text() {
        let attrs = json!({
            "gen_ai.input.messages": "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"<script>alert(1)</script>\"}]}",
            "gen_ai.output.messages": 17
        });
        let chat = chat(&attrs, &json!(null));
        // Not valid JSON: kept as one user message of text.
        assert_eq!(chat.input[0].role, "user");
        assert!(chat.input[0].content.contains("<script>"));
        assert!(chat.output.is_empty());
        assert!(super::chat(&json!(null), &json!(null)).is_empty());
    }
}
