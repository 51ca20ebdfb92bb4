//! The per-event JSON decoder: one event's bytes straight into a reusable [`Transaction`] in
//! the pipeline's column order (no intermediate `Value`, no allocation once buffers are warm),
//! with every refusal classified ([`DecodeError::reason`], the dead-letter reason).
//!
//! [`Pipeline::decode_into`] parses with simd-json (its tape, SIMD stage 1 with runtime CPU
//! detection: AVX2, SSE4.2 or portable code, no `target-cpu` needed) and matches keys against
//! the previous event's key order before the field table. [`Pipeline::decode_into_serde`] is the
//! same decoder over serde_json's streaming parser: the reference the tests compare with (same
//! transaction, same error classification on every input) and the bench's "before".
//!
//! Classification, the same for both: bytes that are not one JSON value (also when a field
//! before the break was wrong) are `not_json`; a JSON value that is not an object is
//! `not_object`; then the first wrong field in document order (`wrong_type`,
//! `bad_timestamp`); then `missing_field`.

use std::fmt;

use rustc_hash::FxHashMap;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use thiserror::Error;

use super::{CategoryValue, FieldRoles, Pipeline, Transaction};
use crate::dataset::format_category_number;
use crate::message::InvalidReason;

/// Why an event could not be decoded; `reason()` is the short code used in dead-letter headers and metrics.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum DecodeError {
    /// Not parseable JSON.
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("expected a JSON object")]
    NotObject,
    /// A known field has a value of the wrong type.
    #[error("field `{field}`: expected {expected}")]
    WrongType {
        /// Field name.
        field: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A required field is absent or null.
    #[error("missing required field `{0}`")]
    MissingField(String),
    /// The event-time field is not RFC 3339 or an epoch number, or lies beyond year 9999.
    #[error("field `{field}`: invalid timestamp `{value}`")]
    BadTimestamp {
        /// Field name.
        field: String,
        /// The offending value.
        value: String,
    },
}

impl DecodeError {
    /// Short machine-readable reason code.
    pub fn reason(&self) -> InvalidReason {
        match self {
            DecodeError::NotJson(_) => InvalidReason::NotJson,
            DecodeError::NotObject => InvalidReason::NotObject,
            DecodeError::WrongType { .. } => InvalidReason::WrongType,
            DecodeError::MissingField(_) => InvalidReason::MissingField,
            DecodeError::BadTimestamp { .. } => InvalidReason::BadTimestamp,
        }
    }
}

impl Pipeline {
    /// Decodes one JSON event into `tx`, reusing its buffers.
    ///
    /// Unknown fields are ignored; feature fields may be absent or null (they are imputed);
    /// the id, key and timestamp columns, when the pipeline has them, are required.
    pub fn decode_into(&self, bytes: &[u8], tx: &mut Transaction) -> Result<(), DecodeError> {
        // Where simd-json is more lenient than serde_json, the reference decides (both rare): a
        // `\uD…` escape may be half of a surrogate pair, which simd-json takes alone; a NUL byte,
        // which simd-json's tables count as whitespace after a number (`1\0.5` parses), and
        // which valid JSON never has. (Long numbers: see `walk_tape`.)
        if bytes.contains(&0) || (bytes.contains(&b'\\') && bytes.windows(3).any(|w| w[0] == b'\\' && w[1] == b'u' && w[2] | 0x20 == b'd')) {
            return self.decode_into_serde(bytes, tx);
        }
        self.clear_for_decode(bytes, tx);
        // The parser's buffers leave the transaction while the tape borrows them (a move, no
        // allocation: `JsonSlot` is an Option).
        let mut json = tx.json.0.take().unwrap_or_default();
        let result = self.decode_simd(bytes, tx, &mut json);
        tx.json.0 = Some(json);
        match result? {
            Some(seen) => self.check_required(tx, seen),
            None => self.decode_into_serde(bytes, tx),
        }
    }

    /// [`Pipeline::decode_into`] over serde_json's streaming parser: the reference the SIMD
    /// decoder is tested against, and the bench's baseline. Same results, same errors.
    pub fn decode_into_serde(&self, bytes: &[u8], tx: &mut Transaction) -> Result<(), DecodeError> {
        self.clear_for_decode(bytes, tx);
        let mut scratch = std::mem::take(&mut tx.scratch);
        let mut state = DecodeState { pipeline: self, tx, error: None, seen_id: false, seen_key: false };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let result = EventSeed(&mut state, &mut scratch).deserialize(&mut de).and_then(|()| de.end());
        let (error, seen) = (state.error.take(), [state.seen_id, state.seen_key]);
        tx.scratch = scratch;
        match result {
            // Broken JSON is `not_json` whatever came before the break.
            Err(e) if !e.is_data() => return Err(DecodeError::NotJson(e.to_string())),
            // Not an object: `not_object` if the rest is JSON at all.
            Err(_) => return Err(match serde_json::from_slice::<IgnoredAny>(bytes) {
                Err(e) => DecodeError::NotJson(e.to_string()),
                Ok(_) => DecodeError::NotObject,
            }),
            Ok(()) => {}
        }
        if let Some(e) = error {
            return Err(e);
        }
        self.check_required(tx, seen)
    }

