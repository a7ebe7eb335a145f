//! What every route does with a request before handling it: the API key checked before the
//! body is read, the body read within its size and time limits (or an unauthorized one drained
//! and dropped), and the input parsed and validated into fal's 422 when wrong.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use faceid_fal::{FalRequest, FieldError};
use serde_json::{Value, json};

use super::{AppState, detail, new_id, reply};

/// A request with an input: its sender's key checked, then its body read and its input parsed
/// and validated; `Err` is the answer (401, 408, 413 or 422).
pub(super) async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Option<String>, (FalRequest, bool, Value)), Response> {
    let owner = match authorize(state, headers) {
        Ok(owner) => owner,
        Err(response) => return Err(refuse(state, headers, body, response).await),
    };
    let body = read_body(state, headers, body).await?;
    Ok((owner, parse_input(&body)?))
}

/// The caller's key: `Ok(None)` without keys configured, `Err` (401) when a key is needed and
/// missing or wrong.
pub(super) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<Option<String>, Response> {
    if state.keys.is_open() {
        return Ok(None);
    }
    // fal's scheme only: `Key <key>`, the key exactly as issued.
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Key "));
    match given.map(|key| state.keys.check(key)) {
        Some(Some(owner)) => Ok(Some(owner)),
        Some(None) => Err(detail(
            StatusCode::UNAUTHORIZED,
            "the API key is not valid for this server",
            &new_id(),
        )),
        None => Err(detail(
            StatusCode::UNAUTHORIZED,
            "an API key is required: send `Authorization: Key <key>`",
            &new_id(),
        )),
    }
}

/// Reads a request body (only once its sender is authorized): at most `max_body_bytes`
/// (413 beyond, refused from `Content-Length` before anything is read) within the body
/// timeout (408 after).
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    use futures_util::StreamExt;
    let limit = state.max_body_bytes;
    let too_large = || {
        detail(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than the {limit} bytes this server accepts"),
            &new_id(),
        )
    };
    let declared = content_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut collected = Vec::with_capacity(declared.unwrap_or(0).min(1 << 20) as usize);
    let mut stream = body.into_data_stream();
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                detail(
                    StatusCode::BAD_REQUEST,
                    "the body could not be read",
                    &new_id(),
                )
            })?;
            if collected.len() + chunk.len() > limit {
                return Err(too_large());
            }
            collected.extend_from_slice(&chunk);
        }
        Ok(())
    };
    let outcome = tokio::time::timeout(state.body_timeout, read).await;
    match outcome {
        Ok(Ok(())) => Ok(Bytes::from(collected)),
        Ok(Err(response)) => Err(response),
        Err(_) => Err(detail(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the body did not arrive within {} s",
                state.body_timeout.as_secs_f64()
            ),
            &new_id(),
        )),
    }
}

/// The declared length of a body.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Answers an unauthorized request that carries a body. A body of at most
/// `refused_body_drain` bytes is read and dropped as it arrives (never kept), within the body
/// timeout, so that the client sees the answer rather than a reset connection; a larger one is
/// not read at all. The connection is closed after the answer.
async fn refuse(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    mut response: Response,
) -> Response {
    use futures_util::StreamExt;
    let drain = state.refused_body_drain;
    if drain > 0 && content_length(headers).is_none_or(|n| n <= drain as u64) {
        let mut stream = body.into_data_stream();
        let discard = async {
            let mut seen = 0;
            while let Some(Ok(chunk)) = stream.next().await {
                seen += chunk.len();
                if seen > drain {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(state.body_timeout, discard).await;
    }
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    response
}

/// Parses and validates the input; a 422 in fal's shape otherwise.
fn parse_input(body: &Bytes) -> Result<(FalRequest, bool, Value), Response> {
    let id = new_id();
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": [{"loc": ["body"], "msg": format!("the body is not valid JSON: {e}"), "type": "json_invalid"}]}),
            &id,
        )
    })?;
    let input = FalRequest::from_json(&value).map_err(|errors| unprocessable(&errors, &id))?;
    if input.face_image_url.is_none() && input.face_images_data_url.is_none() {
        let missing = FieldError {
            loc: vec!["body".into(), "face_image_url".into()],
            msg: "a face is required: give face_image_url or face_images_data_url".into(),
            kind: "missing".into(),
        };
        return Err(unprocessable(&[missing], &id));
    }
    let inline = value
        .get("sync_mode")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((input, inline, value))
}

pub(super) fn unprocessable(errors: &[FieldError], id: &str) -> Response {
    reply(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "detail": errors }),
        id,
    )
}
