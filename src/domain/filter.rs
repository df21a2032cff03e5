//! The ConversationFilter of reference §3.10, as data, and its evaluation. `wire::filter` parses it from JSON.

use super::conversation::{Conversation, Participant};

/// The whole filter: one simple filter, or `["any", [...]]` which matches when any of its filters does.
#[derive(Clone, Debug, PartialEq)]
pub enum ConversationFilter {
    All(SimpleFilter),
    Any(Vec<SimpleFilter>),
}

/// All present conditions must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimpleFilter {
    pub access: Option<StringFilter>,
    pub custom: Vec<(String, CustomCondition)>,
    pub is_unread: Option<bool>,
    pub subject: Option<StringFilter>,
    pub last_activity_at: Option<NumberFilter>,
    pub created_at: Option<NumberFilter>,
    pub has_messages: Option<bool>,
    pub joined_at: Option<NumberFilter>,
}

/// Compares a nullable string: `None` stands for JSON `null` (a missing subject).
#[derive(Clone, Debug, PartialEq)]
pub enum StringFilter {
    Eq(Option<String>),
    Ne(Option<String>),
    OneOf(Vec<Option<String>>),
    NotOneOf(Vec<Option<String>>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum CustomCondition {
    Exists,
    NotExists,
    /// A missing key never matches `==` or `oneOf`, and always matches `!=` and `!oneOf`.
    Value(StringFilter),
}

/// `between` includes its low end and excludes its high end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumberFilter {
    Gt(f64),
    Lt(f64),
    Ge(f64),
    Le(f64),
    Between(f64, f64),
    NotBetween(f64, f64),
}

/// What a filter looks at: a conversation, and the participation of the user whose list it is, if any.
pub struct FilterSubject<'a> {
    pub conversation: &'a Conversation,
    pub participant: Option<&'a Participant>,
}

impl ConversationFilter {
    pub fn matches(&self, subject: &FilterSubject<'_>) -> bool {
        match self {
            ConversationFilter::All(filter) => filter.matches(subject),
            ConversationFilter::Any(filters) => filters.iter().any(|filter| filter.matches(subject)),
        }
    }

    /// Whether the filter reads per-user fields (`access`, `isUnread`, `joinedAt`), which only make sense in a
    /// user's conversation list.
    pub fn needs_participant(&self) -> bool {
        let needs =
            |filter: &SimpleFilter| filter.access.is_some() || filter.is_unread.is_some() || filter.joined_at.is_some();
        match self {
            ConversationFilter::All(filter) => needs(filter),
            ConversationFilter::Any(filters) => filters.iter().any(needs),
        }
    }
}

impl SimpleFilter {
    pub fn matches(&self, subject: &FilterSubject<'_>) -> bool {
        let conversation = subject.conversation;
        let participant = subject.participant;
        if let Some(access) = &self.access {
            if !participant.is_some_and(|p| access.matches(Some(p.access.as_str()))) {
                return false;
            }
        }
        if let Some(is_unread) = self.is_unread {
            if participant.map(|p| p.is_unread) != Some(is_unread) {
                return false;
            }
        }
        if let Some(joined_at) = &self.joined_at {
            if !participant.is_some_and(|p| joined_at.matches(p.joined_at as f64)) {
                return false;
            }
        }
        if let Some(subject_filter) = &self.subject {
            if !subject_filter.matches(conversation.subject.as_deref()) {
                return false;
            }
        }
        if let Some(has_messages) = self.has_messages {
            if conversation.last_message_at.is_some() != has_messages {
                return false;
            }
        }
        if let Some(created_at) = &self.created_at {
            if !created_at.matches(conversation.created_at as f64) {
                return false;
            }
        }
        if let Some(last_activity_at) = &self.last_activity_at {
            // Reference §3.10: the last message's time, falling back to when the user joined (or, in the app-wide
            // list, to when the conversation was created).
            let fallback = participant.map_or(conversation.created_at, |p| p.joined_at);
            if !last_activity_at.matches(conversation.last_message_at.unwrap_or(fallback) as f64) {
                return false;
            }
        }
        self.custom.iter().all(|(key, condition)| {
            let value = conversation.custom.get(key).map(String::as_str);
            match condition {
                CustomCondition::Exists => value.is_some(),
                CustomCondition::NotExists => value.is_none(),
                CustomCondition::Value(filter) => match value {
                    Some(value) => filter.matches(Some(value)),
                    None => matches!(filter, StringFilter::Ne(_) | StringFilter::NotOneOf(_)),
                },
            }
        })
    }
}

impl StringFilter {
    pub fn matches(&self, value: Option<&str>) -> bool {
        let same = |wanted: &Option<String>| wanted.as_deref() == value;
        match self {
            StringFilter::Eq(wanted) => same(wanted),
            StringFilter::Ne(wanted) => !same(wanted),
            StringFilter::OneOf(options) => options.iter().any(same),
            StringFilter::NotOneOf(options) => !options.iter().any(same),
        }
    }
}

impl NumberFilter {
    pub fn matches(&self, value: f64) -> bool {
        match *self {
            NumberFilter::Gt(bound) => value > bound,
            NumberFilter::Lt(bound) => value < bound,
            NumberFilter::Ge(bound) => value >= bound,
            NumberFilter::Le(bound) => value <= bound,
            NumberFilter::Between(low, high) => value >= low && value < high,
            NumberFilter::NotBetween(low, high) => !(value >= low && value < high),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ids::ConversationId, ids::Seq, Custom};

    fn conversation(custom: &[(&str, &str)], subject: Option<&str>) -> Conversation {
        Conversation {
            id: ConversationId::parse("c").unwrap(),
            subject: subject.map(str::to_owned),
            photo_url: None,
            welcome_messages: None,
            custom: custom.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Custom>(),
            created_at: 1000,
            last_message_at: None,
            last_seq: Seq(0),
        }
    }

    fn check(filter: SimpleFilter, conversation: &Conversation) -> bool {
        ConversationFilter::All(filter).matches(&FilterSubject { conversation, participant: None })
    }

    #[test]
    fn custom_conditions_treat_missing_keys_as_unequal() {
        let shoes = conversation(&[("category", "shoes")], None);
        let bare = conversation(&[], None);
        let eq = SimpleFilter {
            custom: vec![("category".into(), CustomCondition::Value(StringFilter::Eq(Some("shoes".into()))))],
            ..Default::default()
        };
        let ne = SimpleFilter {
            custom: vec![("category".into(), CustomCondition::Value(StringFilter::Ne(Some("shoes".into()))))],
            ..Default::default()
        };
        assert!(check(eq.clone(), &shoes));
        assert!(!check(eq, &bare));
        assert!(!check(ne.clone(), &shoes));
        assert!(check(ne, &bare));
    }

    #[test]
    fn between_includes_low_and_excludes_high() {
        assert!(NumberFilter::Between(10.0, 20.0).matches(10.0));
        assert!(!NumberFilter::Between(10.0, 20.0).matches(20.0));
        assert!(NumberFilter::NotBetween(10.0, 20.0).matches(20.0));
    }

    #[test]
    fn subject_filters_compare_null() {
        let untitled = conversation(&[], None);
        let filter = SimpleFilter { subject: Some(StringFilter::Eq(None)), ..Default::default() };
        assert!(check(filter, &untitled));
        let any = ConversationFilter::Any(vec![
            SimpleFilter { has_messages: Some(true), ..Default::default() },
            SimpleFilter { subject: Some(StringFilter::OneOf(vec![None])), ..Default::default() },
        ]);
        assert!(any.matches(&FilterSubject { conversation: &untitled, participant: None }));
    }
}
