//! Validates server frames against `proto/schema/`, and checks the schemas themselves.

use std::{collections::HashMap, sync::OnceLock};

use serde_json::Value;

pub const SERVER_FRAMES: &[&str] = &[
    "ok",
    "error",
    "snapshot",
    "resumed",
    "page",
    "event",
    "user",
    "subscriptionError",
    "conversation",
    "participants",
    "typing",
    "online",
    "conversations",
];
pub const CLIENT_FRAMES: &[&str] = &[
    "subscribeMessages",
    "loadMore",
    "unsubscribe",
    "updateToken",
    "sendMessage",
    "editMessage",
    "deleteMessage",
    "deleteMessageFields",
    "addReaction",
    "removeReaction",
    "markAsRead",
    "subscribeUser",
    "unsubscribeUser",
    "subscribeConversation",
    "unsubscribeConversation",
    "subscribeParticipants",
    "loadMoreParticipants",
    "unsubscribeParticipants",
    "subscribeTyping",
    "unsubscribeTyping",
    "markAsTyping",
    "subscribeOnline",
    "unsubscribeOnline",
    "subscribeConversations",
    "loadMoreConversations",
    "unsubscribeConversations",
];

fn schema(name: &str) -> Value {
    let path = format!("{}/proto/schema/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn validators() -> &'static HashMap<String, jsonschema::Validator> {
    static VALIDATORS: OnceLock<HashMap<String, jsonschema::Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let common = schema("common");
        let common_id = common["$id"].as_str().unwrap().to_owned();
        SERVER_FRAMES
            .iter()
            .chain(CLIENT_FRAMES)
            .map(|name| {
                let validator = jsonschema::options()
                    .with_resource(common_id.clone(), jsonschema::Resource::from_contents(common.clone()))
                    .build(&schema(name))
                    .unwrap_or_else(|error| panic!("schema {name}: {error}"));
                (name.to_string(), validator)
            })
            .collect()
    })
}

/// Checks a frame against the schema its `type` names.
pub fn validate_frame(text: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(text).map_err(|error| format!("not JSON ({error}): {text}"))?;
    let kind = value["type"].as_str().ok_or_else(|| format!("no type: {text}"))?;
    let validator = validators().get(kind).ok_or_else(|| format!("no schema for type {kind:?}: {text}"))?;
    let errors: Vec<String> =
        validator.iter_errors(&value).map(|error| format!("{} at {}", error, error.instance_path())).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{kind} frame breaks its schema: {}\n{text}", errors.join("; ")))
    }
}

#[test]
fn every_schema_compiles() {
    assert_eq!(validators().len(), SERVER_FRAMES.len() + CLIENT_FRAMES.len());
}

#[test]
fn the_schemas_refuse_frames_that_break_them() {
    assert!(validate_frame(r#"{"type":"ok","id":"1","result":{}}"#).is_ok());
    assert!(validate_frame(r#"{"type":"ok","result":{}}"#).is_err(), "missing id");
    assert!(validate_frame(r#"{"type":"error","id":null,"errorCode":"bad code","reasons":["x"]}"#).is_err());
    assert!(
        validate_frame(r#"{"type":"snapshot","conversationId":"c","seq":1,"messages":null,"loadedAll":true}"#).is_ok()
    );
    assert!(validate_frame(r#"{"type":"event","conversationId":"c","seq":1,"event":{"kind":"nope"}}"#).is_err());
    assert!(validate_frame(r#"{"type":"subscribeMessages","id":"1","conversationId":"c","limit":101}"#).is_err());
}

#[test]
fn every_example_frame_matches_its_schema_and_every_frame_type_has_an_example() {
    let dir = format!("{}/proto/examples", env!("CARGO_MANIFEST_DIR"));
    let mut types = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        validate_frame(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let value: Value = serde_json::from_str(&text).unwrap();
        types.insert(value["type"].as_str().unwrap().to_owned());
    }
    for name in SERVER_FRAMES.iter().chain(CLIENT_FRAMES) {
        assert!(types.contains(*name), "no example of {name} in proto/examples");
    }
}

#[test]
fn example_client_frames_parse_as_the_server_reads_them() {
    let dir = format!("{}/proto/examples", env!("CARGO_MANIFEST_DIR"));
    for name in CLIENT_FRAMES {
        let text = std::fs::read_to_string(format!("{dir}/{name}.json")).unwrap();
        natter::realtime::frames::parse_client_frame(&text).unwrap_or_else(|error| panic!("{name}: {}", error.reason));
    }
}
