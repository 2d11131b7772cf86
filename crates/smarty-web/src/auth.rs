//! The access token: `Authorization: Bearer TOKEN` or `?token=TOKEN` (percent-encoded, as a
//! browser's `URLSearchParams` writes it), for the API and for `/metrics`.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use smarty_model::secret::Secret;

/// What the token check needs: the token, when one is required.
#[derive(Clone)]
pub struct Access {
    /// The token requests must carry; `None` lets every request through.
    pub token: Option<Arc<Secret>>,
}

/// Lets a request through when no token is configured or it carries the right one; answers
/// 401 otherwise.
pub async fn require_token(State(access): State<Access>, request: Request, next: Next) -> Response {
    let Some(expected) = &access.token else {
        return next.run(request).await;
    };
    match given_token(&request) {
        Some(given) if same(given.as_bytes(), expected.expose().as_bytes()) => {
            next.run(request).await
        }
        Some(_) => unauthorized("wrong access token"),
        None => unauthorized(
            "this needs the access token: Authorization: Bearer TOKEN, or ?token=TOKEN",
        ),
    }
}

/// The token a request carries: the `Authorization: Bearer` header, else the `token` query
/// parameter, percent-decoded (`%2B` is `+`).
fn given_token(request: &Request) -> Option<Cow<'_, str>> {
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        })
        .map(|t| Cow::Borrowed(t.trim()));
    from_header.or_else(|| {
        let query = request.uri().query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value)
    })
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"smarty\""),
    );
    response
}

/// Compares in constant time (`subtle`), so the time taken does not tell how much of a guess
/// was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }

    fn token_of(uri: &str, authorization: Option<&str>) -> Option<String> {
        let mut request = Request::builder().uri(uri);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let request = request.body(axum::body::Body::empty()).unwrap();
        given_token(&request).map(Cow::into_owned)
    }

    #[test]
    fn tokens_are_found_and_decoded() {
        assert_eq!(
            token_of("/api/stream?meter=home&token=a%2Bb%2Fc%3D%3D", None).as_deref(),
            Some("a+b/c==")
        );
        assert_eq!(
            token_of("/api/meters?tokenx=1&token=plain", None).as_deref(),
            Some("plain")
        );
        assert_eq!(
            token_of("/api/meters", Some("bearer  abc ")).as_deref(),
            Some("abc")
        );
        assert_eq!(token_of("/api/meters", Some("Basic abc")), None);
        assert_eq!(token_of("/api/meters?x=token", None), None);
    }
}
