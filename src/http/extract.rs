//! Reading a request into the operator layer's request types: query strings and JSON bodies.
//!
//! Owns how a malformed one is answered: a JSON 400 like every other error (never axum's plain
//! text rejection). It must never check what the values mean: `ops` does.

use axum::extract::Query;
use axum::http::Uri;
use serde::de::DeserializeOwned;

use super::ApiError;

/// A query string as `T`.
pub(crate) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::InvalidParam(e.body_text()))
}

/// A JSON body, where an empty body or `null` means the default.
pub(crate) fn json_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::BadBody(e.to_string()))
}
