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

/// Tracing settings (`[telemetry]`). Each unset field falls back to the standard OpenTelemetry
/// environment variable (config wins when set): `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and
/// `OTEL_TRACES_SAMPLER_ARG`; `OTEL_SDK_DISABLED=true` turns tracing off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP base URL, e.g. `http://jaeger:4318`; empty: from the environment, else off.
    pub otlp_endpoint: String,
    /// Fraction of events without a sampled `traceparent` that start a trace (0 = only continue).
    pub sample_ratio: Option<f64>,
    /// `service.name` of the spans [default: `OTEL_SERVICE_NAME`, else `driftwatch`].
    pub service_name: Option<String>,
}

/// The tracing settings in force once the environment is consulted.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// Full OTLP/HTTP traces URL (ends in `/v1/traces` unless given whole by
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub traces_url: String,
    /// `service.name`.
    pub service_name: String,
    /// Ratio of untraced events that start a trace.
    pub sample_ratio: f64,
}

impl TelemetryConfig {
    /// The settings in force, reading the environment through `env`; `None`: tracing is off.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<TracingSettings> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return None;
        }
        let base = |u: &str| format!("{}/v1/traces", u.trim_end_matches('/'));
        let traces_url = if !self.otlp_endpoint.is_empty() {
            base(&self.otlp_endpoint)
        } else if let Some(full) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            full
        } else {
            base(&env("OTEL_EXPORTER_OTLP_ENDPOINT")?)
        };
        let service_name = self.service_name.clone().or_else(|| env("OTEL_SERVICE_NAME")).unwrap_or_else(|| "driftwatch".into());
        let sample_ratio = self.sample_ratio.unwrap_or_else(|| {
            let arg = env("OTEL_TRACES_SAMPLER_ARG").and_then(|a| a.trim().parse::<f64>().ok()).filter(|r| (0.0..=1.0).contains(r));
            match env("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
                Some("always_on" | "parentbased_always_on") => 1.0,
                Some("always_off" | "parentbased_always_off") => 0.0,
                _ => arg.unwrap_or(0.0),
            }
        });
        Some(TracingSettings { traces_url, service_name, sample_ratio })
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
    /// A tracer exporting to the configured (or `OTEL_*`) endpoint; `None` when tracing is off.
    pub fn new(config: &TelemetryConfig, group: &str) -> Result<Option<Telemetry>, TelemetryError> {
        let Some(settings) = config.resolve(&|k| std::env::var(k).ok()) else { return Ok(None) };
        let endpoint = settings.traces_url.clone();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TelemetryError { endpoint: endpoint.clone(), reason: e.to_string() })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(settings.service_name.clone()).build())
            .build();
        let tracer = provider.tracer("driftwatch");
        tracing::info!(message = "Exporting traces over OTLP/HTTP.", %endpoint, service = %settings.service_name, sample_ratio = settings.sample_ratio);
        Ok(Some(Telemetry { provider, tracer, propagator: TraceContextPropagator::new(), ratio: settings.sample_ratio, group: group.to_string() }))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_standard_environment_variables_are_honoured_and_config_wins() {
        let none = TelemetryConfig::default();
        assert_eq!(none.resolve(&env(&[])), None, "nothing set: off");
        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"), ("OTEL_SERVICE_NAME", "fraud-engine"), ("OTEL_TRACES_SAMPLER_ARG", "0.25")];
        assert_eq!(
            none.resolve(&env(&vars)),
            Some(TracingSettings { traces_url: "http://collector:4318/v1/traces".into(), service_name: "fraud-engine".into(), sample_ratio: 0.25 })
        );
        let set = TelemetryConfig { otlp_endpoint: "http://jaeger:4318".into(), sample_ratio: Some(0.0), service_name: Some("mine".into()) };
        assert_eq!(
            set.resolve(&env(&vars)),
            Some(TracingSettings { traces_url: "http://jaeger:4318/v1/traces".into(), service_name: "mine".into(), sample_ratio: 0.0 }),
            "config wins when set"
        );
        let whole = [("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://otel.example/traces"), ("OTEL_TRACES_SAMPLER", "always_on")];
        let r = none.resolve(&env(&whole)).unwrap();
        assert_eq!((r.traces_url.as_str(), r.sample_ratio, r.service_name.as_str()), ("https://otel.example/traces", 1.0, "driftwatch"));
        assert_eq!(set.resolve(&env(&[("OTEL_SDK_DISABLED", "true")])), None);
    }
}
