#!/usr/bin/env python3
"""Sends metrics and logs through the official OpenTelemetry Python SDK.

    send.py --endpoint URL --protocol grpc|http --run-id ID [--header k=v ...]
            [--logs N] [--flushes K] [--service NAME] [--delta]
            [--trace-id HEX32 --span-id HEX16] [--timeout SECONDS]
            [--unset-log-timestamps]

The end-to-end tests run it (with the python of install.sh's virtualenv)
against the collector. Everything goes through the SDK's own OTLP exporters
(opentelemetry.exporter.otlp.proto.grpc / .http; for HTTP, --endpoint is the
base URL and /v1/metrics, /v1/logs are appended), with the resource
service.name=NAME, run.id=ID.

Metrics: one MeterProvider whose PeriodicExportingMetricReader never ticks
(interval infinite) and is force-flushed K times, 20 ms apart; flush i
(0-based) records:
  obs.test.requests       Counter        +(i+1)               -> total K(K+1)/2
  obs.test.queue_depth    UpDownCounter  +3, -1               -> 2K
  obs.test.temperature    ObservableGauge 20.5 + i
  obs.test.latency        Histogram (explicit buckets, ms)    3, 12, 40, 700
  obs.test.size           Histogram (exponential buckets, By) 1, 2, 4, ... 1024
  gen_ai.client.token.usage / gen_ai.client.operation.duration: i+1 chat
      calls; the n-th call overall (1-based) used 100n input and 20n output
      tokens and took n/8 s.
All carry run_id=ID (the GenAI ones also gen_ai.operation.name=chat,
gen_ai.provider.name=openai, gen_ai.request.model and gen_ai.response.model
=gpt-4o-mini, and gen_ai.token.type=input|output on token.usage).
Temporality: the SDK's default (cumulative) unless --delta.

Logs: one LoggerProvider with a BatchLogRecordProcessor; N records "record i
of ID" (INFO, every 5th WARN: i % 5 == 4), attributes run_id, index; then, with
--trace-id/--span-id, three events on that span (event_name set through the
SDK's event_name field): gen_ai.client.inference.operation.details (input and
output messages as JSON strings), gen_ai.evaluation.result "relevance" (value
0.9 and label "relevant": a categorical score) and gen_ai.evaluation.result
"groundedness" (value 0.4, no label: a numeric score).

Every export's result is counted (the exporters are subclassed); the script
exits 1 naming the first failure, else 0, after printing as its last stdout
line one JSON object with the counts to expect (checked against what the SDK
actually handed to the exporters).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource

SCOPE = "observatory.otel-python-test"
LATENCY_BOUNDS = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0]
LATENCY_VALUES = [3.0, 12.0, 40.0, 700.0]
SIZE_VALUES = [float(2**j) for j in range(11)]
# The bucket boundaries the GenAI semantic conventions advise.
TOKEN_BOUNDS = [4.0**j for j in range(14)]
DURATION_BOUNDS = [0.01 * 2**j for j in range(14)]
GENAI_ATTRS = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini",
}
INPUT_MESSAGES = [{"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"}]}]
OUTPUT_MESSAGES = [
    {"role": "assistant", "parts": [{"type": "text", "content": "4"}], "finish_reason": "stop"}
]


def fail(message: str) -> None:
    print(f"send.py: {message}", file=sys.stderr)
    sys.exit(1)


class SdkErrors(logging.Handler):
    """Remembers the SDK's last warning or error, to name a failure."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.last = record.getMessage()
        except Exception:  # pylint: disable=broad-except
            pass


class Tally:
    """What the exporters were handed and what they returned."""

    def __init__(self, signal: str, sdk_errors: SdkErrors) -> None:
        self.signal = signal
        self.sdk_errors = sdk_errors
        self.ok = 0
        self.failures: list[str] = []
        self.batches: list = []

    def record(self, batch, result, error: BaseException | None = None) -> None:
        n = len(self.batches) + 1
        self.batches.append(batch)
        if error is None and getattr(result, "name", None) == "SUCCESS":
            self.ok += 1
            return
        why = repr(error) if error is not None else getattr(result, "name", repr(result))
        detail = f" ({self.sdk_errors.last})" if self.sdk_errors.last else ""
        self.failures.append(f"{self.signal} export #{n} failed: {why}{detail}")


