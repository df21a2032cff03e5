//! Message content: TalkJS markup text parsed into content blocks and text nodes (reference §1.13, §4.7), the
//! reverse (nodes back to markup), `plaintext` (§4.8), and the rules for what users may send.
//!
//! Parse order follows §1.13: bullet lists, code spans, then per line: mentions, custom emoji, `<url|text>` links,
//! action links and buttons (only when links are allowed), bold/italic/strikethrough, and autolinks.
//!
//! Natter adds one thing to TalkJS markup, so that content users send over the socket can be stored as markup and
//! read back exactly as it was sent: a backslash before one of ``\ * _ ~ ` < > | - + . @ :`` stands for that
//! character, literally (`\*not bold\*`). `exact_markup` writes nodes with escapes where they are needed.

use std::collections::BTreeMap;

use super::ValidationError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkupKind {
    Bold = 0,
    Italic = 1,
    Strikethrough = 2,
}

impl MarkupKind {
    fn delimiter(self) -> char {
        match self {
            MarkupKind::Bold => '*',
            MarkupKind::Italic => '_',
            MarkupKind::Strikethrough => '~',
        }
    }

    fn from_delimiter(c: char) -> Option<Self> {
        match c {
            '*' => Some(MarkupKind::Bold),
            '_' => Some(MarkupKind::Italic),
            '~' => Some(MarkupKind::Strikethrough),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TextNode {
    Plain(String),
    Markup { kind: MarkupKind, children: Vec<TextNode> },
    BulletList { children: Vec<TextNode> },
    BulletPoint { children: Vec<TextNode> },
    CodeSpan { text: String },
    Link { url: String, children: Vec<TextNode> },
    ActionLink { action: String, params: BTreeMap<String, String>, children: Vec<TextNode> },
    ActionButton { action: String, params: BTreeMap<String, String>, children: Vec<TextNode> },
    AutoLink { url: String, text: String },
    CustomEmoji { text: String },
    Mention { id: String, text: String },
}

/// A file as a content block shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct FileBlock {
    pub url: String,
    pub size: u64,
    pub filename: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ContentBlock {
    Text { children: Vec<TextNode> },
    File(FileBlock),
    Location { latitude: f64, longitude: f64 },
}

/// Whether `<url|text>` links and action links and buttons are parsed: yes for REST and system messages, no for
/// text that users send, where they would let one user trick another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    Allowed,
    Refused,
}

/// Characters a backslash makes literal.
const ESCAPABLE: [char; 13] = ['\\', '*', '_', '~', '`', '<', '>', '|', '-', '+', '.', '@', ':'];
/// An escaped character stands in the text as a private-use character while it is parsed, so that no markup
/// rule sees it; these are the first 13 of Supplementary Private Use Area-A.
const PLACEHOLDER_BASE: u32 = 0xF0000;

fn placeholder(index: usize) -> char {
    char::from_u32(PLACEHOLDER_BASE + index as u32).expect("in the private use area")
}

fn is_placeholder(c: char) -> bool {
    (PLACEHOLDER_BASE..PLACEHOLDER_BASE + ESCAPABLE.len() as u32).contains(&(c as u32))
}

/// The text with each escape replaced by its placeholder, or `None` when there is nothing to replace. Text that
/// already holds one of the placeholder characters is taken as it is: its backslashes stay literal.
fn with_placeholders(text: &str) -> Option<String> {
    if !text.contains('\\') || text.chars().any(is_placeholder) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let escaped =
            (c == '\\').then(|| chars.peek().and_then(|next| ESCAPABLE.iter().position(|e| e == next))).flatten();
        match escaped {
            Some(index) => {
                chars.next();
                out.push(placeholder(index));
            }
            None => out.push(c),
        }
    }
    Some(out)
}

fn restore(text: &mut String) {
    if text.chars().any(is_placeholder) {
        *text = text
            .chars()
            .map(|c| if is_placeholder(c) { ESCAPABLE[(c as u32 - PLACEHOLDER_BASE) as usize] } else { c })
            .collect();
    }
}

fn restore_nodes(nodes: &mut [TextNode]) {
    for node in nodes {
        match node {
            TextNode::Plain(text) | TextNode::CodeSpan { text } | TextNode::CustomEmoji { text } => restore(text),
            TextNode::AutoLink { url, text } | TextNode::Mention { id: url, text } => {
                restore(url);
                restore(text);
            }
            TextNode::Link { url, children } => {
                restore(url);
                restore_nodes(children);
            }
            TextNode::ActionLink { action, params, children } | TextNode::ActionButton { action, params, children } => {
                restore(action);
                *params = std::mem::take(params)
                    .into_iter()
                    .map(|(mut key, mut value)| {
                        restore(&mut key);
                        restore(&mut value);
                        (key, value)
                    })
                    .collect();
                restore_nodes(children);
            }
            TextNode::Markup { children, .. }
            | TextNode::BulletList { children }
            | TextNode::BulletPoint { children } => restore_nodes(children),
        }
    }
}

/// Parses TalkJS markup (with Natter's escapes) into text nodes.
pub fn parse_markup(text: &str, links: Links) -> Vec<TextNode> {
    match with_placeholders(text) {
        Some(prepared) => {
            let mut nodes = parse_unescaped(&prepared, links);
            restore_nodes(&mut nodes);
            merge_plain(nodes)
        }
        None => parse_unescaped(text, links),
    }
}

/// Merges adjacent plain strings and drops empty ones, at every level: the form the parser gives.
fn merge_plain(nodes: Vec<TextNode>) -> Vec<TextNode> {
    let mut merged = Vec::with_capacity(nodes.len());
    let nested = |children: Vec<TextNode>| merge_plain(children);
    for node in nodes {
        let node = match node {
            TextNode::Markup { kind, children } => TextNode::Markup { kind, children: nested(children) },
            TextNode::BulletList { children } => TextNode::BulletList { children: nested(children) },
            TextNode::BulletPoint { children } => TextNode::BulletPoint { children: nested(children) },
            TextNode::Link { url, children } => TextNode::Link { url, children: nested(children) },
            TextNode::ActionLink { action, params, children } => {
                TextNode::ActionLink { action, params, children: nested(children) }
            }
            TextNode::ActionButton { action, params, children } => {
                TextNode::ActionButton { action, params, children: nested(children) }
            }
            other => other,
        };
        push_all(&mut merged, vec![node]);
    }
    merged
}

fn parse_unescaped(text: &str, links: Links) -> Vec<TextNode> {
    let mut nodes = Vec::new();
    let mut plain_lines: Vec<&str> = Vec::new();
    let mut bullets: Vec<&str> = Vec::new();
    let lines: Vec<&str> = text.split('\n').collect();
    let flush_plain = |plain_lines: &mut Vec<&str>, nodes: &mut Vec<TextNode>, trailing_newline: bool| {
        if !plain_lines.is_empty() {
            let mut joined = plain_lines.join("\n");
            if trailing_newline {
                joined.push('\n');
            }
            push_all(nodes, parse_block(&joined, links));
            plain_lines.clear();
        }
    };
    for line in &lines {
        if let Some(item) = bullet_item(line) {
            if bullets.is_empty() {
                flush_plain(&mut plain_lines, &mut nodes, true);
            }
            bullets.push(item);
        } else {
            if !bullets.is_empty() {
                let children = bullets
                    .drain(..)
                    .map(|item| TextNode::BulletPoint { children: parse_block(item, links) })
                    .collect();
                nodes.push(TextNode::BulletList { children });
            }
            plain_lines.push(line);
        }
    }
    if !bullets.is_empty() {
        let children =
            bullets.drain(..).map(|item| TextNode::BulletPoint { children: parse_block(item, links) }).collect();
        nodes.push(TextNode::BulletList { children });
    }
    flush_plain(&mut plain_lines, &mut nodes, false);
    nodes
}

fn bullet_item(line: &str) -> Option<&str> {
    let mut chars = line.chars();
    match (chars.next(), chars.next()) {
        (Some('-' | '*' | '+'), Some(c)) if c == ' ' || c == '\t' => Some(line[2..].trim_start()),
        _ => None,
    }
}

/// Appends nodes, merging adjacent plain strings.
fn push_all(nodes: &mut Vec<TextNode>, more: Vec<TextNode>) {
    for node in more {
        match (nodes.last_mut(), node) {
            (Some(TextNode::Plain(last)), TextNode::Plain(next)) => last.push_str(&next),
            (_, TextNode::Plain(next)) if next.is_empty() => {}
            (_, node) => nodes.push(node),
        }
    }
}

/// Code spans first: their content is not parsed further.
fn parse_block(text: &str, links: Links) -> Vec<TextNode> {
    let mut nodes = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let Some(length) = rest[start + 3..].find("```") else { break };
        if length == 0 {
            break;
        }
        push_all(&mut nodes, parse_tags(&rest[..start], links));
        nodes.push(TextNode::CodeSpan { text: rest[start + 3..start + 3 + length].to_owned() });
        rest = &rest[start + 3 + length + 3..];
    }
    push_all(&mut nodes, parse_tags(rest, links));
    nodes
}

