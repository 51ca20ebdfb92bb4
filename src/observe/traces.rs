//! OpenTelemetry traces for the event path, exported over OTLP/HTTP (protobuf) when configured.
//!
//! Only some events are traced, so the hot path pays nothing for the rest: an event is traced
//! when it arrives with a sampled W3C `traceparent` header (the trace is continued), or when
//! `telemetry.sample_ratio` picks it. A traced event gets a `transactions process` span (kind
//! consumer, Kafka messaging attributes per the OpenTelemetry semantic conventions) with `decode`
//! and `score` children, and, when it raises an alert, a `fraud-alerts publish` span (kind
//! producer) whose context goes on in the alert's `traceparent` header, so downstream consumers
//! join the trace. Each closed drift window gets a `drift window evaluate` span.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::engine::core::{HeaderList, Incoming};
use serde::{Deserialize, Serialize};

/// Tracing settings (`[telemetry]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP endpoint, e.g. `http://jaeger:4318`; empty disables tracing.
    pub otlp_endpoint: String,
    /// Fraction of events without a sampled `traceparent` that start a trace (0 = only continue).
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { otlp_endpoint: String::new(), sample_ratio: 0.0, service_name: "driftwatch".into() }
    }
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP exporter for {endpoint}: {reason}")]
pub struct TelemetryError {
    endpoint: String,
    reason: String,
}

/// The engine's tracer.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    ratio: f64,
    group: String,
}

/// An incoming message's headers, read by the W3C trace-context propagator.
struct IncomingHeaders<'a>(&'a dyn HeaderList);

impl Extractor for IncomingHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (0..self.0.count()).map(|i| self.0.header(i)).find(|(k, _)| k.eq_ignore_ascii_case(key)).and_then(|(_, v)| std::str::from_utf8(v?).ok())
    }
    fn keys(&self) -> Vec<&str> {
        (0..self.0.count()).map(|i| self.0.header(i).0).collect()
    }
}

/// Headers to add to an outgoing message (trace context).
#[derive(Default)]
pub struct OutgoingHeaders(pub HashMap<String, String>);

impl Injector for OutgoingHeaders {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

impl Telemetry {
    /// A tracer exporting to `config.otlp_endpoint`; `None` when tracing is off.
    pub fn new(config: &TelemetryConfig, group: &str) -> Result<Option<Telemetry>, TelemetryError> {
        if config.otlp_endpoint.is_empty() {
            return Ok(None);
        }
        let endpoint = format!("{}/v1/traces", config.otlp_endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TelemetryError { endpoint, reason: e.to_string() })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(config.service_name.clone()).build())
            .build();
        let tracer = provider.tracer("driftwatch");
        Ok(Some(Telemetry { provider, tracer, propagator: TraceContextPropagator::new(), ratio: config.sample_ratio, group: group.to_string() }))
    }

    /// Starts the consumer span of an event if it is traced; the returned context holds it.
    pub fn start_event(&self, message: &Incoming<'_>) -> Option<Context> {
        let parent = match message.headers.headers() {
            Some(headers) => self.propagator.extract(&IncomingHeaders(headers)),
            None => Context::new(),
        };
        let continued = parent.span().span_context().is_sampled();
        if !continued && !(self.ratio > 0.0 && crate::sampling::position_sampled(message.partition, message.offset, self.ratio)) {
            return None;
        }
        let mut attributes = vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.destination.name", message.topic.to_string()),
            KeyValue::new("messaging.destination.partition.id", message.partition.to_string()),
            KeyValue::new("messaging.kafka.offset", message.offset),
            KeyValue::new("messaging.consumer.group.name", self.group.clone()),
            KeyValue::new("messaging.message.body.size", message.payload.map_or(0, <[u8]>::len) as i64),
        ];
        if let Some(key) = message.key.and_then(|k| std::str::from_utf8(k).ok()) {
            attributes.push(KeyValue::new("messaging.kafka.message.key", key.to_string()));
        }
        let span = self
            .tracer
            .span_builder(format!("{} process", message.topic))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        Some(parent.with_span(span))
    }

    /// Starts an internal child span (`decode`, `score`) of an event's context.
    pub fn child(&self, cx: &Context, name: &'static str) -> opentelemetry_sdk::trace::Span {
        self.tracer.start_with_context(name, cx)
    }

    /// Starts the producer span of an outgoing message and returns the headers that carry it on.
    pub fn publish(&self, cx: &Context, topic: &str, key: &str) -> (opentelemetry_sdk::trace::Span, OutgoingHeaders) {
        let span = self
            .tracer
            .span_builder(format!("{topic} publish"))
            .with_kind(SpanKind::Producer)
            .with_attributes([
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.operation.type", "send"),
                KeyValue::new("messaging.operation.name", "publish"),
                KeyValue::new("messaging.destination.name", topic.to_string()),
                KeyValue::new("messaging.kafka.message.key", key.to_string()),
            ])
            .start_with_context(&self.tracer, cx);
        let mut headers = OutgoingHeaders::default();
        let span_cx = span.span_context().clone();
        self.propagator.inject_context(&cx.with_remote_span_context(span_cx), &mut headers);
        (span, headers)
    }

    /// A span for evaluating one drift window.
    pub fn window_span(&self, window_end: &str, features: usize, status: &str) {
        let mut span = self.tracer.start("drift window evaluate");
        span.set_attribute(KeyValue::new("driftwatch.window.end", window_end.to_string()));
        span.set_attribute(KeyValue::new("driftwatch.window.features", features as i64));
        span.set_attribute(KeyValue::new("driftwatch.window.status", status.to_string()));
        span.end();
    }

    /// Exports what is buffered and stops.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(message = "Failed to flush traces.", %error);
        }
    }
}
