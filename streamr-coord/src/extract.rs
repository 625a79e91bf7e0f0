//! Request extractors whose rejections are JSON [`ApiError`]s instead of axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body; a malformed or oversized body is answered with a JSON 400 or 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !plain_json_content_type(req.headers()) {
            // Anything but the plain type (parameters, `+json` types, none): axum decides,
            // with its own rejection when the type is not JSON.
            return match axum::Json::<T>::from_request(req, state).await {
                Ok(axum::Json(value)) => Ok(ApiJson(value)),
                Err(rejection) => Err(json_rejection(rejection)),
            };
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| json_rejection(JsonRejection::from(rejection)))?;
        // axum's `Json` deserializes through `serde_path_to_error`, which wraps every value
        // and copies every map key so that an error can name the field: a cost paid by every
        // request. Plain `serde_json` accepts exactly the same bodies; only a body it refuses
        // is read again through axum, for the same rejection (and field path) as before.
        match serde_json::from_slice::<T>(&body) {
            Ok(value) => Ok(ApiJson(value)),
            Err(_) => match axum::Json::<T>::from_bytes(&body) {
                Ok(axum::Json(value)) => Ok(ApiJson(value)),
                Err(rejection) => Err(json_rejection(rejection)),
            },
        }
    }
}

/// Whether the request says its body is `application/json`, exactly (ASCII case aside): the
/// type nodes and clients send. Every other type goes through axum's own check.
fn plain_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"application/json"))
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge(rejection.body_text())
    } else {
        ApiError::InvalidJson(rejection.body_text())
    }
}

/// Path parameters; a malformed one is answered with a JSON 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection: PathRejection| ApiError::InvalidPath(rejection.body_text()))
    }
}

/// A query string; a malformed one is answered with a JSON 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| ApiError::InvalidQuery(rejection.body_text()))
    }
}

/// The client's IP address when the server was started with connect info (absent otherwise,
/// e.g. when the router is driven directly in tests): the TCP peer's, or behind a trusted
/// reverse proxy the address its forwarding headers name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let client = parts
            .extensions
            .get::<streamr_net::ClientIp>()
            .map(|client| client.0);
        Ok(PeerIp(client.or_else(|| {
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip())
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Outer {
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Inner {
        nonce: u64,
    }

    async fn extract(content_type: Option<&str>, body: &str) -> Result<Outer, ApiError> {
        let mut request = Request::builder().method("POST").uri("/");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        ApiJson::<Outer>::from_request(request, &())
            .await
            .map(|ApiJson(value)| value)
    }

    /// Bodies refused on the plain-`serde_json` path get axum's rejection word for word,
    /// field path included; accepted ones the same value; other content types axum's check.
    #[tokio::test]
    async fn the_fast_path_accepts_and_refuses_as_axum_does() {
        let good = r#"{"inner": {"nonce": 7}}"#;
        for content_type in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
        ] {
            assert_eq!(
                extract(Some(content_type), good).await.unwrap(),
                Outer {
                    inner: Inner { nonce: 7 }
                },
                "{content_type}"
            );
        }
        for bad in [
            r#"{"inner": {"nonce": "seven"}}"#,
            r#"{"inner": {"nonce": 7}} trailing"#,
            r#"{"inner": "#,
            "[]",
        ] {
            let expected = match axum::Json::<Outer>::from_bytes(bad.as_bytes()) {
                Err(rejection) => rejection.body_text(),
                Ok(_) => panic!("axum accepted {bad}"),
            };
            match extract(Some("application/json"), bad).await {
                Err(ApiError::InvalidJson(text)) => assert_eq!(text, expected, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let text = match extract(Some("application/json"), r#"{"inner": {"nonce": "x"}}"#).await {
            Err(ApiError::InvalidJson(text)) => text,
            other => panic!("{other:?}"),
        };
        assert!(text.contains("inner.nonce"), "{text}");
        for content_type in [None, Some("text/plain")] {
            assert!(
                matches!(
                    extract(content_type, good).await,
                    Err(ApiError::InvalidJson(_))
                ),
                "{content_type:?}"
            );
        }
    }
}