    fn clear_for_decode(&self, bytes: &[u8], tx: &mut Transaction) {
        tx.id.clear();
        tx.key.clear();
        tx.event_time_ms = None;
        tx.content_hash = if self.artifact.columns.id.is_none() { crate::sampling::hash_bytes(bytes) } else { 0 };
        tx.numeric.resize(self.numeric.len(), f64::NAN);
        tx.numeric.fill(f64::NAN);
        tx.categorical.resize_with(self.categorical.len(), CategoryValue::default);
        for c in &mut tx.categorical {
            c.present = false;
        }
    }

    /// The id, key and timestamp columns the pipeline has must have been seen (not null).
    fn check_required(&self, tx: &Transaction, [seen_id, seen_key]: [bool; 2]) -> Result<(), DecodeError> {
        let cols = &self.artifact.columns;
        if let (Some(name), false) = (&cols.id, seen_id) {
            return Err(DecodeError::MissingField(name.clone()));
        }
        if let (Some(name), false) = (&cols.key, seen_key) {
            return Err(DecodeError::MissingField(name.clone()));
        }
        if let (Some(name), None) = (&cols.timestamp, tx.event_time_ms) {
            return Err(DecodeError::MissingField(name.clone()));
        }
        Ok(())
    }

    /// Parses and assigns; returns whether the id and key were seen (None: the reference decides,
    /// when simd-json refuses what serde_json reads, e.g. a number beyond f64 in a field the
    /// pipeline ignores, or when a long number may hide trailing bytes).
    fn decode_simd(&self, bytes: &[u8], tx: &mut Transaction, json: &mut JsonScratch) -> Result<Option<[bool; 2]>, DecodeError> {
        if bytes.len() > json.sized_for {
            // simd-json grows its buffers to exactly the new longest event: grow them here by
            // doubling instead, so a slowly lengthening stream does not allocate again and again.
            json.sized_for = bytes.len().next_power_of_two().max(1024);
            json.buffers = simd_json::Buffers::new(json.sized_for);
        }
        json.input.clear();
        json.input.extend_from_slice(bytes);
        let mut tape = std::mem::replace(&mut json.tape, simd_json::Tape(Vec::new())).reset();
        let result = match simd_json::fill_tape(&mut json.input, &mut json.buffers, &mut tape) {
            // Refused: with serde_json's message (line and column) for the dead letter, as before.
            Err(_) => match serde_json::from_slice::<IgnoredAny>(bytes) {
                Err(e) => Err(DecodeError::NotJson(e.to_string())),
                Ok(_) => Ok(None),
            },
            Ok(()) => self.walk_tape(&tape.0, json.buffers.structural_indexes(), bytes, tx, &mut json.keys),
        };
        json.tape = tape.reset();
        result
    }

