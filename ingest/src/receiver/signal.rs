//! What differs between the three OTLP signals, in one trait, so that each
//! transport is written once for all of them.

use super::{Export, Outcome};
use observatory_schemas::kafka::Signal;
use observatory_schemas::otlp::logs_service::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use observatory_schemas::otlp::metrics_service::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use observatory_schemas::otlp::trace_service::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// What differs between the three OTLP services.
pub trait OtlpSignal: Send + Sync + 'static {
    /// The gRPC service name.
    const NAME: &'static str;
    /// The signal.
    const SIGNAL: Signal;
    /// The export request.
    type Request: prost::Message + Default + Send + 'static;
    /// The export response.
    type Response: prost::Message + serde::Serialize + Send + 'static;
    /// Wraps a request.
    fn wrap(request: Self::Request) -> Export;
    /// The response for an outcome.
    fn respond(outcome: Outcome) -> Self::Response;
}

/// The trace service.
pub struct Traces;
/// The metrics service.
pub struct Metrics;
/// The logs service.
pub struct Logs;

impl OtlpSignal for Traces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const SIGNAL: Signal = Signal::Traces;
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    fn wrap(request: Self::Request) -> Export {
        Export::Traces(request)
    }
    fn respond(outcome: Outcome) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (outcome.rejected_items > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: outcome.rejected_items as i64,
                error_message: outcome.message,
            }),
        }
    }
}

impl OtlpSignal for Metrics {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const SIGNAL: Signal = Signal::Metrics;
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    fn wrap(request: Self::Request) -> Export {
        Export::Metrics(request)
    }
    fn respond(outcome: Outcome) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (outcome.rejected_items > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: outcome.rejected_items as i64,
                error_message: outcome.message,
            }),
        }
    }
}

impl OtlpSignal for Logs {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const SIGNAL: Signal = Signal::Logs;
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    fn wrap(request: Self::Request) -> Export {
        Export::Logs(request)
    }
    fn respond(outcome: Outcome) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (outcome.rejected_items > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: outcome.rejected_items as i64,
                error_message: outcome.message,
            }),
        }
    }
}
