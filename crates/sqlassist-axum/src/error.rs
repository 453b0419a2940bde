//! What can go wrong around a unit of work, and the error type for handlers.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use transaction::Transient;

/// A failure of the unit of work itself (not of the handler's code), turned into a
/// response by the layer's [error mapper](crate::TmLayer::error_response).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TmError {
    /// No unit of work could start within the layer's wait time: every slot the pools
    /// can serve is taken. Default response: 503 with `Retry-After: 1`.
    #[error("no database capacity within {waited:?}")]
    Overloaded {
        /// How long the request waited.
        waited: Duration,
    },
    /// The transaction could not begin. Default response: 500.
    #[error("beginning the transaction failed")]
    Begin(#[source] transaction::Error),
    /// The commit failed: nothing the handler answered is sent. Default response: 409
    /// when the failure is transient (a conflict that a retry may resolve), else 500.
    #[error("committing the transaction failed")]
    Commit(#[source] transaction::Error),
    /// The handler panicked; the transaction was aborted. Default response: 500.
    #[error("the request handler panicked")]
    Panicked,
}

impl TmError {
    /// The layer's default mapping of a failure to a response: a status and a short
    /// plain-text body without details (the details go to the log).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sqlassist_axum::TmError;
    ///
    /// let r = TmError::Overloaded { waited: Duration::from_secs(1) }.default_response();
    /// assert_eq!(r.status(), 503);
    /// assert_eq!(TmError::Panicked.default_response().status(), 500);
    /// ```
    pub fn default_response(&self) -> Response {
        match self {
            TmError::Overloaded { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(http::header::RETRY_AFTER, "1")],
                "service busy, try again\n",
            )
                .into_response(),
            TmError::Commit(e) if e.is_transient() => {
                (StatusCode::CONFLICT, "conflict, try again\n").into_response()
            }
            TmError::Begin(_) | TmError::Commit(_) | TmError::Panicked => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
            }
        }
    }
}

/// A database error returned by a handler: aborts the transaction, is retried when
/// transient and attempts remain, and answers 503 (transient) or 500 otherwise.
///
/// `?` converts [`sqlassist::Error`] and [`transaction::Error`] into it.
///
/// # Examples
///
/// ```
/// use axum::response::IntoResponse;
/// use sqlassist_axum::DbError;
///
/// let e = DbError::from(sqlassist::Error::NoDefaultEngine);
/// assert_eq!(e.into_response().status(), 500);
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(pub sqlassist::Error);

impl From<sqlassist::Error> for DbError {
    fn from(e: sqlassist::Error) -> Self {
        DbError(e)
    }
}

impl From<transaction::Error> for DbError {
    fn from(e: transaction::Error) -> Self {
        DbError(sqlassist::Error::from(e))
    }
}

impl Transient for DbError {
    fn is_transient(&self) -> bool {
        self.0.is_transient()
    }
}

impl IntoResponse for DbError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "request failed with a database error");
        if self.0.is_transient() {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database busy, try again\n",
            )
                .into_response()
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "database error\n").into_response()
        }
    }
}
