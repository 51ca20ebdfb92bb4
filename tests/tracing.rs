//! Traces on the real broker: events arriving with a W3C `traceparent` are continued through
//! consume → decode → score → publish, the alert carries the context on, and the spans reach an
//! OTLP/HTTP endpoint (a minimal receiver here that decodes the protobuf).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use driftwatch::generate::{Generator, GeneratorConfig};
use driftwatch::pipeline::Pipeline;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

type Spans = Arc<Mutex<Vec<Span>>>;

/// Starts an OTLP/HTTP trace receiver on 127.0.0.1; returns its base URL and the spans it got.
fn receiver() -> (String, Spans, tokio::runtime::Runtime) {
    let spans: Spans = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut s = store.lock().unwrap();
                for rs in request.resource_spans {
                    for ss in rs.scope_spans {
                        s.extend(ss.spans);
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans, rt)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    })
}

#[test]
fn incoming_trace_context_is_continued_through_the_engine_and_onto_alerts() {
    let (url, spans, _rt) = receiver();
    let t = Topics::new(3);
    let pipeline = Pipeline::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json")).unwrap();
    let events: Vec<Vec<u8>> = Generator::new(GeneratorConfig { seed: 1, rows: 60_000, ..Default::default() })
        .skip(50_000)
        .take(600)
        .map(|e| serde_json::to_vec(&e).unwrap())
        .collect();
    // Trace four events that raise an alert and four that do not.
    let mut tx = pipeline.new_transaction();
    let (mut alerting, mut quiet) = (vec![], vec![]);
    for (i, e) in events.iter().enumerate() {
        pipeline.decode_into(e, &mut tx).unwrap();
        let s = pipeline.score(&tx);
        if (s.is_fraud || s.is_outlier) && alerting.len() < 4 {
            alerting.push(i);
        } else if !(s.is_fraud || s.is_outlier) && quiet.len() < 4 {
            quiet.push(i);
        }
    }
    assert_eq!((alerting.len(), quiet.len()), (4, 4));
    let mut traced: HashMap<usize, (String, String)> = HashMap::new();
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    for (i, e) in events.iter().enumerate() {
        let mut record = BaseRecord::to(&t.transactions).payload(e).key("k");
        if alerting.contains(&i) || quiet.contains(&i) {
            let (trace_id, parent) = (format!("{:032x}", 0xabc0_0000 + i), format!("{:016x}", 0x1000 + i));
            let header = format!("00-{trace_id}-{parent}-01");
            record = record.headers(OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(&header) }));
            traced.insert(i, (trace_id, parent));
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let engine = start_engine(&t, &format!("[telemetry]\notlp_endpoint = \"{url}\"\n[drift]\nenabled = false"));
    engine.wait_for("all events consumed", Duration::from_secs(60), |m| metric(m, "driftwatch_events_consumed_total{}") >= events.len() as f64);
    let alerts = consume_all(&t.alerts, 4, Duration::from_secs(30));
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while spans.lock().unwrap().iter().filter(|s| s.name.ends_with(" process")).count() < 8 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let spans = spans.lock().unwrap().clone();
    let process: Vec<&Span> = spans.iter().filter(|s| s.name == format!("{} process", t.transactions)).collect();
    assert_eq!(process.len(), 8, "exactly the traced events have spans; got {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());

    for (i, (trace_id, parent)) in &traced {
        let p = process.iter().find(|s| hex(&s.trace_id) == *trace_id).unwrap_or_else(|| panic!("no process span for event {i}"));
        assert_eq!(hex(&p.parent_span_id), *parent, "the incoming span is the parent");
        assert_eq!(p.kind, 5, "CONSUMER");
        assert_eq!(attr(p, "messaging.system").as_deref(), Some("kafka"));
        assert_eq!(attr(p, "messaging.destination.name").as_deref(), Some(t.transactions.as_str()));
        assert_eq!(attr(p, "messaging.consumer.group.name").as_deref(), Some(t.group.as_str()));
        assert!(attr(p, "messaging.kafka.offset").is_some() && attr(p, "messaging.destination.partition.id").is_some());
        for child in ["decode", "score"] {
            let c = spans.iter().find(|s| s.name == child && s.trace_id == p.trace_id).unwrap_or_else(|| panic!("no {child} span for event {i}"));
            assert_eq!(c.parent_span_id, p.span_id, "{child} is a child of process");
        }
        let publish = spans.iter().find(|s| s.name == format!("{} publish", t.alerts) && s.trace_id == p.trace_id);
        if alerting.contains(i) {
            let publish = publish.unwrap_or_else(|| panic!("no publish span for alerting event {i}"));
            assert_eq!((publish.kind, &publish.parent_span_id), (4, &p.span_id), "PRODUCER child of process");
            let alert = alerts
                .iter()
                .find(|a| a.headers.get("traceparent").is_some_and(|h| h.contains(trace_id.as_str())))
                .unwrap_or_else(|| panic!("the alert of event {i} does not carry its trace"));
            assert_eq!(alert.headers["traceparent"], format!("00-{trace_id}-{}-01", hex(&publish.span_id)), "downstream joins at the publish span");
        } else {
            assert!(publish.is_none(), "no publish span without an alert");
        }
    }
    println!("{} spans received for 8 traced events out of {}", spans.len(), events.len());
}
