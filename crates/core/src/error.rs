//! One error model for everything a caller can see.
//!
//! Every failure the gateway reports is a [`GatewayError`]: a [`ErrorKind`] that fixes the HTTP
//! status, the OpenAI `type` and the stable `code`, plus a message written for the caller. The
//! message never carries an API key, an upstream URL or a panic text: upstream bodies are
//! summarised by [`crate::providers`] before they get here.

use serde_json::{json, Value};
use std::fmt;

/// What went wrong, from the caller's point of view. Each kind has exactly one status and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The body is not JSON, or a field has the wrong type or value. 400.
    InvalidRequest,
    /// No valid gateway token. 401.
    Unauthorized,
    /// The tenant is disabled. 403.
    TenantDisabled,
    /// The caller's token does not allow this model. 403.
    ModelNotAllowed,
    /// The request's `Origin` is not allowed for this tenant. 403.
    OriginNotAllowed,
    /// The tenant's (or end user's) budget for the period is spent. 429.
    BudgetExceeded,
    /// The tenant's (or end user's) rate limit is reached. 429.
    RateLimited,
    /// The body exceeds the configured cap. 413.
    PayloadTooLarge,
    /// The path exists but not for this method. 405.
    MethodNotAllowed,
    /// No such path. 404.
    NotFound,
    /// The requested model is not a configured route. 404.
    ModelNotFound,
    /// The resource already exists (an admin create with a taken id). 409.
    Conflict,
    /// The target cannot honour a parameter of the request. 400.
    UnsupportedParameter,
    /// The upstream said the prompt is too long for the model. 400.
    ContextLengthExceeded,
    /// The upstream refused the content. 400.
    ContentPolicy,
    /// The upstream rejected the request as malformed. 400 (passed on, never retried).
    UpstreamInvalidRequest,
    /// Every attempt failed with errors the upstream called retryable, or could not connect. 502.
    UpstreamError,
    /// Every attempt ran out of time. 504.
    UpstreamTimeout,
    /// Upstreams kept rate-limiting us. 429.
    UpstreamRateLimited,
    /// The upstream rejected our credentials (an operator problem, not the caller's). 502.
    UpstreamAuth,
    /// Data residency leaves the route no target that may serve the request. 503.
    NoEligibleTarget,
    /// The routing configuration is invalid. 500.
    ConfigInvalid,
    /// A secret named by the configuration is not set. 500.
    SecretMissing,
    /// A bug or platform failure inside the gateway. 500.
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::UnsupportedParameter
            | ErrorKind::ContextLengthExceeded
            | ErrorKind::ContentPolicy
            | ErrorKind::UpstreamInvalidRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::TenantDisabled
            | ErrorKind::ModelNotAllowed
            | ErrorKind::OriginNotAllowed => 403,
            ErrorKind::BudgetExceeded | ErrorKind::RateLimited => 429,
            ErrorKind::NotFound | ErrorKind::ModelNotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UpstreamRateLimited => 429,
            ErrorKind::ConfigInvalid | ErrorKind::SecretMissing | ErrorKind::Internal => 500,
            ErrorKind::UpstreamError | ErrorKind::UpstreamAuth => 502,
            ErrorKind::NoEligibleTarget => 503,
            ErrorKind::UpstreamTimeout => 504,
        }
    }

    /// OpenAI's `error.type`.
    pub fn type_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::Unauthorized
            | ErrorKind::TenantDisabled
            | ErrorKind::ModelNotAllowed
            | ErrorKind::OriginNotAllowed
            | ErrorKind::PayloadTooLarge
            | ErrorKind::MethodNotAllowed
            | ErrorKind::NotFound
            | ErrorKind::ModelNotFound
            | ErrorKind::Conflict
            | ErrorKind::UnsupportedParameter
            | ErrorKind::ContextLengthExceeded
            | ErrorKind::ContentPolicy
            | ErrorKind::UpstreamInvalidRequest => "invalid_request_error",
            ErrorKind::UpstreamRateLimited | ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::BudgetExceeded => "insufficient_quota",
            ErrorKind::UpstreamError | ErrorKind::UpstreamTimeout | ErrorKind::UpstreamAuth => {
                "upstream_error"
            }
            ErrorKind::ConfigInvalid
            | ErrorKind::SecretMissing
            | ErrorKind::Internal
            | ErrorKind::NoEligibleTarget => "server_error",
        }
    }

    /// The stable machine-readable `error.code`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Unauthorized => "invalid_api_key",
            ErrorKind::TenantDisabled => "tenant_disabled",
            ErrorKind::ModelNotAllowed => "model_not_allowed",
            ErrorKind::OriginNotAllowed => "origin_not_allowed",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::RateLimited => "rate_limit_exceeded",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::Conflict => "already_exists",
            ErrorKind::UnsupportedParameter => "unsupported_parameter",
            ErrorKind::ContextLengthExceeded => "context_length_exceeded",
            ErrorKind::ContentPolicy => "content_policy_violation",
            ErrorKind::UpstreamInvalidRequest => "upstream_invalid_request",
            ErrorKind::UpstreamError => "upstream_error",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamRateLimited => "upstream_rate_limited",
            ErrorKind::UpstreamAuth => "upstream_auth_failed",
            ErrorKind::NoEligibleTarget => "no_eligible_target",
            ErrorKind::ConfigInvalid => "config_invalid",
            ErrorKind::SecretMissing => "secret_missing",
            ErrorKind::Internal => "internal_error",
        }
    }
}