/// Angle-bracket constructs: mentions, custom emoji, links, action links and buttons. A tag never holds another
/// `<`, so each character is looked at a bounded number of times, whatever the input.
fn parse_tags(text: &str, links: Links) -> Vec<TextNode> {
    let mut nodes = Vec::new();
    let mut plain_start = 0;
    let mut search = 0;
    while let Some(offset) = text[search..].find('<') {
        let open = search + offset;
        let Some(end_offset) = text[open + 1..].find(['<', '>']) else { break };
        let end = open + 1 + end_offset;
        if text.as_bytes()[end] == b'<' {
            search = end;
            continue;
        }
        match parse_tag(&text[open + 1..end], links) {
            Some(node) => {
                push_all(&mut nodes, parse_emphasis(&text[plain_start..open]));
                nodes.push(node);
                plain_start = end + 1;
                search = end + 1;
            }
            None => search = end + 1,
        }
    }
    push_all(&mut nodes, parse_emphasis(&text[plain_start..]));
    nodes
}

fn parse_tag(inner: &str, links: Links) -> Option<TextNode> {
    if inner.contains('\n') {
        return None;
    }
    if let Some(rest) = inner.strip_prefix("!!mention:") {
        let (id, name) = rest.split_once('|')?;
        let id = percent_encoding::percent_decode_str(id).decode_utf8().ok()?.into_owned();
        return (!id.is_empty()).then(|| TextNode::Mention { id, text: name.to_owned() });
    }
    if let Some(rest) = inner.strip_prefix("!!customemoji:") {
        return is_custom_emoji(rest).then(|| TextNode::CustomEmoji { text: rest.to_owned() });
    }
    let (target, label) = inner.split_once('|')?;
    if links == Links::Refused {
        // The one tag users may write: an autolink whose text says where it links, with the URL it links to
        // (`<https://www.example.com|www.example.com>`, which the bare text alone would link over http).
        return autolink_matches(label, target)
            .then(|| TextNode::AutoLink { url: target.to_owned(), text: label.to_owned() });
    }
    if label.is_empty() {
        return None;
    }
    let children = parse_emphasis(label);
    for (prefix, button) in [("actionbutton:", true), ("actionlink:", false)] {
        if let Some(action) = target.strip_prefix(prefix) {
            let (action, query) = action.split_once('?').unwrap_or((action, ""));
            if action.is_empty() {
                return None;
            }
            let params = parse_query(query);
            let action = action.to_owned();
            return Some(if button {
                TextNode::ActionButton { action, params, children }
            } else {
                TextNode::ActionLink { action, params, children }
            });
        }
    }
    let absolute = ["https://", "http://", "mailto:", "tel:"].iter().any(|scheme| target.starts_with(scheme));
    (absolute && !target.contains(char::is_whitespace)).then(|| TextNode::Link { url: target.to_owned(), children })
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (decode(key), decode(value))
        })
        .collect()
}

