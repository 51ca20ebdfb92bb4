//! Operations: what the engine tells the people running it. Prometheus metrics (one table of
//! names and help texts), internal events (a log line and its counter in one call), process
//! metrics, the HTTP endpoint (/metrics /healthz /readyz), logging, OpenTelemetry traces.
//! Shell-side: nothing in the functional core imports from here except the metrics handle and
//! the tracer the engine core is given.

pub mod events;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod process;
pub mod traces;
