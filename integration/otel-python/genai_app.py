#!/usr/bin/env python3
"""An LLM application that samples its traces, as the official SDK sees it.

    genai_app.py --endpoint URL --header k=v [--calls N] [--traced-every K]
                 [--service NAME] [--spans-only] [--delta] [--flushes F]

The known-answer test of `source=auto` (integration/tests/e2e/metrics_logs.rs)
runs it against the collector's OTLP/HTTP endpoint (`/v1/metrics`,
`/v1/traces` are appended to URL). It makes N model calls, recorded the way
the OpenTelemetry GenAI instrumentations record them:

- metrics, for every call: `gen_ai.client.operation.duration` (s, the
  advised buckets, `error.type` on failures) and `gen_ai.client.token.usage`
  (`gen_ai.token.type` input and output), cumulative (the SDK's default)
  or delta (--delta), exported F times while the calls are made;
- a span, for every K-th call only (the application samples its traces):
  a `chat` client span with the model, provider and token counts.

Call n (1-based) uses model MODELS[n % 3], n*10 % 900 + 100 input tokens and
n*7 % 300 + 20 output tokens, takes (n % 40 + 1) / 20 s, and fails (no
tokens) when n % 50 == 0. With --spans-only it records no metrics and traces
every call (an application without metrics instrumentation).

Everything goes through the SDK's own OTLP/HTTP exporters. The last stdout
line is a JSON object with what was recorded, by model: calls, errors,
input and output tokens, and the traced calls; the test prices them by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-20250514"]
PROVIDERS = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "claude-sonnet-4-20250514": "anthropic"}
DURATION_BOUNDS = [0.01 * 2**j for j in range(14)]
TOKEN_BOUNDS = [4.0**j for j in range(14)]
SCOPE = "observatory.genai-app"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="A sampled LLM application (OpenTelemetry SDK).")
    p.add_argument("--endpoint", required=True, help="the collector's OTLP/HTTP base URL")
    p.add_argument("--header", action="append", default=[], metavar="K=V")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--traced-every", type=int, default=10, metavar="K")
    p.add_argument("--service", default="genai-app")
    p.add_argument("--spans-only", action="store_true")
    p.add_argument("--delta", action="store_true", help="DELTA temporality for the histograms")
    p.add_argument("--flushes", type=int, default=4)
    a = p.parse_args(argv)
    a.headers = {}
    for h in a.header:
        k, sep, v = h.partition("=")
        if not sep:
            p.error(f"--header {h!r}: expected k=v")
        a.headers[k.strip()] = v
    return a


def call(n: int) -> dict:
    model = MODELS[n % 3]
    failed = n % 50 == 0
    return {
        "model": model,
        "provider": PROVIDERS[model],
        "input": 0 if failed else n * 10 % 900 + 100,
        "output": 0 if failed else n * 7 % 300 + 20,
        "seconds": (n % 40 + 1) / 20,
        "failed": failed,
    }


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    base = a.endpoint.rstrip("/")
    resource = Resource.create({"service.name": a.service, "deployment.environment.name": "prod"})
    failures: list[str] = []

    class Checked(OTLPMetricExporter):
        def export(self, batch, *args, **kwargs):
            result = super().export(batch, *args, **kwargs)
            if getattr(result, "name", "") != "SUCCESS":
                failures.append(f"metrics export: {result}")
            return result

    class CheckedSpans(OTLPSpanExporter):
        def export(self, spans, *args, **kwargs):
            result = super().export(spans, *args, **kwargs)
            if getattr(result, "name", "") != "SUCCESS":
                failures.append(f"span export: {result}")
            return result

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(CheckedSpans(endpoint=base + "/v1/traces", headers=a.headers))
    )
    tracer = tracer_provider.get_tracer(SCOPE)
    reader = None
    meter_provider = None
    if not a.spans_only:
        temporality = {Histogram: AggregationTemporality.DELTA} if a.delta else None
        reader = PeriodicExportingMetricReader(
            Checked(endpoint=base + "/v1/metrics", headers=a.headers, preferred_temporality=temporality),
            export_interval_millis=math.inf,
        )
        meter_provider = MeterProvider(
            resource=resource,
            metric_readers=[reader],
            views=[
                View(
                    instrument_name="gen_ai.client.operation.duration",
                    aggregation=ExplicitBucketHistogramAggregation(boundaries=DURATION_BOUNDS),
                ),
                View(
                    instrument_name="gen_ai.client.token.usage",
                    aggregation=ExplicitBucketHistogramAggregation(boundaries=TOKEN_BOUNDS),
                ),
            ],
        )
        meter = meter_provider.get_meter(SCOPE)
        duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration"
        )
        tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Measures number of input and output tokens used"
        )

    by_model: dict[str, dict] = {}
    traced = 0
    per_flush = math.ceil(a.calls / a.flushes)
    for n in range(1, a.calls + 1):
        c = call(n)
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": c["provider"],
            "gen_ai.request.model": c["model"],
            "gen_ai.response.model": c["model"],
        }
        m = by_model.setdefault(
            c["model"], {"calls": 0, "errors": 0, "input": 0, "output": 0, "traced": 0,
                         "traced_input": 0, "traced_output": 0}
        )
        m["calls"] += 1
        m["errors"] += int(c["failed"])
        m["input"] += c["input"]
        m["output"] += c["output"]
        if not a.spans_only:
            if c["failed"]:
                duration.record(c["seconds"], {**attrs, "error.type": "timeout"})
            else:
                duration.record(c["seconds"], attrs)
                tokens.record(c["input"], {**attrs, "gen_ai.token.type": "input"})
                tokens.record(c["output"], {**attrs, "gen_ai.token.type": "output"})
        if a.spans_only or n % a.traced_every == 0:
            traced += 1
            m["traced"] += 1
            m["traced_input"] += c["input"]
            m["traced_output"] += c["output"]
            start = time.time_ns()
            end = start + int(c["seconds"] * 1e9)
            span = tracer.start_span(
                f"chat {c['model']}", kind=SpanKind.CLIENT, attributes=attrs, start_time=start
            )
            if c["failed"]:
                span.set_attribute("error.type", "timeout")
                span.set_status(Status(StatusCode.ERROR, "timeout"))
            else:
                span.set_attribute("gen_ai.usage.input_tokens", c["input"])
                span.set_attribute("gen_ai.usage.output_tokens", c["output"])
            span.end(end_time=end)
        if reader is not None and (n % per_flush == 0 or n == a.calls):
            reader.force_flush()
    tracer_provider.force_flush()
    tracer_provider.shutdown()
    if meter_provider is not None:
        meter_provider.shutdown()
    if failures:
        print(f"genai_app.py: {failures[0]}", file=sys.stderr)
        return 1
    print(json.dumps({"traced": traced, "models": by_model}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