fn is_custom_emoji(text: &str) -> bool {
    text.len() >= 3
        && text.starts_with(':')
        && text.ends_with(':')
        && !text[1..text.len() - 1].contains([':', ' ', '<', '>'])
}

/// Whether a delimiter may open or close at this boundary: start or end of text, white space or punctuation. An
/// escaped character is punctuation (every escapable one is), even `\*`: escaped, it is no delimiter.
fn is_boundary(c: Option<char>) -> bool {
    c.is_none_or(|c| {
        c.is_whitespace() || is_placeholder(c) || (c.is_ascii_punctuation() && !matches!(c, '*' | '_' | '~'))
    })
}

/// How deep bold, italic and strikethrough may nest; deeper markup stays text. Bounds the work on crafted input.
const MAX_EMPHASIS_DEPTH: usize = 8;

/// Bold, italic and strikethrough, which nest; then autolinks in what stays plain.
fn parse_emphasis(text: &str) -> Vec<TextNode> {
    emphasis(text, 0)
}

/// Scans once: the positions that can close each kind of span are found up front, so an opening delimiter finds
/// its close by binary search instead of by scanning the rest of the text.
fn emphasis(text: &str, depth: usize) -> Vec<TextNode> {
    if depth >= MAX_EMPHASIS_DEPTH {
        return parse_autolinks(text);
    }
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let byte_at = |index: usize| chars.get(index).map_or(text.len(), |&(byte, _)| byte);
    let mut next_newline = vec![n; n + 1];
    for index in (0..n).rev() {
        next_newline[index] = if chars[index].1 == '\n' { index } else { next_newline[index + 1] };
    }
    // A close: the delimiter, after a character that is neither space nor the delimiter, before a boundary.
    let closes_of = |delimiter: char| -> Vec<usize> {
        (1..n)
            .filter(|&p| {
                let last_inside = chars[p - 1].1;
                chars[p].1 == delimiter
                    && !last_inside.is_whitespace()
                    && last_inside != delimiter
                    && is_boundary(chars.get(p + 1).map(|&(_, c)| c))
            })
            .collect()
    };
    let closes = [closes_of('*'), closes_of('_'), closes_of('~')];
    let mut nodes = Vec::new();
    // Where the current plain run began; like the start of the text, it counts as a boundary.
    let mut segment_start = 0;
    let mut position = 0;
    while position < n {
        let c = chars[position].1;
        let Some(kind) = MarkupKind::from_delimiter(c) else {
            position += 1;
            continue;
        };
        let before = (position > segment_start).then(|| chars[position - 1].1);
        let first_inside = chars.get(position + 1).map(|&(_, c)| c);
        let opens = is_boundary(before) && first_inside.is_some_and(|f| !f.is_whitespace() && f != c);
        let list = &closes[kind as usize];
        let close = list.get(list.partition_point(|&p| p < position + 2)).copied();
        match close.filter(|&end| opens && next_newline[position + 1] > end) {
            Some(end) => {
                push_all(&mut nodes, parse_autolinks(&text[byte_at(segment_start)..byte_at(position)]));
                let inner = &text[byte_at(position + 1)..byte_at(end)];
                nodes.push(TextNode::Markup { kind, children: emphasis(inner, depth + 1) });
                position = end + 1;
                segment_start = position;
            }
            None => position += 1,
        }
    }
    push_all(&mut nodes, parse_autolinks(&text[byte_at(segment_start)..]));
    nodes
}

