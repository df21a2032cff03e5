//! `POST /files` (multipart upload, seed 000) and the public download of an attached file.
//!
//! The download URL is a capability: its file id is 24 random characters, so `<img src>` works without a header.
//! The upload's `attachmentToken` is a separate secret, so knowing a URL does not let anyone re-attach the file.

use axum::{
    extract::{multipart::MultipartRejection, Multipart, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde_json::{json, Value};

use super::auth::AuthenticatedApp;
use crate::http::{error::ApiError, extract::AppPath};
use crate::{
    app::{now_millis, AppState},
    domain::ids::AppId,
    store::NewFile,
};

/// Longest filename kept, in bytes.
const MAX_FILENAME_BYTES: usize = 255;
/// What a multipart body may hold besides the file (boundaries, part headers, the filename part): the body limit
/// is the file limit plus this, so that `--max-upload-bytes` is the size of the file itself.
pub const MULTIPART_OVERHEAD_BYTES: usize = 64 * 1024;
/// Uploads read at once. A file is held whole until its transaction commits, so this bounds their memory:
/// `MAX_CONCURRENT_UPLOADS × --max-upload-bytes`. Others wait (their bodies stay unread) until one finishes.
pub const MAX_CONCURRENT_UPLOADS: usize = 4;

impl From<MultipartRejection> for ApiError {
    fn from(rejection: MultipartRejection) -> Self {
        ApiError::bad_request(
            "INVALID_MULTIPART",
            format!("{} (let your HTTP client set Content-Type with its boundary)", rejection.body_text()),
        )
    }
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("the file is larger than this gateway accepts".into())
    } else {
        ApiError::bad_request("INVALID_MULTIPART", error.body_text())
    }
}

pub async fn upload_file(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let mut multipart = multipart?;
    // Held until the file is stored: the bytes in memory are bounded by the permits.
    let _permit = state.uploads.acquire().await.map_err(|_| ApiError::Unavailable("shutting down".into()))?;
    let _counted = InProgress::start(&state.metrics.uploads_in_progress);
    let mut file = None;
    let mut filename_field = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("file") => {
                let Some(part_filename) = field.file_name().map(str::to_owned) else {
                    return Err(ApiError::bad_request(
                        "INVALID_MULTIPART",
                        "the file part has no filename directive in its Content-Disposition",
                    ));
                };
                let content_type = field.content_type().unwrap_or("application/octet-stream").to_owned();
                let bytes = read_file(field, state.config.max_upload_bytes).await?;
                file = Some((part_filename, content_type, bytes));
            }
            Some("filename") => filename_field = Some(field.text().await.map_err(multipart_error)?),
            _ => {}
        }
    }
    let (part_filename, content_type, bytes) =
        file.ok_or_else(|| ApiError::bad_request("INVALID_MULTIPART", "the required part \"file\" is missing"))?;
    let filename = filename_field
        .ok_or_else(|| ApiError::bad_request("INVALID_MULTIPART", "the required part \"filename\" is missing"))?;
    let filename = if filename.trim().is_empty() { part_filename } else { filename };
    if filename.len() > MAX_FILENAME_BYTES || filename.contains(['/', '\\']) || filename.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "INVALID_MULTIPART",
            format!("filename must be at most {MAX_FILENAME_BYTES} bytes without slashes or control characters"),
        ));
    }
    let receipt = state.store.put_file(&app, NewFile { filename, content_type, bytes }, now_millis()).await?;
    Ok(Json(json!({ "attachmentToken": receipt.token })))
}

/// Reads the file part chunk by chunk, refusing it as soon as it is larger than `max_bytes`.
async fn read_file(mut field: axum::extract::multipart::Field<'_>, max_bytes: usize) -> Result<bytes::Bytes, ApiError> {
    let mut bytes = bytes::BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > max_bytes {
            return Err(ApiError::PayloadTooLarge(format!("the file is larger than {max_bytes} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// Counts an upload in `uploads_in_progress` for as long as it lives, however the handler ends.
struct InProgress<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InProgress<'a> {
    fn start(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Public: serves the bytes of a stored file. The filename in the path is for humans and is not checked.
pub async fn download_file(
    State(state): State<AppState>,
    AppPath((app_id, file_id, _filename)): AppPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let app = AppId::parse(&app_id)?;
    if !state.apps.contains_key(&app) {
        return Err(ApiError::AppNotFound(app_id));
    }
    let file =
        state.store.file(&app, &file_id).await?.ok_or_else(|| ApiError::RouteNotFound(format!("file {file_id:?}")))?;
    let content_type = HeaderValue::from_str(&file.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        // Uploaded HTML or SVG must not run scripts on the gateway's origin.
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox")),
        (header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable")),
        (header::CONTENT_DISPOSITION, content_disposition(&file.filename)),
    ];
    Ok((headers, file.bytes).into_response())
}

fn content_disposition(filename: &str) -> HeaderValue {
    let encoded = percent_encoding::utf8_percent_encode(filename, percent_encoding::NON_ALPHANUMERIC);
    HeaderValue::from_str(&format!("inline; filename*=UTF-8''{encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("inline"))
}
