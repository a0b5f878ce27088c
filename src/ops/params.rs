//! Checking what an operator asks with: the text, time, status, page-size and id parameters
//! of the operator requests, each turned into its typed value or a clear `Invalid` error.
//!
//! Owns the limits of a request (text length, page size) and the accepted spellings (RFC 3339
//! times, status names). It must never reach the store: it only reads the request.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::OpsError;
use crate::event::{EventId, EventStatus};

/// Longest text accepted in a filter.
pub const MAX_TEXT: usize = 1024;

/// A text parameter: empty is none, longer than [`MAX_TEXT`] is refused.
pub fn text(name: &str, v: &Option<String>) -> Result<Option<String>, OpsError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) if s.len() > MAX_TEXT => Err(OpsError::Invalid(format!(
            "{name} is longer than {MAX_TEXT} bytes"
        ))),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

/// A body field: like [`text`], but NUL is refused (it would be stored with the job).
pub fn body_text(name: &str, v: &Option<String>) -> Result<Option<String>, OpsError> {
    let v = text(name, v)?;
    if v.as_deref().is_some_and(|s| s.contains('\0')) {
        return Err(OpsError::Invalid(format!(
            "{name} must not contain NUL characters"
        )));
    }
    Ok(v)
}

/// An RFC 3339 time; one without an offset is taken as UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// A time parameter (RFC 3339); empty is none.
pub fn time(name: &str, v: &Option<String>) -> Result<Option<DateTime<Utc>>, OpsError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => parse_time(s).map(Some).ok_or_else(|| {
            OpsError::Invalid(format!(
                "{name} must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z"
            ))
        }),
    }
}

/// Comma-separated statuses; empty is any.
pub fn statuses(v: &Option<String>) -> Result<Vec<EventStatus>, OpsError> {
    let Some(list) = v.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(|s| {
            EventStatus::parse(s.trim()).ok_or_else(|| {
                OpsError::Invalid(format!(
                    "unknown status {s:?}; expected pending, processing, retry_scheduled, \
                     compensating, completed or dead_letter"
                ))
            })
        })
        .collect()
}

/// Entries per page: 1 to 500, 50 when not given.
pub fn limit(v: Option<u32>) -> Result<u32, OpsError> {
    match v {
        None => Ok(50),
        Some(n @ 1..=500) => Ok(n),
        Some(_) => Err(OpsError::Invalid("limit must be between 1 and 500".into())),
    }
}

/// The `next_cursor` of an event page, given back.
pub fn event_cursor(v: &Option<String>) -> Result<Option<EventId>, OpsError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| OpsError::Invalid("cursor is not one this API gave out".into())),
    }
}

/// An event id in a path: one that cannot be an id names no event.
pub fn event_id(id: &str) -> Result<EventId, OpsError> {
    id.parse().map_err(|_| OpsError::NotFound)
}

/// A job id in a path: one that cannot be an id names no job.
pub fn job_id(id: &str) -> Result<Uuid, OpsError> {
    id.parse().map_err(|_| OpsError::NotFound)
}

/// Whether any of these filter values holds NUL, which no stored provider, type, key or actor
/// does (and PostgreSQL text cannot hold): such a filter matches nothing.
pub fn impossible(values: &[&Option<String>]) -> bool {
    values
        .iter()
        .any(|v| v.as_deref().is_some_and(|s| s.contains('\0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid<T: std::fmt::Debug>(r: Result<T, OpsError>) -> String {
        match r {
            Err(OpsError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn texts_are_bounded_and_bodies_refuse_nul() {
        assert_eq!(text("x", &Some(String::new())).unwrap(), None);
        assert_eq!(
            text("x", &Some("a\0b".into())).unwrap().as_deref(),
            Some("a\0b")
        );
        let long = Some("a".repeat(MAX_TEXT + 1));
        assert!(invalid(text("provider", &long)).contains("provider is longer"));
        assert!(invalid(body_text("text", &Some("a\0b".into()))).contains("NUL"));
        assert!(impossible(&[&None, &Some("a\0".into())]));
        assert!(!impossible(&[&None, &Some("a".into())]));
    }

    #[test]
    fn times_statuses_limits_and_ids() {
        let t = time("t", &Some("2024-05-01T12:00:00".into()))
            .unwrap()
            .unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T12:00:00+00:00");
        assert!(time("t", &Some("2024-05-01T14:00:00+02:00".into())).unwrap() == Some(t));
        assert!(invalid(time("received_after", &Some("yesterday".into()))).contains("RFC 3339"));
        assert_eq!(
            statuses(&Some("dead_letter, completed".into())).unwrap(),
            vec![EventStatus::DeadLetter, EventStatus::Completed]
        );
        assert!(invalid(statuses(&Some("done".into()))).contains("unknown status"));
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some(500)).unwrap(), 500);
        assert!(invalid(limit(Some(0))).contains("between 1 and 500"));
        assert!(invalid(event_cursor(&Some("nope".into()))).contains("cursor"));
        assert!(matches!(event_id("nope"), Err(OpsError::NotFound)));
        assert!(matches!(job_id("nope"), Err(OpsError::NotFound)));
    }
}
