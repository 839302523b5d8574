//! The OTLP protobuf types that travel on our Kafka topics.
//!
//! They come from `opentelemetry-proto`, generated from the OpenTelemetry
//! protocol's `.proto` files; re-exporting them here keeps every component on
//! the same version of the wire types.

pub use opentelemetry_proto::tonic::collector::logs::v1 as logs_service;
pub use opentelemetry_proto::tonic::collector::metrics::v1 as metrics_service;
pub use opentelemetry_proto::tonic::collector::trace::v1 as trace_service;
pub use opentelemetry_proto::tonic::common::v1 as common;
pub use opentelemetry_proto::tonic::logs::v1 as logs;
pub use opentelemetry_proto::tonic::metrics::v1 as metrics;
pub use opentelemetry_proto::tonic::resource::v1 as resource;
pub use opentelemetry_proto::tonic::trace::v1 as trace;