def counting(base: type, tally: Tally) -> type:
    """The SDK exporter `base`, counting each export's ExportResult."""

    class Counting(base):  # type: ignore[misc, valid-type]
        def export(self, batch, *args, **kwargs):  # noqa: D401
            try:
                result = super().export(batch, *args, **kwargs)
            except BaseException as error:
                tally.record(batch, None, error)
                raise
            tally.record(batch, result)
            return result

    Counting.__name__ = f"Counting{base.__name__}"
    return Counting


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Send metrics and logs with the OpenTelemetry Python SDK.")
    p.add_argument("--endpoint", required=True, help="gRPC: http://host:port; HTTP: base URL")
    p.add_argument("--protocol", required=True, choices=["grpc", "http"])
    p.add_argument("--run-id", required=True)
    p.add_argument("--header", action="append", default=[], metavar="K=V")
    p.add_argument("--logs", type=int, default=10, metavar="N")
    p.add_argument("--flushes", type=int, default=3, metavar="K")
    p.add_argument("--service", default="otel-python-test")
    p.add_argument("--delta", action="store_true", help="prefer DELTA temporality for every instrument")
    p.add_argument("--trace-id", metavar="HEX32")
    p.add_argument("--span-id", metavar="HEX16")
    p.add_argument("--timeout", type=float, default=10.0, help="each export's timeout, retries included (s)")
    p.add_argument(
        "--unset-log-timestamps",
        action="store_true",
        help="leave the log records' timestamp unset (time_unix_nano 0, as the SDK does by default)",
    )
    a = p.parse_args(argv)
    if a.logs < 0 or a.flushes < 1:
        p.error("--logs must be >= 0 and --flushes >= 1")
    if (a.trace_id is None) != (a.span_id is None):
        p.error("--trace-id and --span-id go together")
    if a.trace_id is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{32}", a.trace_id) or int(a.trace_id, 16) == 0:
            p.error("--trace-id: 32 hex digits, not all zero")
        if not re.fullmatch(r"[0-9a-fA-F]{16}", a.span_id) or int(a.span_id, 16) == 0:
            p.error("--span-id: 16 hex digits, not all zero")
    a.headers = {}
    for h in a.header:
        k, sep, v = h.partition("=")
        if not sep or not k.strip():
            p.error(f"--header {h!r}: expected k=v")
        a.headers[k.strip()] = v
    if "://" not in a.endpoint:
        # Without a scheme the gRPC exporter would silently use TLS.
        a.endpoint = "http://" + a.endpoint
    return a


def exporters(a: argparse.Namespace):
    """The SDK's OTLP metric and log exporter classes, and their arguments."""
    if a.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        # gRPC metadata keys must be lower case.
        common = {
            "endpoint": a.endpoint,
            "insecure": not a.endpoint.startswith("https://"),
            "headers": {k.lower(): v for k, v in a.headers.items()},
            "timeout": a.timeout,
        }
        return OTLPMetricExporter, dict(common), OTLPLogExporter, dict(common)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    base = a.endpoint.rstrip("/")
    common = {"headers": dict(a.headers), "timeout": a.timeout}
    return (
        OTLPMetricExporter,
        {"endpoint": base + "/v1/metrics", **common},
        OTLPLogExporter,
        {"endpoint": base + "/v1/logs", **common},
    )


