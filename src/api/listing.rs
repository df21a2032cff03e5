//! Query parameters of the list endpoints, parsed and checked in one place (reference §1.0 and §5 #1).

use serde::Deserialize;

use crate::http::error::ApiError;
use crate::{
    domain::limits::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT},
    domain::{ids::ConversationId, Millis},
    store::{ConversationQuery, Direction, OrderBy, Page},
    wire::filter::parse_conversation_filter,
};

/// Every list parameter, as text, so that each bad value gets its own clear error.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    limit: Option<String>,
    starting_after: Option<String>,
    offset_ts: Option<String>,
    order_by: Option<String>,
    order_direction: Option<String>,
    last_message_before: Option<String>,
    last_message_after: Option<String>,
    filter: Option<String>,
    unreads_only: Option<String>,
}

pub fn page(params: &ListParams) -> Result<Page, ApiError> {
    Ok(Page { limit: limit(params.limit.as_deref())?, starting_after: params.starting_after.clone() })
}

fn limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PAGE_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::bad_request(
            "INVALID_LIMIT",
            format!("limit must be a whole number from 1 to {MAX_PAGE_LIMIT}, not {raw:?}"),
        )),
    }
}

fn millis(name: &str, raw: Option<&str>) -> Result<Option<Millis>, ApiError> {
    raw.map(|raw| {
        raw.parse::<Millis>().map_err(|_| {
            ApiError::bad_request("INVALID_QUERY", format!("{name} must be a Unix time in milliseconds, not {raw:?}"))
        })
    })
    .transpose()
}

/// Parses a conversation listing. `for_user` allows the per-user fields (`unreadsOnly`, and the filter's
/// `access`, `isUnread` and `joinedAt`), which have no meaning in the app-wide list.
pub fn conversation_query(params: &ListParams, for_user: bool) -> Result<ConversationQuery, ApiError> {
    let order_by = match params.order_by.as_deref() {
        None | Some("lastActivity") => OrderBy::LastActivity,
        Some("createdAt") => OrderBy::CreatedAt,
        Some(other) => {
            return Err(ApiError::bad_request(
                "INVALID_QUERY",
                format!("orderBy must be \"lastActivity\" or \"createdAt\", not {other:?}"),
            ))
        }
    };
    let direction = match params.order_direction.as_deref() {
        None => Direction::Desc,
        Some(raw) if raw.eq_ignore_ascii_case("desc") => Direction::Desc,
        Some(raw) if raw.eq_ignore_ascii_case("asc") => Direction::Asc,
        Some(other) => {
            return Err(ApiError::bad_request(
                "INVALID_QUERY",
                format!("orderDirection must be \"DESC\" or \"ASC\", not {other:?}"),
            ))
        }
    };
    let filter = match params.filter.as_deref() {
        Some(raw) => {
            let filter = parse_conversation_filter(raw)
                .map_err(|error| ApiError::bad_request("INVALID_FILTER", error.to_string()))?;
            if !for_user && filter.needs_participant() {
                return Err(ApiError::bad_request(
                    "INVALID_FILTER",
                    "access, isUnread and joinedAt describe one user's participation: \
                     filter on them in GET /users/{userId}/conversations",
                ));
            }
            Some(filter)
        }
        None => None,
    };
    let unreads_only = match params.unreads_only.as_deref() {
        None | Some("false") => false,
        Some("true") if for_user => true,
        Some("true") => {
            return Err(ApiError::bad_request("INVALID_QUERY", "unreadsOnly applies to a user's conversations"))
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                "INVALID_QUERY",
                format!("unreadsOnly must be true or false, not {other:?}"),
            ))
        }
    };
    let starting_after = params
        .starting_after
        .as_deref()
        .map(ConversationId::parse)
        .transpose()
        .map_err(|error| ApiError::bad_request("INVALID_QUERY", format!("startingAfter: {}", error.reason)))?;
    Ok(ConversationQuery {
        limit: limit(params.limit.as_deref())?,
        starting_after,
        offset_ts: millis("offsetTs", params.offset_ts.as_deref())?,
        order_by,
        direction,
        last_message_before: millis("lastMessageBefore", params.last_message_before.as_deref())?,
        last_message_after: millis("lastMessageAfter", params.last_message_after.as_deref())?,
        filter,
        unreads_only,
    })
}
