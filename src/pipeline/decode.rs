//! The streaming JSON decoder: one event's bytes straight into a reusable [`Transaction`] in
//! the pipeline's column order (no intermediate `Value`, no allocation once buffers are warm),
//! with every refusal classified ([`DecodeError::reason`], the dead-letter reason).

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
        let mut state = DecodeState { pipeline: self, tx, error: None, seen_id: false, seen_key: false };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let result = EventSeed(&mut state).deserialize(&mut de).and_then(|()| de.end());
        if let Some(e) = state.error.take() {
            return Err(e);
        }
        if let Err(e) = result {
            return Err(if e.is_data() { DecodeError::NotObject } else { DecodeError::NotJson(e.to_string()) });
        }
        let cols = &self.artifact.columns;
        if let (Some(name), false) = (&cols.id, state.seen_id) {
            return Err(DecodeError::MissingField(name.clone()));
        }
        if let (Some(name), false) = (&cols.key, state.seen_key) {
            return Err(DecodeError::MissingField(name.clone()));
        }
        if let (Some(name), None) = (&cols.timestamp, state.tx.event_time_ms) {
            return Err(DecodeError::MissingField(name.clone()));
        }
        Ok(())
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

struct EventSeed<'s, 'p, 't>(&'s mut DecodeState<'p, 't>);

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
        let state = self.0;
        while let Some(roles) = map.next_key_seed(KeySeed(&state.pipeline.fields))? {
            let Some((name, roles)) = roles else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let scalar = map.next_value_seed(ScalarSeed(&mut state.tx.scratch))?;
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

/// A JSON scalar; strings are left in the transaction's scratch buffer.
enum Scalar {
    Null,
    Num(f64),
    Bool(bool),
    Str,
    Nested,
}

struct ScalarSeed<'s>(&'s mut String);

impl<'de> DeserializeSeed<'de> for ScalarSeed<'_> {
    type Value = Scalar;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed<'_> {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Num(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        self.0.clear();
        self.0.push_str(v);
        Ok(Scalar::Str)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nested)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nested)
    }
}

impl DecodeState<'_, '_> {
    fn assign(&mut self, name: &str, roles: FieldRoles, value: Scalar) -> Result<(), DecodeError> {
        let wrong = |expected| DecodeError::WrongType { field: name.to_string(), expected };
        if let Scalar::Nested = value {
            return Err(wrong(if roles.numeric.is_some() { "a number" } else { "a string or number" }));
        }
        let tx = &mut *self.tx;
        let null = matches!(value, Scalar::Null);
        // Text form of the value for id/key/category roles, written into `dst`.
        let write_text = |dst: &mut String, scratch: &str, value: &Scalar| {
            dst.clear();
            match value {
                Scalar::Str => dst.push_str(scratch),
                Scalar::Num(v) => dst.push_str(&format_category_number(*v)),
                Scalar::Bool(b) => dst.push_str(if *b { "true" } else { "false" }),
                Scalar::Null | Scalar::Nested => {}
            }
        };
        if roles.id && !null {
            write_text(&mut tx.id, &tx.scratch, &value);
            self.seen_id = true;
        }
        if roles.key && !null {
            write_text(&mut tx.key, &tx.scratch, &value);
            self.seen_key = true;
        }
        if roles.timestamp && !null {
            let unit = self.pipeline.artifact.columns.timestamp_unit;
            let bad = |value: String| DecodeError::BadTimestamp { field: name.to_string(), value };
            tx.event_time_ms = Some(match value {
                Scalar::Num(v) => crate::time::epoch_to_ms(v, unit).ok_or_else(|| bad(v.to_string()))?,
                Scalar::Str => crate::time::parse_event_time(&tx.scratch, unit).ok_or_else(|| bad(tx.scratch.clone()))?,
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
            write_text(&mut slot.text, &tx.scratch, &value);
        }
        Ok(())
    }
}