def send_metrics(a, resource, metric_cls, metric_kwargs, tally: Tally) -> dict:
    if a.delta:
        delta = AggregationTemporality.DELTA
        metric_kwargs["preferred_temporality"] = {
            Counter: delta,
            UpDownCounter: delta,
            Histogram: delta,
            ObservableCounter: delta,
            ObservableUpDownCounter: delta,
            ObservableGauge: delta,
        }
    exporter = counting(metric_cls, tally)(**metric_kwargs)
    # An infinite interval: no background thread, no export but force_flush
    # (shutdown does not collect either).
    reader = PeriodicExportingMetricReader(
        exporter, export_interval_millis=math.inf, export_timeout_millis=a.timeout * 1000 + 5000
    )
    provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="obs.test.latency",
                aggregation=ExplicitBucketHistogramAggregation(boundaries=LATENCY_BOUNDS),
            ),
            View(instrument_name="obs.test.size", aggregation=ExponentialBucketHistogramAggregation()),
        ],
    )
    meter = provider.get_meter(SCOPE, "1.0.0")
    run = {"run_id": a.run_id}
    state = {"flush": 0}

    def temperature(_options: CallbackOptions):
        yield Observation(20.5 + state["flush"], run)

    requests = meter.create_counter("obs.test.requests", unit="{request}", description="Requests served")
    queue = meter.create_up_down_counter("obs.test.queue_depth", unit="{item}", description="Items queued")
    meter.create_observable_gauge(
        "obs.test.temperature", callbacks=[temperature], unit="Cel", description="Temperature"
    )
    latency = meter.create_histogram("obs.test.latency", unit="ms", description="Latency")
    size = meter.create_histogram("obs.test.size", unit="By", description="Payload size")
    tokens = meter.create_histogram(
        "gen_ai.client.token.usage",
        unit="{token}",
        description="Number of input and output tokens used",
        explicit_bucket_boundaries_advisory=TOKEN_BOUNDS,
    )
    duration = meter.create_histogram(
        "gen_ai.client.operation.duration",
        unit="s",
        description="GenAI operation duration",
        explicit_bucket_boundaries_advisory=DURATION_BOUNDS,
    )

    calls = 0
    expect = {"counter_total": 0, "input": 0, "output": 0, "queue": 0}
    for i in range(a.flushes):
        state["flush"] = i
        requests.add(i + 1, run)
        expect["counter_total"] += i + 1
        queue.add(3, run)
        queue.add(-1, run)
        expect["queue"] += 2
        for v in LATENCY_VALUES:
            latency.record(v, run)
        for v in SIZE_VALUES:
            size.record(v, run)
        for _ in range(i + 1):
            calls += 1
            genai = {**GENAI_ATTRS, **run}
            tokens.record(100 * calls, {**genai, "gen_ai.token.type": "input"})
            tokens.record(20 * calls, {**genai, "gen_ai.token.type": "output"})
            duration.record(calls / 8, genai)
            expect["input"] += 100 * calls
            expect["output"] += 20 * calls
        reader.force_flush(timeout_millis=a.timeout * 1000 + 5000)
        if tally.failures:
            provider.shutdown()
            fail(tally.failures[0])
        if i + 1 < a.flushes:
            time.sleep(0.02)
    provider.shutdown()
    if tally.failures:
        fail(tally.failures[0])
    if len(tally.batches) != a.flushes:
        fail(f"metrics: {len(tally.batches)} exports for {a.flushes} flushes")
    return {**expect, "calls": calls}


def exported_metrics(batches, delta: bool) -> dict:
    """Series per metric, and totals, from what the SDK handed the exporter."""
    series: dict[str, set] = {}
    counter = 0.0
    queue = 0.0
    tokens = {"input": 0.0, "output": 0.0}
    calls = 0
    last_counter = last_queue = 0.0
    points = 0
    for batch in batches:
        last_counter = last_queue = 0.0
        for rm in batch.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for dp in m.data.data_points:
                        points += 1
                        attrs = dict(dp.attributes or {})
                        series.setdefault(m.name, set()).add(tuple(sorted(attrs.items())))
                        if m.name == "obs.test.requests":
                            last_counter += dp.value
                        elif m.name == "obs.test.queue_depth":
                            last_queue += dp.value
                        elif m.name == "gen_ai.client.token.usage" and delta:
                            tokens[attrs["gen_ai.token.type"]] += dp.sum
                        elif m.name == "gen_ai.client.operation.duration" and delta:
                            calls += dp.count
                        if not delta and batch is batches[-1]:
                            if m.name == "gen_ai.client.token.usage":
                                tokens[attrs["gen_ai.token.type"]] += dp.sum
                            elif m.name == "gen_ai.client.operation.duration":
                                calls += dp.count
        if delta:
            counter += last_counter
            queue += last_queue
    if not delta:
        counter, queue = last_counter, last_queue
    return {
        "series": {name: len(s) for name, s in sorted(series.items())},
        "counter_total": counter,
        "queue": queue,
        "tokens": tokens,
        "calls": calls,
        "points": points,
    }


