//! Parses the JSON ConversationFilter of reference §3.10 into `domain::filter`. Every malformed part is refused
//! with a reason that names where it is.

use serde_json::Value;

use crate::domain::{
    filter::{ConversationFilter, CustomCondition, NumberFilter, SimpleFilter, StringFilter},
    ValidationError,
};

/// Parses `{...}` or `["any", [{...}, ...]]`.
pub fn parse_conversation_filter(raw: &str) -> Result<ConversationFilter, ValidationError> {
    let value: Value =
        serde_json::from_str(raw).map_err(|error| invalid("filter", format!("is not valid JSON: {error}")))?;
    match &value {
        Value::Object(_) => Ok(ConversationFilter::All(simple(&value, "filter")?)),
        Value::Array(items) => match items.as_slice() {
            [Value::String(any), Value::Array(filters)] if any == "any" => Ok(ConversationFilter::Any(
                filters
                    .iter()
                    .enumerate()
                    .map(|(index, filter)| simple(filter, &format!("filter[1][{index}]")))
                    .collect::<Result<_, _>>()?,
            )),
            _ => Err(invalid("filter", "an array filter must be [\"any\", [filter, ...]]")),
        },
        _ => Err(invalid("filter", "must be an object or [\"any\", [...]]")),
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ValidationError {
    ValidationError::new(field, reason)
}

fn simple(value: &Value, path: &str) -> Result<SimpleFilter, ValidationError> {
    let object = value.as_object().ok_or_else(|| invalid(path, "must be an object"))?;
    let mut filter = SimpleFilter::default();
    for (key, value) in object {
        let at = format!("{path}.{key}");
        match key.as_str() {
            "access" => {
                let parsed = string_filter(value, &at)?;
                let allowed = |v: &Option<String>| matches!(v.as_deref(), Some("ReadWrite" | "Read"));
                let ok = match &parsed {
                    StringFilter::Eq(v) | StringFilter::Ne(v) => allowed(v),
                    StringFilter::OneOf(vs) | StringFilter::NotOneOf(vs) => vs.iter().all(allowed),
                };
                if !ok {
                    return Err(invalid(&at, "access values must be \"ReadWrite\" or \"Read\""));
                }
                filter.access = Some(parsed);
            }
            "subject" => filter.subject = Some(string_filter(value, &at)?),
            "isUnread" => filter.is_unread = Some(boolean(value, &at)?),
            "hasMessages" => filter.has_messages = Some(boolean(value, &at)?),
            "createdAt" => filter.created_at = Some(number_filter(value, &at)?),
            "lastActivityAt" => filter.last_activity_at = Some(number_filter(value, &at)?),
            "joinedAt" => filter.joined_at = Some(number_filter(value, &at)?),
            "custom" => {
                let custom = value.as_object().ok_or_else(|| invalid(&at, "must be an object"))?;
                for (name, condition) in custom {
                    let at = format!("{at}.{name}");
                    let parsed = match condition {
                        Value::String(s) if s == "exists" => CustomCondition::Exists,
                        Value::String(s) if s == "!exists" => CustomCondition::NotExists,
                        other => CustomCondition::Value(string_filter(other, &at)?),
                    };
                    filter.custom.push((name.clone(), parsed));
                }
            }
            other => {
                return Err(invalid(
                    &at,
                    format!(
                        "unknown filter field {other:?} (known: access, custom, isUnread, subject, lastActivityAt, \
                         createdAt, hasMessages, joinedAt)"
                    ),
                ))
            }
        }
    }
    Ok(filter)
}

fn boolean(value: &Value, at: &str) -> Result<bool, ValidationError> {
    value.as_bool().ok_or_else(|| invalid(at, "must be true or false"))
}

fn nullable_string(value: &Value, at: &str) -> Result<Option<String>, ValidationError> {
    match value {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Null => Ok(None),
        _ => Err(invalid(at, "values must be strings (or null)")),
    }
}

fn string_filter(value: &Value, at: &str) -> Result<StringFilter, ValidationError> {
    let shape = || invalid(at, "must be [\"==\"|\"!=\", value] or [\"oneOf\"|\"!oneOf\", [values]]");
    let items = value.as_array().ok_or_else(shape)?;
    let [Value::String(operator), operand] = items.as_slice() else {
        return Err(shape());
    };
    let list = |operand: &Value| -> Result<Vec<Option<String>>, ValidationError> {
        operand.as_array().ok_or_else(shape)?.iter().map(|item| nullable_string(item, at)).collect()
    };
    Ok(match operator.as_str() {
        "==" => StringFilter::Eq(nullable_string(operand, at)?),
        "!=" => StringFilter::Ne(nullable_string(operand, at)?),
        "oneOf" => StringFilter::OneOf(list(operand)?),
        "!oneOf" => StringFilter::NotOneOf(list(operand)?),
        _ => return Err(shape()),
    })
}

fn number_filter(value: &Value, at: &str) -> Result<NumberFilter, ValidationError> {
    let shape =
        || invalid(at, "must be [\">\"|\"<\"|\">=\"|\"<=\", number] or [\"between\"|\"!between\", [low, high]]");
    let items = value.as_array().ok_or_else(shape)?;
    let [Value::String(operator), operand] = items.as_slice() else {
        return Err(shape());
    };
    let number = |value: &Value| value.as_f64().ok_or_else(shape);
    let range = |value: &Value| -> Result<(f64, f64), ValidationError> {
        match value.as_array().map(Vec::as_slice) {
            Some([low, high]) => Ok((number(low)?, number(high)?)),
            _ => Err(shape()),
        }
    };
    Ok(match operator.as_str() {
        ">" => NumberFilter::Gt(number(operand)?),
        "<" => NumberFilter::Lt(number(operand)?),
        ">=" => NumberFilter::Ge(number(operand)?),
        "<=" => NumberFilter::Le(number(operand)?),
        "between" => {
            let (low, high) = range(operand)?;
            NumberFilter::Between(low, high)
        }
        "!between" => {
            let (low, high) = range(operand)?;
            NumberFilter::NotBetween(low, high)
        }
        _ => return Err(shape()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_example_and_the_any_combinator() {
        let filter = parse_conversation_filter(r#"{"custom":{"category":["==","shoes"]}}"#).unwrap();
        assert!(matches!(filter, ConversationFilter::All(ref f) if f.custom.len() == 1));
        let any = parse_conversation_filter(r#"["any",[{"hasMessages":true},{"custom":{"x":"exists"}}]]"#).unwrap();
        assert!(matches!(any, ConversationFilter::Any(ref fs) if fs.len() == 2));
    }

    #[test]
    fn malformed_filters_name_the_offending_part() {
        for (raw, field) in [
            ("{", "filter"),
            (r#"{"custom":{"a":["~=","b"]}}"#, "filter.custom.a"),
            (r#"{"createdAt":[">","soon"]}"#, "filter.createdAt"),
            (r#"{"colour":["==","red"]}"#, "filter.colour"),
            (r#"["all",[]]"#, "filter"),
            (r#"{"access":["==","Admin"]}"#, "filter.access"),
        ] {
            assert_eq!(parse_conversation_filter(raw).unwrap_err().field, field, "{raw}");
        }
    }
}