    /// Assigns the top-level fields of a parsed event, in document order; stops at the first
    /// wrong one. `Ok(None)`: a long number may hide trailing bytes ([`long_numbers_end_cleanly`]),
    /// the reference decides.
    fn walk_tape(&self, nodes: &[simd_json::Node<'_>], structurals: &[u32], bytes: &[u8], tx: &mut Transaction, keys: &mut Vec<(String, Option<FieldRoles>)>) -> Result<Option<[bool; 2]>, DecodeError> {
        use simd_json::{Node, StaticNode};
        let Some(&Node::Object { len, .. }) = nodes.first() else {
            return if long_numbers_end_cleanly(bytes, structurals) { Err(DecodeError::NotObject) } else { Ok(None) };
        };
        let mut state = DecodeState { pipeline: self, tx, error: None, seen_id: false, seen_key: false };
        let mut at = 1;
        // While the object is flat, pair k's value is structural 4k + 3 (`{`, then key `"`, `:`,
        // value, `,` per pair) and the next one ends its span; after a nested value, every
        // remaining span is checked at once.
        let mut flat = true;
        for k in 0..len {
            let (Some(&Node::String(key)), Some(value)) = (nodes.get(at), nodes.get(at + 1)) else {
                return Err(DecodeError::NotJson("malformed parser tape".into()));
            };
            at += 1;
            let scalar = match *value {
                Node::String(s) => Scalar::Str(s),
                Node::Static(StaticNode::Null) => Scalar::Null,
                Node::Static(StaticNode::Bool(b)) => Scalar::Bool(b),
                Node::Static(StaticNode::I64(v)) => Scalar::Num(v as f64),
                Node::Static(StaticNode::U64(v)) => Scalar::Num(v as f64),
                Node::Static(StaticNode::F64(v)) => Scalar::Num(v),
                Node::Object { .. } | Node::Array { .. } => Scalar::Nested,
            };
            at += match *value {
                Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
                _ => 1,
            };
            if flat {
                if let Scalar::Nested = scalar {
                    flat = false;
                    if !long_numbers_end_cleanly(bytes, structurals.get(4 * k + 3..).unwrap_or_default()) {
                        return Ok(None);
                    }
                } else if let Scalar::Num(_) = scalar {
                    if !long_numbers_end_cleanly(bytes, structurals.get(4 * k + 3..4 * k + 5).unwrap_or_default()) {
                        return Ok(None);
                    }
                }
            }
            // Producers write their keys in one order: the previous event's key at this
            // position usually matches and saves hashing it.
            let roles = match keys.get_mut(k) {
                Some((seen, roles)) if seen == key => *roles,
                slot => {
                    let roles = self.fields.get(key).copied();
                    match slot {
                        Some((seen, cached)) => {
                            seen.clear();
                            seen.push_str(key);
                            *cached = roles;
                        }
                        None => keys.push((key.to_string(), roles)),
                    }
                    roles
                }
            };
            if let Some(roles) = roles {
                if let Err(e) = state.assign(key, roles, scalar) {
                    // Broken JSON further on wins over a wrong field, as in the reference.
                    let rest = if flat { structurals.get(4 * k + 3..).unwrap_or_default() } else { &[] };
                    return if long_numbers_end_cleanly(bytes, rest) { Err(e) } else { Ok(None) };
                }
            }
        }
        Ok(Some([state.seen_id, state.seen_key]))
    }
}

/// simd-json 0.17 does not check what follows a number of 18 or more digits (an integer beyond
/// its fast path, a float with 19 significant digits): `1000000000000.000000#` passes. Such a
/// number spans at least 18 bytes up to the next structural character; for those spans (one
/// subtraction per structural otherwise) check that the number is followed by whitespace only.
fn long_numbers_end_cleanly(bytes: &[u8], structurals: &[u32]) -> bool {
    structurals.windows(2).all(|w| {
        let (start, end) = (w[0] as usize, (w[1] as usize).min(bytes.len()));
        if end.saturating_sub(start) < 18 || !matches!(bytes.get(start), Some(b'-' | b'0'..=b'9')) {
            return true;
        }
        let span = &bytes[start..end];
        let number = json_number_len(span);
        number > 0 && span[number..].iter().all(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    })
}

/// Length of the JSON number (RFC 8259: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) at the
/// start of `b`, 0 if there is none.
fn json_number_len(b: &[u8]) -> usize {
    let digits = |from: usize| b[from.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return 0,
    }
    if b.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return 0;
        }
        i += 1 + n;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let n = digits(i + 1 + sign);
        if n == 0 {
            return 0;
        }
        i += 1 + sign + n;
    }
    i
}

/// Where a [`Transaction`] keeps its [`JsonScratch`] between events.
#[derive(Default)]
pub(crate) struct JsonSlot(Option<JsonScratch>);

impl Clone for JsonSlot {
    /// Buffers are per transaction: a clone starts without.
    fn clone(&self) -> Self {
        JsonSlot(None)
    }
}

impl fmt::Debug for JsonSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsonSlot")
    }
}

/// simd-json's reusable buffers, so decoding does not allocate.
struct JsonScratch {
    /// The event's bytes (simd-json unescapes strings in place).
    input: Vec<u8>,
    buffers: simd_json::Buffers,
    /// The event length `buffers` were made for.
    sized_for: usize,
    tape: simd_json::Tape<'static>,
    /// The previous event's keys in order, each with its roles (None: not a pipeline field).
    keys: Vec<(String, Option<FieldRoles>)>,
}

impl Default for JsonScratch {
    fn default() -> Self {
        JsonScratch { input: Vec::new(), buffers: simd_json::Buffers::new(0), sized_for: 0, tape: simd_json::Tape(Vec::new()), keys: Vec::new() }
    }
}


