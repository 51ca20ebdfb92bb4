//! Dead letters: the event's own bytes and headers, plus headers saying why and where from.
//! [`InvalidReason`] is the one list of reasons an event is refused (header value and the
//! `reason` label of `driftwatch_events_invalid_total`).

/// Dead-letter header names: the reason code, the human message, and where the event came from.
pub mod headers {
    /// Short reason code (`not_json`, `wrong_type`, `oversized`, …).
    pub const REASON: &str = "dlq.reason";
    /// Human-readable error.
    pub const ERROR: &str = "dlq.error";
    /// Source topic.
    pub const TOPIC: &str = "dlq.source.topic";
    /// Source partition (decimal).
    pub const PARTITION: &str = "dlq.source.partition";
    /// Source offset (decimal).
    pub const OFFSET: &str = "dlq.source.offset";
    /// Present when the payload is not the whole event: `truncated` (its first bytes) or
    /// `omitted` (none; the source position above is the reference to it).
    pub const PAYLOAD: &str = "dlq.payload";
    /// The event's size in bytes, when the payload is not the whole event.
    pub const ORIGINAL_BYTES: &str = "dlq.payload.original_bytes";
    /// SHA-256 (hex) of the whole event, when the payload is not the whole event.
    pub const ORIGINAL_SHA256: &str = "dlq.payload.original_sha256";
    /// The Kafka Connect dead-letter headers (`errors.deadletterqueue.context.headers.enable`),
    /// written next to ours so tooling built for Connect's DLQs reads driftwatch's too.
    pub mod connect {
        /// Source topic.
        pub const TOPIC: &str = "__connect.errors.topic";
        /// Source partition (decimal).
        pub const PARTITION: &str = "__connect.errors.partition";
        /// Source offset (decimal).
        pub const OFFSET: &str = "__connect.errors.offset";
        /// Who refused it (Connect: the connector name); ours is `driftwatch`.
        pub const CONNECTOR_NAME: &str = "__connect.errors.connector.name";
        /// The stage that failed; decoding is Connect's `VALUE_CONVERTER`.
        pub const STAGE: &str = "__connect.errors.stage";
        /// The component that failed.
        pub const CLASS_NAME: &str = "__connect.errors.class.name";
        /// The error's kind: `driftwatch.InvalidEvent.<reason>`.
        pub const EXCEPTION_CLASS_NAME: &str = "__connect.errors.exception.class.name";
        /// The error message.
        pub const EXCEPTION_MESSAGE: &str = "__connect.errors.exception.message";
    }
}


/// Why an event was dead-lettered. The string form is the `dlq.reason` header, the `reason`
/// label of `driftwatch_events_invalid_total` and the `reason` of `driftwatch score`'s error lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// Not parseable JSON (or not UTF-8).
    NotJson,
    /// JSON, but not an object.
    NotObject,
    /// A known field has a value of the wrong type.
    WrongType,
    /// A required field (id, key, event time) is absent or null.
    MissingField,
    /// The event-time field is not a timestamp.
    BadTimestamp,
    /// Larger than `engine.max_event_bytes`.
    Oversized,
    /// The event time is beyond the configured bounds and `engine.event_time_out_of_bounds =
    /// "dead_letter"` (by default such events are scored and only kept out of drift windows).
    EventTimeOutOfBounds,
}

impl InvalidReason {
    /// Every reason, in documentation order (metrics start each at 0).
    pub const ALL: [InvalidReason; 7] = [
        InvalidReason::NotJson,
        InvalidReason::NotObject,
        InvalidReason::WrongType,
        InvalidReason::MissingField,
        InvalidReason::BadTimestamp,
        InvalidReason::Oversized,
        InvalidReason::EventTimeOutOfBounds,
    ];

    /// The reason code.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::NotJson => "not_json",
            InvalidReason::NotObject => "not_object",
            InvalidReason::WrongType => "wrong_type",
            InvalidReason::MissingField => "missing_field",
            InvalidReason::BadTimestamp => "bad_timestamp",
            InvalidReason::Oversized => "oversized",
            InvalidReason::EventTimeOutOfBounds => "event_time_out_of_bounds",
        }
    }
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
