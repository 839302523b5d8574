//! The OTLP receivers and the pipeline they share.
//!
//! Both transports ([`grpc`] and [`http`]) check the caller's credentials
//! before they read a body, reserve the estimate of the body's decoded size
//! in the in-flight [`Budget`] before they decode it
//! ([`Pipeline::reserve`]), then hand the decoded export request to
//! [`Pipeline::export`], which is the same for both: resize the reservation
//! to what the request holds once split into messages ([`crate::split`]),
//! produce them and wait for Kafka's acknowledgement ([`crate::producer`]).
//! Only then is the client told "success"; every other path answers an error
//! that says whether to retry.

pub mod decode;
pub mod gate;
pub mod grpc;
pub mod http;
pub mod signal;

use crate::budget::{Budget, Reservation};
use crate::error::IngestError;
use crate::metrics::{request_labels, Metrics, RefusedLabels, SignalLabel, Transport};
use crate::producer::{Origin, Producer};
use crate::split::{self, Split};
use observatory_schemas::kafka::Signal;
use observatory_schemas::otlp::logs_service::ExportLogsServiceRequest;
use observatory_schemas::otlp::metrics_service::ExportMetricsServiceRequest;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::tenant::{self, DEFAULT_TENANT, TENANT_HEADER};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A decoded export request of any signal.
#[derive(Debug)]
pub enum Export {
    /// Traces.
    Traces(ExportTraceServiceRequest),
    /// Metrics.
    Metrics(ExportMetricsServiceRequest),
    /// Logs.
    Logs(ExportLogsServiceRequest),
}

impl Export {
    /// The signal.
    pub fn signal(&self) -> Signal {
        match self {
            Export::Traces(_) => Signal::Traces,
            Export::Metrics(_) => Signal::Metrics,
            Export::Logs(_) => Signal::Logs,
        }
    }

    /// Spans, metric data points or log records in the request.
    pub fn items(&self) -> u64 {
        match self {
            Export::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len() as u64)
                .sum(),
            Export::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(|m| split::data_points(m) as u64)
                .sum(),
            Export::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len() as u64)
                .sum(),
        }
    }
}

/// What an accepted request reports back: items left out, and why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Items refused for good (OTLP `partial_success.rejected_*`).
    pub rejected_items: u64,
    /// Why; empty when nothing was refused.
    pub message: String,
}

/// Credentials a request carries.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// `X-Scope-OrgID`.
    pub tenant: Option<&'a str>,
    /// The API key, from `Authorization: Bearer` or `X-API-Key`.
    pub api_key: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// Reads the tenant and the API key from request headers (or gRPC
    /// metadata), given a lookup by lowercase header name.
    pub fn from_headers(header: impl Fn(&str) -> Option<&'a str>) -> Self {
        let api_key = header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| header("x-api-key"));
        Credentials {
            tenant: header(TENANT_HEADER),
            api_key,
        }
    }
}

/// The transport-independent half of the receivers.
pub struct Pipeline {
    producer: Producer,
    budget: Budget,
    metrics: Arc<Metrics>,
    api_keys: HashMap<String, String>,
    quotas: crate::quota::Quotas,
}

impl Pipeline {
    /// A pipeline producing through `producer` within `budget`.
    pub fn new(
        producer: Producer,
        budget: Budget,
        metrics: Arc<Metrics>,
        api_keys: HashMap<String, String>,
    ) -> Self {
        Pipeline {
            producer,
            budget,
            metrics,
            api_keys,
            quotas: crate::quota::Quotas::new(crate::quota::QuotaConfig::default()),
        }
    }