// ---- streaming JSON decoding -------------------------------------------------------------

struct DecodeState<'p, 't> {
    pipeline: &'p Pipeline,
    tx: &'t mut Transaction,
    /// First semantic error seen; parsing stops at the next opportunity.
    error: Option<DecodeError>,
    seen_id: bool,
    seen_key: bool,
}

/// The event object; string values go through the scratch buffer.
struct EventSeed<'s, 'p, 't>(&'s mut DecodeState<'p, 't>, &'s mut String);

impl<'de> DeserializeSeed<'de> for EventSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (state, scratch) = (self.0, self.1);
        while let Some(roles) = map.next_key_seed(KeySeed(&state.pipeline.fields))? {
            let Some((name, roles)) = roles else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let scalar = map.next_value_seed(ScalarSeed(scratch))?;
            if state.error.is_none() {
                if let Err(e) = state.assign(name, roles, scalar) {
                    state.error = Some(e);
                }
            }
        }
        Ok(())
    }
}

struct KeySeed<'f>(&'f FxHashMap<String, FieldRoles>);

impl<'de, 'f> DeserializeSeed<'de> for KeySeed<'f> {
    type Value = Option<(&'f str, FieldRoles)>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'f> Visitor<'de> for KeySeed<'f> {
    type Value = Option<(&'f str, FieldRoles)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.get_key_value(v).map(|(k, r)| (k.as_str(), *r)))
    }
}

/// A field's JSON value, as far as decoding needs it.
enum Scalar<'a> {
    Null,
    Num(f64),
    Bool(bool),
    Str(&'a str),
    Nested,
}

/// One value; a string is copied to the scratch buffer (it may have been unescaped there).
struct ScalarSeed<'s>(&'s mut String);

impl<'de, 's> DeserializeSeed<'de> for ScalarSeed<'s> {
    type Value = Scalar<'s>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scalar<'s>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 's> Visitor<'de> for ScalarSeed<'s> {
    type Value = Scalar<'s>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'s>, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar<'s>, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'s>, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'s>, E> {
        Ok(Scalar::Num(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'s>, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'s>, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'s>, E> {
        self.0.clear();
        self.0.push_str(v);
        Ok(Scalar::Str(self.0.as_str()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'s>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nested)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'s>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nested)
    }
}

impl DecodeState<'_, '_> {
    fn assign(&mut self, name: &str, roles: FieldRoles, value: Scalar<'_>) -> Result<(), DecodeError> {
        let wrong = |expected| DecodeError::WrongType { field: name.to_string(), expected };
        if let Scalar::Nested = value {
            return Err(wrong(if roles.numeric.is_some() { "a number" } else { "a string or number" }));
        }
        let tx = &mut *self.tx;
        let null = matches!(value, Scalar::Null);
        // Text form of the value for id/key/category roles, written into `dst`.
        let write_text = |dst: &mut String, value: &Scalar<'_>| {
            dst.clear();
            match value {
                Scalar::Str(s) => dst.push_str(s),
                Scalar::Num(v) => dst.push_str(&format_category_number(*v)),
                Scalar::Bool(b) => dst.push_str(if *b { "true" } else { "false" }),
                Scalar::Null | Scalar::Nested => {}
            }
        };
        if roles.id && !null {
            write_text(&mut tx.id, &value);
            self.seen_id = true;
        }
        if roles.key && !null {
            write_text(&mut tx.key, &value);
            self.seen_key = true;
        }
        if roles.timestamp && !null {
            let unit = self.pipeline.artifact.columns.timestamp_unit;
            let bad = |value: String| DecodeError::BadTimestamp { field: name.to_string(), value };
            tx.event_time_ms = Some(match value {
                Scalar::Num(v) => crate::time::epoch_to_ms(v, unit).ok_or_else(|| bad(v.to_string()))?,
                Scalar::Str(s) => crate::time::parse_event_time(s, unit).ok_or_else(|| bad(s.to_string()))?,
                _ => return Err(wrong("an RFC 3339 string or an epoch number")),
            });
        }
        if let Some(i) = roles.numeric {
            tx.numeric[usize::from(i)] = match value {
                Scalar::Null => f64::NAN,
                Scalar::Num(v) => v,
                Scalar::Bool(b) => f64::from(u8::from(b)),
                _ => return Err(wrong("a number")),
            };
        }
        if let Some(i) = roles.categorical {
            let slot = &mut tx.categorical[usize::from(i)];
            slot.present = !null;
            write_text(&mut slot.text, &value);
        }
        Ok(())
    }
}
