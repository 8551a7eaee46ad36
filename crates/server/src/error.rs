//! Errors. `ApiError` is the one type every handler returns: a status, a stable `code`
//! and a message for the user, sent as `{"error": {"code", "message"}}`. Internal errors
//! are logged with their whole chain and answered with a generic message, never their text.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::{ToResponse, ToSchema};

/// Errors of starting and running the service (not of single requests).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot use the data directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the blob store {location}")]
    BlobStore {
        location: String,
        #[source]
        source: Box<crate::blobs::BlobStoreError>,
    },
    #[error("job database {path}")]
    Database {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the job database {path} is damaged or is not a SQLite database ({detail}); move it aside to start with an empty queue (the images under blobs/ stay)")]
    CorruptDatabase {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("the job database {path} has layout version {found}, newer than this huatu reads ({known}); run the newer huatu, or move the file aside")]
    NewerDatabase {
        path: std::path::PathBuf,
        found: i64,
        known: i64,
    },
    #[error("job queue {database}")]
    Queue {
        /// The database URL without its password.
        database: String,
        #[source]
        source: crate::job_queue::store::QueueError,
    },
    #[error("the job queue {database} has layout version {found}, newer than this huatu reads ({known}); run the newer huatu on every node")]
    NewerQueue {
        database: String,
        found: i32,
        known: i32,
    },
    #[error("another huatu server is using the data directory {path}{holder}; stop it, or give this one another --data")]
    DataDirLocked {
        path: std::path::PathBuf,
        /// ` (process N)` when the lock file says who holds it.
        holder: String,
    },
    #[error(
        "the data directory {path} is not writable (the server keeps its queue and images there)"
    )]
    DataDirReadOnly {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the model from {path}")]
    Model {
        path: std::path::PathBuf,
        #[source]
        source: huatu_diffusion::Error,
    },
    #[error("cannot load the agent's intent model from {path}")]
    Agent {
        path: std::path::PathBuf,
        #[source]
        source: huatu_agent::AgentError,
    },
    #[error("cannot load the prompt model (--prompt-model / $HUATU_PROMPT_MODEL) from {path}")]
    PromptModel {
        path: std::path::PathBuf,
        #[source]
        source: huatu_agent::AgentError,
    },
    #[error("cannot open the device {device}")]
    Device {
        device: String,
        #[source]
        source: huatu_diffusion::Error,
    },
    #[error("cannot listen on {address}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("server failed")]
    Serve(#[source] std::io::Error),
    #[error("{task} stopped unexpectedly")]
    Task {
        /// What the task was doing, e.g. `loading the model`.
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write the listening address to stdout")]
    Stdout(#[source] std::io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 for a field that breaks a rule; the message states the rule and the value.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "not_implemented", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn queue_full(capacity: usize, retry_after: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            format!("the job queue is full ({capacity} jobs waiting or running); retry in about {retry_after} s"),
        );
        error.retry_after = Some(retry_after);
        error
    }

    /// 507: the data directory has no room for the request (nothing of it was kept).
    pub fn storage_full() -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            "the server's data directory is full; retry after its operator frees space",
        )
    }

    /// Logs the cause and answers 500 without revealing it.
    pub fn internal(context: &str, cause: &dyn std::error::Error) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(next) = source {
            chain.push_str(": ");
            chain.push_str(&next.to_string());
            source = next.source();
        }
        tracing::error!("{context}: {chain}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error ({context}); see the server log"),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl From<crate::job_queue::store::QueueError> for ApiError {
    fn from(error: crate::job_queue::store::QueueError) -> Self {
        if error.is_storage_full() {
            tracing::error!("job database: {error}");
            return Self::storage_full();
        }
        Self::internal("job database", &error)
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> Self {
        crate::job_queue::store::QueueError::from(error).into()
    }
}

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema, ToResponse)]
#[schema(as = Error)]
#[response(description = "An error")]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs.
    #[schema(examples(
        "invalid_request",
        "invalid_json",
        "unsupported_media_type",
        "payload_too_large",
        "unauthorized",
        "not_found",
        "method_not_allowed",
        "conflict",
        "queue_full",
        "job_too_large",
        "not_implemented",
        "unavailable",
        "timeout",
        "job_failed",
        "internal",
        "cors_forbidden",
        "invalid_multipart",
        "body_timeout",
        "storage_full",
        "host_forbidden",
        "cross_site_forbidden"
    ))]
    pub code: String,
    /// For people: the rule broken and the value sent.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// An error and its causes on one line (a job's failure reason, a LoRA's load error).
pub fn one_line_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_errors_keep_their_causes_through_anyhow() {
        // `huatu serve` hands a ServerError to anyhow: it must stay Send + Sync + 'static
        // and keep its chain.
        let error = anyhow::Error::from(ServerError::Runtime(std::io::Error::other(
            "no threads left",
        )));
        let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
        assert_eq!(chain, ["cannot start the async runtime", "no threads left"]);
    }
}