    /// Applies per-tenant ingest quotas.
    pub fn with_quotas(mut self, quotas: crate::quota::Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The tenant of a request: from its API key when keys are configured
    /// (then a key is required), else from `X-Scope-OrgID`, else `default`.
    pub fn tenant(&self, credentials: Credentials<'_>) -> Result<String, IngestError> {
        if !self.api_keys.is_empty() {
            return credentials
                .api_key
                .and_then(|key| self.api_keys.get(key))
                .cloned()
                .ok_or(IngestError::Unauthenticated);
        }
        match credentials.tenant.map(str::trim) {
            None | Some("") => Ok(DEFAULT_TENANT.to_owned()),
            Some(name) => {
                tenant::validate(name)?;
                Ok(name.to_owned())
            }
        }
    }

    /// Reserves the memory `body` (protobuf or OTLP/JSON of `signal`) will
    /// take decoded, before it is decoded: refused at once when the budget
    /// is spent (retryable), or for good when the estimate alone passes it.
    pub fn reserve(
        &self,
        signal: Signal,
        json: bool,
        body: &[u8],
    ) -> Result<Reservation, IngestError> {
        use observatory_schemas::decoded_size::{estimate, estimate_json, Request};
        let estimate = if json {
            estimate_json(body)
        } else {
            let request = match signal {
                Signal::Traces => Request::Traces,
                Signal::Metrics => Request::Metrics,
                Signal::Logs => Request::Logs,
            };
            estimate(request, body)
        };
        if estimate > self.budget.limit() {
            return Err(IngestError::TooLargeDecoded {
                estimate,
                limit: self.budget.limit(),
            });
        }
        self.budget.try_reserve(estimate)
    }

    /// The tenant of a request, as [`Pipeline::tenant`], writing an audit
    /// event when the credentials are refused.
    pub fn authenticate(
        &self,
        credentials: Credentials<'_>,
        signal: Signal,
        transport: Transport,
        client: Option<std::net::SocketAddr>,
    ) -> Result<String, IngestError> {
        self.tenant(credentials).inspect_err(|error| {
            self.refuse(signal, transport, error);
            if matches!(error, IngestError::Unauthenticated) {
                crate::audit::refused(
                    transport.as_str(),
                    signal.as_str(),
                    client,
                    credentials.tenant,
                    error.reason(),
                );
            }
        })
    }

    /// Adds `more` bytes to `reservation` (a JSON body parsed a second
    /// time as a tree): refused like [`Pipeline::reserve`].
    pub fn grow(&self, reservation: &mut Reservation, more: usize) -> Result<(), IngestError> {
        let total = reservation.bytes().saturating_add(more);
        if total > self.budget.limit() {
            return Err(IngestError::TooLargeDecoded {
                estimate: total,
                limit: self.budget.limit(),
            });
        }
        reservation.resize(&self.budget, total)
    }

    /// Counts a request refused before it could be decoded.
    pub fn refuse(&self, signal: Signal, transport: Transport, error: &IngestError) {
        self.metrics
            .requests
            .get_or_create(&request_labels(signal, transport))
            .inc();
        self.count_refused_request(signal, transport, error);
    }

    fn count_refused_request(&self, signal: Signal, transport: Transport, error: &IngestError) {
        self.metrics
            .refused_requests
            .get_or_create(&RefusedLabels {
                signal: SignalLabel(signal),
                transport,
                reason: error.reason(),
            })
            .inc();
    }

    /// Publishes a decoded request, answering only once Kafka has it.
    /// `encoded_len` is the request's size on the wire, decompressed;
    /// `reservation` what [`Pipeline::reserve`] held for it.
    pub async fn export(
        &self,
        transport: Transport,
        tenant: String,
        export: Export,
        encoded_len: usize,
        reservation: Reservation,
    ) -> Result<Outcome, IngestError> {
        let started = Instant::now();
        let signal = export.signal();
        let labels = request_labels(signal, transport);
        self.metrics.requests.get_or_create(&labels).inc();
        let items = export.items();
        self.metrics
            .received_items
            .get_or_create(&labels)
            .inc_by(items);

        let result = match self.quotas.take(&tenant, items, Instant::now()) {
            Ok(()) => self.publish(tenant, export, encoded_len, reservation).await,
            Err(retry_after_secs) => Err(IngestError::OverQuota { retry_after_secs }),
        };
        let refused = |reason: &'static str, n: u64| {
            self.metrics
                .refused_items
                .get_or_create(&RefusedLabels {
                    signal: SignalLabel(signal),
                    transport,
                    reason,
                })
                .inc_by(n);
        };
        match &result {
            Ok((outcome, accepted)) => {
                self.metrics
                    .accepted_items
                    .get_or_create(&labels)
                    .inc_by(*accepted);
                if outcome.rejected_items > 0 {
                    refused("too_large_item", outcome.rejected_items);
                }
            }
            Err(error) => {
                refused(error.reason(), items);
                self.count_refused_request(signal, transport, error);
            }
        }
        self.metrics
            .request_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        result.map(|(outcome, _)| outcome)
    }

    async fn publish(
        &self,
        tenant: String,
        export: Export,
        encoded_len: usize,
        mut reservation: Reservation,
    ) -> Result<(Outcome, u64), IngestError> {
        let received_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let signal = export.signal();
        let budget = self.producer.value_budget();
        let split: Split = match export {
            Export::Traces(r) => split::split_traces(r, budget, encoded_len)?,
            Export::Metrics(r) => split::split_metrics(r, budget, encoded_len),
            Export::Logs(r) => split::split_logs(r, budget, encoded_len),
        };
        // The decoded request is gone; what waits for Kafka are the
        // messages. Splitting copies each resource and scope into every
        // message of it, so they can be larger than the request: hold the
        // larger.
        let produced: usize = split.messages.iter().map(|m| m.payload.len()).sum();
        let needed = produced.max(encoded_len);
        if needed > self.budget.limit() {
            return Err(IngestError::TooLarge {
                limit: self.budget.limit(),
                after: " once split into one message per trace (COLLECTOR_MAX_INFLIGHT_BYTES)",
            });
        }
        reservation.resize(&self.budget, needed)?;
        let accepted = split.accepted_items();
        let outcome = Outcome {
            rejected_items: split.rejected_items,
            message: split.rejection.unwrap_or_default(),
        };
        if !split.messages.is_empty() {
            let origin = Origin {
                tenant,
                received_at_ms,
            };
            self.producer
                .send_all(signal, &origin, split.messages, reservation)
                .await?;
        }
        Ok((outcome, accepted))
    }
}