/// Bare URLs, `www.` hosts, email addresses and `+`-prefixed phone numbers become autolinks.
fn parse_autolinks(text: &str) -> Vec<TextNode> {
    let mut nodes = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        let trimmed = word.trim_end_matches(['.', ',', '!', '?', ';', ':', ')', '"', '\'']);
        let trailing = &word[trimmed.len()..];
        let phone = if trimmed.starts_with('+') { phone_number(rest) } else { None };
        if let Some((text, digits)) = phone {
            if !plain.is_empty() {
                nodes.push(TextNode::Plain(std::mem::take(&mut plain)));
            }
            nodes.push(TextNode::AutoLink { url: format!("tel:{digits}"), text: text.to_owned() });
            rest = &rest[text.len()..];
            continue;
        }
        match autolink_url(trimmed) {
            Some(url) => {
                if !plain.is_empty() {
                    nodes.push(TextNode::Plain(std::mem::take(&mut plain)));
                }
                nodes.push(TextNode::AutoLink { url, text: trimmed.to_owned() });
                plain.push_str(trailing);
            }
            None => plain.push_str(word),
        }
        let spaces = after.len() - after.trim_start().len();
        plain.push_str(&after[..spaces]);
        rest = &after[spaces..];
    }
    if !plain.is_empty() {
        nodes.push(TextNode::Plain(plain));
    }
    nodes
}

