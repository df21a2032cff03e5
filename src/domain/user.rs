//! Users: synchronised from the customer's backend, referenced by conversations and messages.

use std::collections::BTreeSet;

use super::{ids::UserId, Custom, CustomPatch, Field, Millis, ValidationError};

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub email: Option<Vec<String>>,
    pub phone: Option<Vec<String>>,
    pub photo_url: Option<String>,
    pub locale: Option<String>,
    /// `None` reads as `"default"`.
    pub role: Option<String>,
    pub welcome_message: Option<String>,
    pub custom: Custom,
    /// Registered push devices such as `fcm:abc` or `apns:def`.
    pub push_tokens: Option<BTreeSet<String>>,
    pub created_at: Millis,
}

/// A `PUT /users/{id}` body: absent fields stay, `null` clears, `custom` and `pushTokens` merge key by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserPatch {
    pub name: Option<String>,
    pub email: Field<Vec<String>>,
    pub phone: Field<Vec<String>>,
    pub photo_url: Field<String>,
    pub locale: Field<String>,
    pub role: Field<String>,
    pub welcome_message: Field<String>,
    /// `Clear` removes every key; `Set` merges, where a `None` value deletes that key.
    pub custom: Field<CustomPatch>,
    /// `Clear` unregisters every device; `Set` registers (`true`) or unregisters (`None`) one device each.
    pub push_tokens: Field<std::collections::BTreeMap<String, bool>>,
}

impl UserPatch {
    /// Creates the user this patch describes, or explains why it cannot (TalkJS: `name` is required on create).
    pub fn create(self, id: UserId, now: Millis) -> Result<User, ValidationError> {
        let name = self.name.clone().ok_or_else(|| ValidationError::new("name", "is required when creating a user"))?;
        let mut user = User {
            id,
            name,
            email: None,
            phone: None,
            photo_url: None,
            locale: None,
            role: None,
            welcome_message: None,
            custom: Custom::new(),
            push_tokens: None,
            created_at: now,
        };
        self.apply(&mut user);
        Ok(user)
    }

    pub fn apply(self, user: &mut User) {
        if let Some(name) = self.name {
            user.name = name;
        }
        user.email = self.email.apply(user.email.take());
        user.phone = self.phone.apply(user.phone.take());
        user.photo_url = self.photo_url.apply(user.photo_url.take());
        user.locale = self.locale.apply(user.locale.take());
        user.role = self.role.apply(user.role.take());
        user.welcome_message = self.welcome_message.apply(user.welcome_message.take());
        match self.custom {
            Field::Unchanged => {}
            Field::Clear => user.custom.clear(),
            Field::Set(patch) => super::conversation::merge_custom(&mut user.custom, patch),
        }
        match self.push_tokens {
            Field::Unchanged => {}
            Field::Clear => user.push_tokens = None,
            Field::Set(patch) => {
                let mut tokens = user.push_tokens.take().unwrap_or_default();
                for (token, register) in patch {
                    if register {
                        tokens.insert(token);
                    } else {
                        tokens.remove(&token);
                    }
                }
                user.push_tokens = Some(tokens);
            }
        }
    }
}
