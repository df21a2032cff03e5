//! `/users`: create or patch one user or a batch, read, list, and a user's conversations.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde::Deserialize;

use super::{
    auth::AuthenticatedApp,
    listing::{conversation_query, page, ListParams},
    Empty,
};
use crate::http::{
    error::ApiError,
    extract::{AppJson, AppPath, AppQuery},
};
use crate::{
    app::{now_millis, AppState},
    domain::{
        ids::UserId, limits::MAX_USERS_PER_BATCH, message::validate_custom, user::UserPatch, Field, Rejection,
        ValidationError,
    },
    wire::{self, ListJson, UserConversationJson, UserJson},
};

/// One string or a list of strings, as `email` and `phone` accept.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// The `UserUpsert` body of reference §1.1.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserUpsert {
    name: Option<String>,
    #[serde(default, deserialize_with = "wire::field")]
    email: Field<OneOrMany>,
    #[serde(default, deserialize_with = "wire::field")]
    phone: Field<OneOrMany>,
    #[serde(default, deserialize_with = "wire::field")]
    photo_url: Field<String>,
    #[serde(default, deserialize_with = "wire::field")]
    locale: Field<String>,
    #[serde(default, deserialize_with = "wire::field")]
    role: Field<String>,
    #[serde(default, deserialize_with = "wire::field")]
    welcome_message: Field<String>,
    #[serde(default, deserialize_with = "wire::field")]
    custom: Field<BTreeMap<String, Option<String>>>,
    #[serde(default, deserialize_with = "wire::field")]
    push_tokens: Field<BTreeMap<String, Option<bool>>>,
}

fn list_field(field: Field<OneOrMany>) -> Field<Vec<String>> {
    match field {
        Field::Unchanged => Field::Unchanged,
        Field::Clear => Field::Clear,
        Field::Set(value) => Field::Set(value.into_vec()),
    }
}

impl UserUpsert {
    fn into_patch(self) -> Result<UserPatch, ValidationError> {
        if let Some(name) = &self.name {
            if name.trim().is_empty() {
                return Err(ValidationError::new("name", "must not be empty"));
            }
        }
        if let Field::Set(custom) = &self.custom {
            validate_custom(custom.iter().map(|(key, value)| (key, value.as_ref())))?;
        }
        Ok(UserPatch {
            name: self.name,
            email: list_field(self.email),
            phone: list_field(self.phone),
            photo_url: self.photo_url,
            locale: self.locale,
            role: self.role,
            welcome_message: self.welcome_message,
            custom: self.custom,
            push_tokens: match self.push_tokens {
                Field::Unchanged => Field::Unchanged,
                Field::Clear => Field::Clear,
                Field::Set(tokens) => {
                    Field::Set(tokens.into_iter().map(|(token, register)| (token, register == Some(true))).collect())
                }
            },
        })
    }
}

pub async fn put_user(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, user_id)): AppPath<(String, String)>,
    AppJson(body): AppJson<UserUpsert>,
) -> Result<Empty, ApiError> {
    let user_id = UserId::parse(&user_id)?;
    let patch = body.into_patch()?;
    state.store.upsert_users(&app, vec![(user_id, patch)], now_millis()).await?;
    Ok(Empty)
}

/// `PUT /users`: `{userId: UserUpsert}`, at most 100, all or nothing.
pub async fn put_users(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppJson(body): AppJson<BTreeMap<String, UserUpsert>>,
) -> Result<Empty, ApiError> {
    if body.len() > MAX_USERS_PER_BATCH {
        return Err(Rejection::invalid(
            "",
            format!("a batch holds at most {MAX_USERS_PER_BATCH} users, this one has {}", body.len()),
        )
        .into());
    }
    let mut errors = Vec::new();
    let mut users = Vec::with_capacity(body.len());
    for (raw_id, upsert) in body {
        let at = format!("[{raw_id:?}]");
        match UserId::parse(&raw_id).and_then(|id| Ok((id, upsert.into_patch()?))) {
            Ok(user) => users.push(user),
            Err(error) => errors.push(error.at(&at)),
        }
    }
    if !errors.is_empty() {
        return Err(Rejection::InvalidBatch(errors).into());
    }
    if !users.is_empty() {
        state.store.upsert_users(&app, users, now_millis()).await?;
    }
    Ok(Empty)
}

pub async fn get_user(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, user_id)): AppPath<(String, String)>,
) -> Result<Response, ApiError> {
    let user_id = UserId::parse(&user_id)?;
    let user = state.store.user(&app, &user_id).await?.ok_or(Rejection::UserNotFound(user_id))?;
    Ok(Json(UserJson::new(&user)).into_response())
}

/// Users in id order; `startingAfter` is a user id.
pub async fn list_users(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Response, ApiError> {
    let users = state.store.users(&app, page(&params)?).await?;
    let data: Vec<_> = users.iter().map(UserJson::new).collect();
    Ok(Json(ListJson { data }).into_response())
}

pub async fn list_user_conversations(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, user_id)): AppPath<(String, String)>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Response, ApiError> {
    let user_id = UserId::parse(&user_id)?;
    let query = conversation_query(&params, true)?;
    let entries = state.store.user_conversations(&app, &user_id, query).await?;
    let data: Vec<_> = entries
        .iter()
        .map(|entry| UserConversationJson::new(&entry.view, &entry.participant, &app, &state.links))
        .collect();
    Ok(Json(ListJson { data }).into_response())
}