/// An error as the caller will see it.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    /// The request parameter at fault, when there is one (OpenAI's `error.param`).
    pub param: Option<String>,
    /// Seconds the caller should wait before retrying, sent as `Retry-After`.
    pub retry_after_secs: Option<u64>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
            param: None,
            retry_after_secs: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after_secs = secs;
        self
    }

    pub fn invalid(message: impl Into<String>, param: &str) -> Self {
        GatewayError::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        GatewayError::new(ErrorKind::Internal, message)
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The OpenAI-shaped body: `{"error":{"message","type","param","code"}}`.
    pub fn to_json(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind.type_str(),
                "param": self.param,
                "code": self.kind.code(),
            }
        })
    }

    /// [`to_json`](Self::to_json) as text, written directly (same keys, same order).
    pub fn to_body(&self) -> String {
        let mut w = crate::json::JsonWriter::new();
        w.open().key("error").open();
        w.key("code").str(self.kind.code());
        w.key("message").str(&self.message);
        w.key("param");
        match &self.param {
            Some(p) => w.str(p),
            None => w.null(),
        };
        w.key("type").str(self.kind.type_str()).close().close();
        w.finish()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {

    #[test]
    fn body_is_the_json_value_as_text() {
        for e in [
            GatewayError::internal("a \"quoted\" message"),
            GatewayError::internal("x").with_param("messages[0].role"),
        ] {
            assert_eq!(e.to_body(), e.to_json().to_string());
        }
    }

    use super::*;

    #[test]
    fn body_is_openai_shaped() {
        let e = GatewayError::invalid("`messages` must be an array", "messages");
        let v = e.to_json();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["message"], "`messages` must be an array");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn statuses_follow_kinds() {
        assert_eq!(ErrorKind::PayloadTooLarge.status(), 413);
        assert_eq!(ErrorKind::MethodNotAllowed.status(), 405);
        assert_eq!(ErrorKind::ModelNotFound.status(), 404);
        assert_eq!(ErrorKind::ModelNotFound.code(), "model_not_found");
        assert_eq!(ErrorKind::Conflict.status(), 409);
        assert_eq!(ErrorKind::Conflict.code(), "already_exists");
        assert_eq!(ErrorKind::UpstreamTimeout.status(), 504);
        assert_eq!(ErrorKind::UpstreamError.status(), 502);
        assert_eq!(ErrorKind::ConfigInvalid.status(), 500);
        assert_eq!(ErrorKind::ConfigInvalid.code(), "config_invalid");
        assert_eq!(ErrorKind::NoEligibleTarget.status(), 503);
        assert_eq!(ErrorKind::NoEligibleTarget.code(), "no_eligible_target");
        assert_eq!(ErrorKind::NoEligibleTarget.type_str(), "server_error");
        let null_param = GatewayError::internal("x").to_json();
        assert!(null_param["error"]["param"].is_null());
    }
}