def send_logs(a, resource, log_cls, log_kwargs, tally: Tally) -> tuple[int, int]:
    exporter = counting(log_cls, tally)(**log_kwargs)
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            exporter, schedule_delay_millis=60_000, export_timeout_millis=a.timeout * 1000 + 5000
        )
    )
    logger = provider.get_logger(SCOPE, "1.0.0")
    start = time.time_ns()

    def ts(k: int) -> int | None:
        # Distinct timestamps, 1 µs apart (the score ids of evaluation
        # events derive from theirs).
        return None if a.unset_log_timestamps else start + k * 1000

    for i in range(a.logs):
        warn = i % 5 == 4
        logger.emit(
            timestamp=ts(i),
            severity_number=SeverityNumber.WARN if warn else SeverityNumber.INFO,
            severity_text="WARN" if warn else "INFO",
            body=f"record {i} of {a.run_id}",
            attributes={"run_id": a.run_id, "index": i},
        )
    events = 0
    if a.trace_id is not None:
        span = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id=int(a.trace_id, 16),
                span_id=int(a.span_id, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        )
        ctx = trace.set_span_in_context(span)
        run = {"run_id": a.run_id}
        records = [
            (
                "gen_ai.client.inference.operation.details",
                {
                    **GENAI_ATTRS,
                    "gen_ai.input.messages": json.dumps(INPUT_MESSAGES, separators=(",", ":")),
                    "gen_ai.output.messages": json.dumps(OUTPUT_MESSAGES, separators=(",", ":")),
                },
            ),
            (
                "gen_ai.evaluation.result",
                {
                    "gen_ai.evaluation.name": "relevance",
                    "gen_ai.evaluation.score.value": 0.9,
                    "gen_ai.evaluation.score.label": "relevant",
                    "gen_ai.evaluation.explanation": "on topic",
                },
            ),
            (
                "gen_ai.evaluation.result",
                {"gen_ai.evaluation.name": "groundedness", "gen_ai.evaluation.score.value": 0.4},
            ),
        ]
        for k, (name, attrs) in enumerate(records):
            logger.emit(
                timestamp=ts(a.logs + k),
                context=ctx,
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                event_name=name,
                attributes={**attrs, **run},
            )
            events += 1
    flushed = provider.force_flush(timeout_millis=int(a.timeout * 1000 + 5000))
    provider.shutdown()
    if tally.failures:
        fail(tally.failures[0])
    if not flushed:
        fail("logs: force_flush timed out")
    return a.logs, events


def main(argv: list[str]) -> None:
    a = parse_args(argv)
    sdk_errors = SdkErrors()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("opentelemetry").addHandler(sdk_errors)

    resource = Resource.create({"service.name": a.service, "run.id": a.run_id})
    metric_cls, metric_kwargs, log_cls, log_kwargs = exporters(a)

    metrics_tally = Tally("metrics", sdk_errors)
    expect = send_metrics(a, resource, metric_cls, metric_kwargs, metrics_tally)
    seen = exported_metrics(metrics_tally.batches, a.delta)

    logs_tally = Tally("logs", sdk_errors)
    plain, events = send_logs(a, resource, log_cls, log_kwargs, logs_tally)
    sent_records = sum(len(b) for b in logs_tally.batches)

    out = {
        "run_id": a.run_id,
        "protocol": a.protocol,
        "temporality": "delta" if a.delta else "cumulative",
        "logs": plain + events,
        "plain_logs": plain,
        "events": events,
        "flushes": a.flushes,
        "series": seen["series"],
        "points": seen["points"],
        "counter_total": expect["counter_total"],
        "queue_depth": expect["queue"],
        "tokens": {"input": expect["input"], "output": expect["output"]},
        "calls": expect["calls"],
        "exports": {"metrics": metrics_tally.ok, "logs": logs_tally.ok},
    }
    # The SDK's own view of what it sent must agree with the arithmetic.
    mismatches = []
    if seen["counter_total"] != expect["counter_total"]:
        mismatches.append(f"counter_total {seen['counter_total']} != {expect['counter_total']}")
    if seen["queue"] != expect["queue"]:
        mismatches.append(f"queue_depth {seen['queue']} != {expect['queue']}")
    if seen["tokens"] != {"input": expect["input"], "output": expect["output"]}:
        mismatches.append(f"tokens {seen['tokens']} != input {expect['input']}, output {expect['output']}")
    if seen["calls"] != expect["calls"]:
        mismatches.append(f"calls {seen['calls']} != {expect['calls']}")
    if sent_records != plain + events:
        mismatches.append(f"log records exported {sent_records} != {plain + events}")
    print(json.dumps(out, sort_keys=False), flush=True)
    if mismatches:
        fail("the SDK exported other values than expected: " + "; ".join(mismatches))


if __name__ == "__main__":
    main(sys.argv[1:])