/// The URL a bare word links to, if it is a link at all.
pub fn autolink_url(word: &str) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    if (lower.starts_with("http://") || lower.starts_with("https://")) && word.len() > lower.find("//")? + 3 {
        return Some(word.to_owned());
    }
    if lower.starts_with("www.") && word.len() > 5 && word[4..].contains('.') {
        return Some(format!("http://{word}"));
    }
    if let Some((local, domain)) = word.split_once('@') {
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        let local_ok = !local.is_empty() && local.chars().all(|c| c.is_alphanumeric() || "._%+-".contains(c));
        if domain_ok && local_ok {
            return Some(format!("mailto:{word}"));
        }
    }
    None
}

/// Whether `text` is a bare domain, with or without a path: `example.com`, `shop.example.co.uk/boots`.
fn is_bare_domain(text: &str) -> bool {
    let (host, path) = text.split_once('/').unwrap_or((text, ""));
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
        && !path.contains(char::is_whitespace)
}

/// Whether an autolink with this text may link to `url` (§4.7): where the text itself links (a URL, a `www.` host,
/// an email address, a phone number, or a bare domain, which links over http), or to the https form of an http
/// target.
pub fn autolink_matches(text: &str, url: &str) -> bool {
    let expected = match phone_number(text) {
        Some((whole, digits)) if whole == text => Some(format!("tel:{digits}")),
        _ => autolink_url(text).or_else(|| is_bare_domain(text).then(|| format!("http://{text}"))),
    };
    let Some(expected) = expected else { return false };
    url == expected || expected.strip_prefix("http://").is_some_and(|rest| url.strip_prefix("https://") == Some(rest))
}

/// A phone number at the start of `text`: `+` then at least 8 digits, with single spaces or dashes between.
/// Returns the matched text and its digits.
fn phone_number(text: &str) -> Option<(&str, String)> {
    let mut digits = String::from("+");
    let mut end = 1;
    let mut last_was_digit = false;
    for (index, c) in text.char_indices().skip(1) {
        if c.is_ascii_digit() {
            digits.push(c);
            end = index + 1;
            last_was_digit = true;
        } else if (c == ' ' || c == '-') && last_was_digit {
            last_was_digit = false;
        } else {
            break;
        }
    }
    (digits.len() > 8).then(|| (&text[..end], digits))
}

/// Writes nodes back as markup, so that `parse_markup(&to_markup(nodes))` gives the nodes again.
pub fn to_markup(nodes: &[TextNode]) -> String {
    let mut out = String::new();
    write_markup(nodes, &mut out, false);
    out
}

