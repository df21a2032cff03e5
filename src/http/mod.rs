//! What the REST API and the realtime upgrade share over HTTP: `ApiError`, the one mapping of every failure to a
//! status and a `{"errorCode", "reasons"}` body, and the extractors that answer bad input in that format.

pub mod error;
pub mod extract;
