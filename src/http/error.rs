//! The one place where errors become HTTP responses. Every error body is JSON with a stable
//! machine-readable `error` code and a human-readable `message`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::validate::ValidationError;
use crate::store::StoreError;
use crate::verify::VerifyError;

/// Everything an HTTP handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    #[error("provider {provider:?} is not configured: set {setting} to accept its webhooks")]
    ProviderNotConfigured { provider: String, setting: String },
    #[error("body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    BadBody(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not found")]
    NotFound,
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    InvalidParam(String),
    /// A configuration the file would refuse too; `field` names the setting.
    #[error("{message}")]
    InvalidConfig { field: String, message: String },
    #[error("too many requests for this provider; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many requests in flight; retry shortly")]
    Overloaded,
    #[error("{0}")]
    Busy(String),
    #[error("the request body was not received within the time allowed")]
    BodyTimeout,
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("your address may not use this endpoint")]
    AddressForbidden,
    #[error("too many failed logins from your address; retry after {retry_after_secs} s")]
    TooManyFailures { retry_after_secs: u64 },
}

impl From<crate::ops::OpsError> for ApiError {
    fn from(e: crate::ops::OpsError) -> Self {
        use crate::ops::OpsError as E;
        match e {
            E::NotFound => Self::NotFound,
            E::UnknownProvider(name) => Self::UnknownProvider(name),
            E::Conflict { code, message } => Self::Conflict { code, message },
            E::Invalid(m) => Self::InvalidParam(m),
            E::Busy(m) => Self::Busy(m),
            E::InvalidConfig { field, message } => Self::InvalidConfig { field, message },
            E::Store(s) => Self::Store(s),
        }
    }
}

impl ApiError {
    /// HTTP status and the stable error code (also the `outcome` label of the metrics).
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            // The provider could not be checked for now (its certificate is out of reach):
            // make it retry rather than give up on a possibly genuine event.
            Self::Verify(e @ VerifyError::CertUnavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, e.reason())
            }
            Self::Verify(e) => (StatusCode::BAD_REQUEST, e.reason()),
            Self::UnknownProvider(_) => (StatusCode::NOT_FOUND, "unknown_provider"),
            Self::ProviderNotConfigured { .. } => {
                (StatusCode::NOT_FOUND, "provider_not_configured")
            }
            Self::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::BadBody(_) => (StatusCode::BAD_REQUEST, "unreadable_body"),
            Self::Store(StoreError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            Self::Store(StoreError::Other(_)) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::InvalidParam(_) => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            Self::InvalidConfig { .. } => (StatusCode::BAD_REQUEST, "invalid_config"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Self::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            Self::Invalid(e) => (StatusCode::BAD_REQUEST, e.reason()),
            Self::AddressForbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::TooManyFailures { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_failures"),
        }
    }

    /// Seconds for `Retry-After`, for the answers that ask the client to come back.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } | Self::TooManyFailures { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            // Shedding load: come back soon, the queue in front of us is short-lived.
            Self::Overloaded => Some(1),
            _ if self.status_and_code().0 == StatusCode::SERVICE_UNAVAILABLE => Some(5),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut body = json!({ "error": code });
        match &self {
            Self::Store(StoreError::Other(e)) => {
                // The details stay in the log; the client gets an id to quote.
                let correlation_id = uuid::Uuid::new_v4().to_string();
                tracing::error!(%correlation_id, error = %e, "internal error");
                body["message"] = "internal error".into();
                body["correlation_id"] = correlation_id.into();
            }
            Self::Store(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "store unavailable");
                body["message"] = "the event store is unavailable; retry later".into();
            }
            Self::InvalidConfig { field, message } => {
                body["message"] = message.clone().into();
                body["field"] = field.clone().into();
            }
            Self::Invalid(ValidationError::Schema { path, .. }) => {
                body["message"] = self.to_string().into();
                body["path"] = path.clone().into();
            }
            other => body["message"] = other.to_string().into(),
        }
        let retry_after = self.retry_after_secs();
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body may still be on its way (or, after `Expect: 100-continue`,
            // was never asked for): do not read it, close.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