/// Markup that parses back (with `links` rules) to exactly these nodes, as the parser gives them (adjacent
/// strings merged, a bullet list on a line of its own), with escapes only where they are needed. `None` when no
/// markup can say it: formatting that is empty or starts or ends with white space, two lists in a row.
pub fn exact_markup(nodes: &[TextNode], links: Links) -> Option<String> {
    let wanted = normalize(nodes);
    [false, true].into_iter().find_map(|escape| {
        let mut text = String::new();
        write_markup(nodes, &mut text, escape);
        (parse_markup(&text, links) == wanted).then_some(text)
    })
}

/// Nodes as the parser would give them back: adjacent strings merged, and the line break a bullet list starts on
/// kept in the text before it.
fn normalize(nodes: &[TextNode]) -> Vec<TextNode> {
    let mut merged = merge_plain(nodes.to_vec());
    for index in 1..merged.len() {
        if matches!(merged[index], TextNode::BulletList { .. }) {
            if let TextNode::Plain(before) = &mut merged[index - 1] {
                if !before.ends_with('\n') {
                    before.push('\n');
                }
            }
        }
    }
    merged
}

/// Writes plain text so that no markup rule applies to it: markup characters, a bullet at the start of a line,
/// and what would start a link (`://`, `www.`, `@`, a `+` before a digit) are escaped.
fn write_escaped_plain(text: &str, out: &mut String) {
    let chars: Vec<char> = text.chars().collect();
    let mut line_start = out.is_empty() || out.ends_with('\n');
    let text_at_word_start = line_start || out.ends_with(char::is_whitespace);
    let word_starts_at = |index: usize| if index == 0 { text_at_word_start } else { chars[index - 1].is_whitespace() };
    for (index, &c) in chars.iter().enumerate() {
        let next = chars.get(index + 1).copied();
        let bullet = line_start && matches!(c, '-' | '+' | '*') && matches!(next, Some(' ' | '\t'));
        let phone = c == '+' && next.is_some_and(|n| n.is_ascii_digit());
        let scheme = c == ':' && chars.get(index + 1..index + 3) == Some(&['/', '/'][..]);
        let www = c == '.'
            && index >= 3
            && word_starts_at(index - 3)
            && chars[index - 3..index].iter().all(|w| w.eq_ignore_ascii_case(&'w'));
        if matches!(c, '\\' | '*' | '_' | '~' | '`' | '<' | '>' | '|' | '@') || bullet || phone || scheme || www {
            out.push('\\');
        }
        out.push(c);
        line_start = c == '\n';
    }
}

