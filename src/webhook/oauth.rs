//! OAuth2 client credentials: the token request body and the token response, as bytes (pure).
//! The worker sends the request and keeps the token (see `worker.rs`).

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt;

use serde::Serialize;

/// The JSON body POSTed to the token URL.
#[derive(Serialize)]
struct TokenRequest<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    audience: &'a str,
    grant_type: &'static str,
}

/// `{"client_id","client_secret","audience","grant_type":"client_credentials"}` as JSON.
pub(crate) fn token_request_body(client_id: &str, client_secret: &str, audience: &str) -> String {
    let request = TokenRequest {
        client_id,
        client_secret,
        audience,
        grant_type: "client_credentials",
    };
    serde_json::to_string(&request).unwrap_or_default()
}

/// Why a token response was not usable (never carries the response text: it may echo secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Not a JSON object.
    NotJson,
    /// No `access_token` string.
    NoAccessToken,
    /// The token is empty or has bytes that cannot go into an HTTP header.
    BadAccessToken,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotJson => "token response is not a JSON object",
            Self::NoAccessToken => "token response has no access_token",
            Self::BadAccessToken => "token response has an unusable access_token",
        })
    }
}

/// A parsed token response. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    /// Seconds; `None` when absent or not a non-negative integer.
    pub(crate) expires_in: Option<u64>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Parses `{"access_token": "...", "expires_in": N, "token_type": "Bearer"}`; `expires_in` may
/// also be a numeric string (some providers send one); `token_type` is not checked (the token
/// is always sent as a bearer token, as the original did).
pub(crate) fn parse_token_response(body: &[u8]) -> Result<TokenResponse, TokenError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| TokenError::NotJson)?;
    let object = value.as_object().ok_or(TokenError::NotJson)?;
    let token = object
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .ok_or(TokenError::NoAccessToken)?;
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::BadAccessToken);
    }
    let expires_in = object.get("expires_in").and_then(|v| match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    Ok(TokenResponse {
        access_token: token.to_owned(),
        expires_in,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn token_request_body_fields() {
        let body = token_request_body("id\"1", "s3cret", "https://aud");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["client_id"], "id\"1");
        assert_eq!(value["client_secret"], "s3cret");
        assert_eq!(value["audience"], "https://aud");
        assert_eq!(value["grant_type"], "client_credentials");
        assert_eq!(value.as_object().unwrap().len(), 4);
    }

    #[test]
    fn parse_token_response_cases() {
        let ok = |body: &str| parse_token_response(body.as_bytes());
        assert_eq!(
            ok(r#"{"access_token":"abc.def","expires_in":86400,"token_type":"Bearer"}"#),
            Ok(TokenResponse {
                access_token: "abc.def".into(),
                expires_in: Some(86400)
            })
        );
        assert_eq!(
            ok(r#"{"access_token":"t","expires_in":"60"}"#)
                .unwrap()
                .expires_in,
            Some(60)
        );
        assert_eq!(
            ok(r#"{"access_token":"t","expires_in":-5}"#)
                .unwrap()
                .expires_in,
            None
        );
        assert_eq!(ok(r#"{"access_token":"t"}"#).unwrap().expires_in, None);
        assert_eq!(ok("not json"), Err(TokenError::NotJson));
        assert_eq!(ok("[1]"), Err(TokenError::NotJson));
        assert_eq!(ok(r#"{"expires_in":5}"#), Err(TokenError::NoAccessToken));
        assert_eq!(ok(r#"{"access_token":5}"#), Err(TokenError::NoAccessToken));
        assert_eq!(
            ok(r#"{"access_token":""}"#),
            Err(TokenError::BadAccessToken)
        );
        assert_eq!(
            ok(r#"{"access_token":"a\r\nX-Evil: 1"}"#),
            Err(TokenError::BadAccessToken)
        );
        // `token_type` is informative only: the token is always sent as a bearer token.
        assert!(ok(r#"{"access_token":"t","token_type":"jwt"}"#).is_ok());
    }

    #[test]
    fn token_response_debug_redacts() {
        let parsed = parse_token_response(br#"{"access_token":"topsecret"}"#).unwrap();
        assert!(!format!("{parsed:?}").contains("topsecret"));
    }
}
