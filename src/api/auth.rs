//! Who may call `/v1/{appId}/...`: the app's secret as a bearer token, or an app JWT (HS256, signed with the
//! secret, `tokenType: "app"`, `iss` = appId, `exp` required). An unknown app is a 404; a missing or wrong
//! credential a 401. A secret never opens another app.

use axum::{
    extract::{Request, State},
    http::header::AUTHORIZATION,
    middleware::Next,
    response::Response,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::http::error::ApiError;
use crate::{app::AppState, domain::ids::AppId};

/// The authenticated app, put in the request extensions for handlers.
#[derive(Clone, Debug)]
pub struct AuthenticatedApp(pub AppId);

/// Middleware for every authenticated route.
pub async fn require_app(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let app_id = app_id_from_path(request.uri().path())?;
    let secret = state.apps.get(&app_id).ok_or_else(|| ApiError::AppNotFound(app_id.to_string()))?;
    let header = request.headers().get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("missing Authorization header (use: Bearer <secret or app JWT>)".into())
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be \"Bearer <token>\"".into()))?
        .trim();
    check_app_credential(&app_id, secret, token)?;
    state.limits.check_rest(&app_id).map_err(ApiError::RateLimited)?;
    request.extensions_mut().insert(AuthenticatedApp(app_id));
    Ok(next.run(request).await)
}

fn app_id_from_path(path: &str) -> Result<AppId, ApiError> {
    let raw = path.strip_prefix("/v1/").and_then(|rest| rest.split('/').next()).unwrap_or_default();
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("INVALID_PATH", "the app id is not valid UTF-8"))?;
    AppId::parse(&decoded).map_err(|error| ApiError::bad_request("INVALID_PATH", error.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppClaims {
    token_type: String,
}

fn check_app_credential(app_id: &AppId, secret: &str, token: &str) -> Result<(), ApiError> {
    // A JWT has exactly two dots; a secret has none.
    if token.matches('.').count() == 2 {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[app_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        validation.leeway = crate::token::JWT_LEEWAY_SECONDS;
        let claims =
            jsonwebtoken::decode::<AppClaims>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation)
                .map_err(|error| ApiError::Unauthorized(format!("invalid app token: {error}")))?
                .claims;
        if claims.token_type != "app" {
            return Err(ApiError::Unauthorized("invalid app token: tokenType must be \"app\"".into()));
        }
        return Ok(());
    }
    if bool::from(token.as_bytes().ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid secret for this app".into()))
    }
}
