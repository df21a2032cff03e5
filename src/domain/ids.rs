//! Identifier newtypes, validated once at the edge. User and conversation ids are chosen by the customer; message
//! ids and file ids are generated here.

use std::fmt;

use rand::{distr::Alphanumeric, Rng};

use super::{limits::MAX_ID_CHARS, ValidationError};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Accepts any non-empty string of at most `MAX_ID_CHARS` characters without control characters.
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                check_id(raw, $field).map(|()| Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Wraps a value read back from the store, which only holds ids that were parsed on the way in.
            pub fn from_trusted(raw: String) -> Self {
                Self(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// The tenant: every resource lives under one app.
    AppId,
    "appId"
);
string_id!(UserId, "userId");
string_id!(ConversationId, "conversationId");
string_id!(
    /// `msg_` followed by 22 base62 characters when generated here.
    MessageId,
    "messageId"
);

impl MessageId {
    pub fn generate() -> Self {
        Self(format!("msg_{}", random_base62(22)))
    }
}

/// Random base62 text from the thread-local CSPRNG: used for message ids, secrets and file ids.
pub fn random_base62(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

fn check_id(raw: &str, field: &str) -> Result<(), ValidationError> {
    if raw.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if raw.chars().count() > MAX_ID_CHARS {
        return Err(ValidationError::new(field, format!("must be at most {MAX_ID_CHARS} characters")));
    }
    if raw.chars().any(char::is_control) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(())
}

/// A per-conversation sequence number. The store assigns it at commit, one per event, starting at 1; a
/// conversation's events are totally ordered by it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub i64);

impl Seq {
    /// Whether `seqs` are exactly the run `after + 1 ..= up_to`, in order, none missing or repeated.
    pub fn is_whole_run(seqs: impl ExactSizeIterator<Item = Seq>, after: Seq, up_to: Seq) -> bool {
        seqs.len() as i64 == up_to.0 - after.0
            && seqs.enumerate().all(|(index, seq)| seq.0 == after.0 + 1 + index as i64)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_run_has_every_seq_once_in_order() {
        let run = |seqs: &[i64]| Seq::is_whole_run(seqs.iter().map(|&s| Seq(s)), Seq(3), Seq(6));
        assert!(run(&[4, 5, 6]));
        assert!(!run(&[4, 6]) && !run(&[4, 5]) && !run(&[4, 6, 5]) && !run(&[4, 5, 5]));
        assert!(Seq::is_whole_run(std::iter::empty(), Seq(6), Seq(6)));
    }

    #[test]
    fn generated_message_ids_have_the_talkjs_shape() {
        let id = MessageId::generate();
        assert!(id.as_str().starts_with("msg_"));
        assert_eq!(id.as_str().len(), 4 + 22);
        assert!(id.as_str()[4..].chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn ids_reject_empty_long_and_control_characters() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"x".repeat(256)).is_err());
        assert!(UserId::parse("a\nb").is_err());
        assert!(UserId::parse("ünïcödé and spaces/ok").is_ok());
    }
}