/// Escapes every character a backslash can escape (in code spans and names, where nothing else is parsed).
fn write_all_escaped(text: &str, out: &mut String) {
    for c in text.chars() {
        if ESCAPABLE.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

fn write_markup(nodes: &[TextNode], out: &mut String, escape: bool) {
    for node in nodes {
        match node {
            TextNode::Plain(text) if escape => write_escaped_plain(text, out),
            TextNode::Plain(text) => out.push_str(text),
            TextNode::Markup { kind, children } => {
                out.push(kind.delimiter());
                write_markup(children, out, escape);
                out.push(kind.delimiter());
            }
            TextNode::BulletList { children } => {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                for (index, child) in children.iter().enumerate() {
                    if index > 0 {
                        out.push('\n');
                    }
                    out.push_str("- ");
                    match child {
                        TextNode::BulletPoint { children } => write_markup(children, out, escape),
                        other => write_markup(std::slice::from_ref(other), out, escape),
                    }
                }
                out.push('\n');
            }
            TextNode::BulletPoint { children } => write_markup(children, out, escape),
            TextNode::CodeSpan { text } => {
                out.push_str("```");
                if escape {
                    write_all_escaped(text, out);
                } else {
                    out.push_str(text);
                }
                out.push_str("```");
            }
            TextNode::Link { url, children } => {
                out.push('<');
                out.push_str(url);
                out.push('|');
                write_markup(children, out, escape);
                out.push('>');
            }
            TextNode::ActionLink { action, params, children } | TextNode::ActionButton { action, params, children } => {
                let prefix = if matches!(node, TextNode::ActionButton { .. }) { "actionbutton" } else { "actionlink" };
                out.push_str(&format!("<{prefix}:{action}"));
                if !params.is_empty() {
                    let query: Vec<String> = params
                        .iter()
                        .map(|(key, value)| {
                            let encode = |s: &str| {
                                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
                            };
                            format!("{}={}", encode(key), encode(value))
                        })
                        .collect();
                    out.push('?');
                    out.push_str(&query.join("&"));
                }
                out.push('|');
                write_markup(children, out, escape);
                out.push('>');
            }
            // Bare, where the text alone links there; else the tag that names its URL (users may write only this tag).
            TextNode::AutoLink { text, url } if autolink_url(text).as_deref() == Some(url.as_str()) => {
                out.push_str(text)
            }
            TextNode::AutoLink { text, url }
                if phone_number(text)
                    .is_some_and(|(whole, digits)| whole == text && *url == format!("tel:{digits}")) =>
            {
                out.push_str(text)
            }
            TextNode::AutoLink { text, url } => out.push_str(&format!("<{url}|{text}>")),
            TextNode::CustomEmoji { text } => out.push_str(&format!("<!!customemoji:{text}>")),
            TextNode::Mention { id, text } => {
                let id = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
                out.push_str(&format!("<!!mention:{id}|"));
                if escape {
                    write_all_escaped(text, out);
                } else {
                    out.push_str(text);
                }
                out.push('>');
            }
        }
    }
}

/// The message as plain text (§4.8): formatting dropped, mentions as `@Name`, files and locations as an icon.
pub fn plaintext(blocks: &[ContentBlock]) -> String {
    let rendered: Vec<String> = blocks
        .iter()
        .map(|block| match block {
            ContentBlock::Text { children } => {
                let mut out = String::new();
                write_plain(children, &mut out);
                out
            }
            ContentBlock::File(file) => format!("📎 {}", file.filename),
            ContentBlock::Location { .. } => "📍".to_owned(),
        })
        .collect();
    rendered.join("\n\n")
}

fn write_plain(nodes: &[TextNode], out: &mut String) {
    for node in nodes {
        match node {
            TextNode::Plain(text) => out.push_str(text),
            TextNode::Markup { children, .. }
            | TextNode::BulletPoint { children }
            | TextNode::Link { children, .. }
            | TextNode::ActionLink { children, .. }
            | TextNode::ActionButton { children, .. } => write_plain(children, out),
            TextNode::BulletList { children } => {
                out.push('\n');
                for child in children {
                    out.push_str("- ");
                    write_plain(std::slice::from_ref(child), out);
                    out.push('\n');
                }
            }
            TextNode::CodeSpan { text } | TextNode::AutoLink { text, .. } | TextNode::CustomEmoji { text } => {
                out.push_str(text)
            }
            TextNode::Mention { text, .. } => {
                out.push('@');
                out.push_str(text);
            }
        }
    }
}

/// What users may send (§4.7): no links, action links or buttons, and an autolink must link where its text says.
pub fn check_user_nodes(nodes: &[TextNode]) -> Result<(), ValidationError> {
    for node in nodes {
        match node {
            TextNode::Link { .. } => return Err(ValidationError::new("content", "users may not send link nodes")),
            TextNode::ActionLink { .. } | TextNode::ActionButton { .. } => {
                return Err(ValidationError::new("content", "users may not send action links or action buttons"))
            }
            TextNode::AutoLink { url, text } if !autolink_matches(text, url) => {
                return Err(ValidationError::new(
                    "content",
                    format!("autoLink text {text:?} does not match its url {url:?}"),
                ));
            }
            TextNode::CustomEmoji { text } if !is_custom_emoji(text) => {
                return Err(ValidationError::new("content", format!("{text:?} is not a custom emoji :name:")))
            }
            TextNode::Markup { children, .. }
            | TextNode::BulletList { children }
            | TextNode::BulletPoint { children } => check_user_nodes(children)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
