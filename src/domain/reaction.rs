//! Emoji reactions: which emoji are valid, their normal form, and the per-message summary.

use super::{
    conversation::{check_participant, Access},
    ids::UserId,
    Rejection, ValidationError,
};

/// A message carries at most this many distinct emoji (reference §1.7).
pub const MAX_DISTINCT_EMOJI_PER_MESSAGE: usize = 50;
/// A custom emoji `:name:` has at most this many characters, colons included.
pub const MAX_CUSTOM_EMOJI_CHARS: usize = 50;

/// A valid reaction key: a Unicode emoji in its fully-qualified form, or a custom emoji `:name:`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Emoji(String);

impl Emoji {
    /// Normalises a Unicode emoji to the fully-qualified form of the Unicode emoji-test list, so that a thumbs-up
    /// with and without VS16 are one reaction. Custom emoji are taken as they are, apart from the length limit.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.len() >= 2 && raw.starts_with(':') && raw.ends_with(':') {
            let name = &raw[1..raw.len() - 1];
            if raw.chars().count() > MAX_CUSTOM_EMOJI_CHARS {
                return Err(ValidationError::new(
                    "emoji",
                    format!("custom emoji must be at most {MAX_CUSTOM_EMOJI_CHARS} characters"),
                ));
            }
            if name.is_empty() || name.contains(':') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ValidationError::new("emoji", "custom emoji must look like :name: with no spaces"));
            }
            return Ok(Self(raw.to_owned()));
        }
        let found = emojis::get(raw).or_else(|| emojis::get(&raw.replace('\u{fe0f}', "")));
        match found {
            Some(emoji) => Ok(Self(emoji.as_str().to_owned())),
            None => Err(ValidationError::new(
                "emoji",
                format!("{raw:?} is neither a single Unicode emoji nor a custom emoji like :name:"),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }
}

/// How one emoji stands on one message.
#[derive(Clone, Debug, PartialEq)]
pub struct ReactionSummary {
    pub emoji: Emoji,
    /// Who reacted with it, oldest first.
    pub users: Vec<UserId>,
}

/// Reactions are made and removed by participants (read-only ones too).
pub fn check_reactor(user: &UserId, access: Option<Access>) -> Result<(), Rejection> {
    check_participant("userId", user, access).map(drop)
}

/// Whether adding a reaction changes anything, given what the store holds: the same user's reaction with this
/// emoji (`already`), anyone's reaction with this emoji (`emoji_present`), and the message's distinct emoji.
/// Adding one that exists is a no-op; a new emoji beyond the cap is refused.
pub fn check_add(already: bool, emoji_present: bool, n_distinct_emoji: usize) -> Result<bool, Rejection> {
    if already {
        return Ok(false);
    }
    if !emoji_present && n_distinct_emoji >= MAX_DISTINCT_EMOJI_PER_MESSAGE {
        return Err(Rejection::TooManyReactions { max: MAX_DISTINCT_EMOJI_PER_MESSAGE });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_emoji_are_normalised_to_the_fully_qualified_form() {
        let thumbs = Emoji::parse("👍").unwrap();
        assert_eq!(Emoji::parse("👍\u{fe0f}").unwrap(), thumbs);
        // U+2764 HEAVY BLACK HEART is fully qualified only with VS16.
        assert_eq!(Emoji::parse("\u{2764}").unwrap().as_str(), "\u{2764}\u{fe0f}");
        assert_eq!(Emoji::parse("\u{2764}\u{fe0f}").unwrap().as_str(), "\u{2764}\u{fe0f}");
    }

    #[test]
    fn text_and_several_emoji_are_refused() {
        assert!(Emoji::parse("hello").is_err());
        assert!(Emoji::parse("👍👍").is_err());
        assert!(Emoji::parse("").is_err());
    }

    #[test]
    fn custom_emoji_are_limited_to_fifty_characters() {
        assert!(Emoji::parse(":cat-roomba:").is_ok());
        let longest = format!(":{}:", "a".repeat(48));
        assert!(Emoji::parse(&longest).is_ok());
        assert!(Emoji::parse(&format!(":{}:", "a".repeat(49))).is_err());
        assert!(Emoji::parse("::").is_err());
        assert!(Emoji::parse(":a b:").is_err());
    }

    #[test]
    fn adding_an_existing_reaction_changes_nothing_and_a_51st_emoji_is_refused() {
        assert_eq!(check_add(true, true, MAX_DISTINCT_EMOJI_PER_MESSAGE), Ok(false));
        assert_eq!(check_add(false, false, MAX_DISTINCT_EMOJI_PER_MESSAGE - 1), Ok(true));
        assert_eq!(check_add(false, true, MAX_DISTINCT_EMOJI_PER_MESSAGE), Ok(true), "an emoji already there");
        assert!(check_add(false, false, MAX_DISTINCT_EMOJI_PER_MESSAGE).is_err());
    }

    #[test]
    fn only_participants_react() {
        let alice = UserId::parse("alice").unwrap();
        assert!(check_reactor(&alice, Some(Access::Read)).is_ok());
        assert!(matches!(check_reactor(&alice, None), Err(Rejection::NotAParticipant { .. })));
    }
}
