//! User tokens: the JWTs a client presents to open a WebSocket session or to replace its token (`updateToken`),
//! HS256-signed with the app's secret. Kept apart from `api` (which takes app credentials) so that every layer
//! that meets a user token verifies it the same way.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::ids::{AppId, UserId};

/// How far past `exp`, or before `nbf`, a token is still taken: none, for user tokens and app tokens alike. A
/// token is valid exactly in the window its claims name; issuers whose clocks drift should leave a margin in them.
pub const JWT_LEEWAY_SECONDS: u64 = 0;

/// What a verified user token says.
#[derive(Clone, Debug)]
pub struct UserClaims {
    pub user_id: UserId,
    /// `exp`, in Unix seconds, if the token has one.
    pub expires_at: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserTokenClaims {
    token_type: String,
    sub: String,
    exp: Option<u64>,
}

/// Verifies a user token: HS256 signed with the app's secret, `tokenType: "user"`, `iss` = appId, `sub` = the
/// user id; `exp` is optional and `nbf` is honoured.
pub fn verify_user_token(app_id: &AppId, secret: &str, token: &str) -> Result<UserClaims, String> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[app_id.as_str()]);
    validation.set_required_spec_claims(&["iss", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = JWT_LEEWAY_SECONDS;
    let claims =
        jsonwebtoken::decode::<UserTokenClaims>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation)
            .map_err(|error| format!("invalid user token: {error}"))?
            .claims;
    if claims.token_type != "user" {
        return Err("invalid user token: tokenType must be \"user\"".into());
    }
    let user_id = UserId::parse(&claims.sub).map_err(|error| format!("invalid user token: {error}"))?;
    Ok(UserClaims { user_id, expires_at: claims.exp })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MintedClaims<'a> {
    token_type: &'static str,
    iss: &'a str,
    sub: &'a str,
    exp: u64,
}

/// A user token for `user` of `app_id`, signed with the app's secret, valid until `expires_at` (Unix seconds):
/// what an app's backend issues, and what `natter token` prints for trying the socket from a terminal.
pub fn mint_user_token(app_id: &AppId, secret: &str, user: &UserId, expires_at: u64) -> String {
    let claims = MintedClaims { token_type: "user", iss: app_id.as_str(), sub: user.as_str(), exp: expires_at };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("HS256 tokens always encode")
}
