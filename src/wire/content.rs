//! The content blocks a client sends over the socket (`sendMessage`, `editMessage`), parsed into domain text nodes.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::domain::{
    content::{self, Links, MarkupKind, TextNode},
    message::{Location, MessageBody},
    ValidationError,
};

/// Parses the content a client sends: one block, given as a block object or as an array holding one block (the
/// Data API's shape; a message has a single block today). File blocks carry the `attachmentToken` of
/// `POST /files`, also accepted under the older name `fileToken`.
pub fn parse_send_content(content: &Value) -> Result<SendContent, ValidationError> {
    let block = match content {
        Value::Object(_) => content,
        Value::Array(blocks) if blocks.len() == 1 => &blocks[0],
        _ => {
            return Err(ValidationError::new(
                "content",
                "must be one block (an object with a \"type\"), or an array holding exactly one block",
            ))
        }
    };
    if !block.is_object() {
        return Err(ValidationError::new("content[0]", "a block is an object with a \"type\""));
    }
    let kind = block.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "text" => {
            let children = block
                .get("children")
                .and_then(Value::as_array)
                .ok_or_else(|| ValidationError::new("content[0].children", "must be an array of text nodes"))?;
            let nodes = children
                .iter()
                .enumerate()
                .map(|(index, node)| parse_node(node, &format!("content[0].children[{index}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SendContent::Text(nodes))
        }
        "file" => {
            let token = ["attachmentToken", "fileToken"]
                .iter()
                .find_map(|name| block.get(name).and_then(Value::as_str))
                .ok_or_else(|| {
                    ValidationError::new(
                        "content[0].attachmentToken",
                        "is required for a file block (from POST /files)",
                    )
                })?;
            Ok(SendContent::File(token.to_owned()))
        }
        "location" => {
            let number = |field: &str| {
                block
                    .get(field)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| ValidationError::new(format!("content[0].{field}"), "must be a number"))
            };
            Ok(SendContent::Location(Location::parse(number("latitude")?, number("longitude")?)?))
        }
        other => Err(ValidationError::new("content[0].type", format!("unknown block type {other:?}"))),
    }
}

/// What a client's content blocks amount to.
#[derive(Debug, PartialEq)]
pub enum SendContent {
    Text(Vec<TextNode>),
    File(String),
    Location(Location),
}

impl SendContent {
    /// The stored body: text nodes are written as markup that parses back (without links) to exactly these nodes,
    /// escaping what must be, so the message arrives as it was sent and its REST `text` says the same.
    pub fn into_body(self) -> Result<MessageBody, ValidationError> {
        match self {
            SendContent::Text(nodes) => {
                content::check_user_nodes(&nodes)?;
                let text = content::exact_markup(&nodes, Links::Refused).ok_or_else(|| {
                    ValidationError::new(
                        "content",
                        "cannot be kept as sent: bold, italic and strikethrough must hold text that does not start or \
                         end with white space, and two bullet lists need text between them",
                    )
                })?;
                if text.is_empty() {
                    return Err(ValidationError::new("content", "a text block must not be empty"));
                }
                Ok(MessageBody::Text(text))
            }
            SendContent::File(token) => Ok(MessageBody::Attachment { token }),
            SendContent::Location(location) => Ok(MessageBody::Location(location)),
        }
    }
}

fn parse_node(node: &Value, at: &str) -> Result<TextNode, ValidationError> {
    if let Some(text) = node.as_str() {
        return Ok(TextNode::Plain(text.to_owned()));
    }
    let kind = node
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ValidationError::new(at, "a text node is a string or an object with a \"type\""))?;
    let string = |field: &str| {
        node.get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ValidationError::new(format!("{at}.{field}"), "must be a string"))
    };
    let children = || -> Result<Vec<TextNode>, ValidationError> {
        let children = node
            .get("children")
            .and_then(Value::as_array)
            .ok_or_else(|| ValidationError::new(format!("{at}.children"), "must be an array"))?;
        children.iter().enumerate().map(|(i, child)| parse_node(child, &format!("{at}.children[{i}]"))).collect()
    };
    let params = || -> BTreeMap<String, String> {
        node.get("params")
            .and_then(Value::as_object)
            .map(|params| params.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect())
            .unwrap_or_default()
    };
    Ok(match kind {
        "bold" => TextNode::Markup { kind: MarkupKind::Bold, children: children()? },
        "italic" => TextNode::Markup { kind: MarkupKind::Italic, children: children()? },
        "strikethrough" => TextNode::Markup { kind: MarkupKind::Strikethrough, children: children()? },
        "bulletList" => TextNode::BulletList { children: children()? },
        "bulletPoint" => TextNode::BulletPoint { children: children()? },
        "codeSpan" => TextNode::CodeSpan { text: string("text")? },
        "link" => TextNode::Link { url: string("url")?, children: children()? },
        "actionLink" => TextNode::ActionLink { action: string("action")?, params: params(), children: children()? },
        "actionButton" => TextNode::ActionButton { action: string("action")?, params: params(), children: children()? },
        "autoLink" => TextNode::AutoLink { url: string("url")?, text: string("text")? },
        "customEmoji" => TextNode::CustomEmoji { text: string("text")? },
        "mention" => TextNode::Mention { id: string("id")?, text: string("text")? },
        other => return Err(ValidationError::new(format!("{at}.type"), format!("unknown text node type {other:?}"))),
    })
}
