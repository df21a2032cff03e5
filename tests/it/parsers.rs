//! Property tests: the frame, markup and filter parsers never panic or hang on arbitrary input, and markup that
//! parses writes back to itself.

use natter::{
    domain::content::{exact_markup, parse_markup, to_markup, Links, MarkupKind, TextNode},
    realtime::frames::parse_client_frame,
    wire::filter::parse_conversation_filter,
};
use proptest::prelude::*;

/// Strings rich in the characters the parsers care about.
fn markup_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("*".to_owned()),
            Just("_".to_owned()),
            Just("~".to_owned()),
            Just("```".to_owned()),
            Just("\n- ".to_owned()),
            Just("<".to_owned()),
            Just(">".to_owned()),
            Just("|".to_owned()),
            Just("<!!mention:".to_owned()),
            Just("<!!customemoji::".to_owned()),
            Just("<actionbutton:".to_owned()),
            Just("https://".to_owned()),
            Just("www.".to_owned()),
            Just("@".to_owned()),
            Just("+31 ".to_owned()),
            Just(" ".to_owned()),
            "[a-z0-9.:/?=&%]{1,6}",
            any::<char>().prop_map(String::from),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// What the parser gives, written back with escapes where plain text needs them, parses to the same nodes.
    /// (Written without escapes it may not: an escaped `\|` is a bare `|` in plain text.) Some rare node lists have
    /// no exact markup (`exact_markup` says `None`, and the socket refuses such text with a clear error): an
    /// autolink whose URL holds backticks, for one.
    #[test]
    fn the_markup_parser_never_panics_and_what_it_parses_is_written_back_exactly(text in markup_text()) {
        for links in [Links::Allowed, Links::Refused] {
            let nodes = parse_markup(&text, links);
            if let Some(written) = exact_markup(&nodes, links) {
                prop_assert_eq!(parse_markup(&written, links), nodes);
            }
        }
    }

    #[test]
    fn any_text_a_user_sends_arrives_as_it_was_sent(text in markup_text()) {
        prop_assume!(!text.is_empty());
        let sent = vec![TextNode::Plain(text)];
        let stored = exact_markup(&sent, Links::Refused).expect("plain text can always be written as markup");
        prop_assert_eq!(parse_markup(&stored, Links::Refused), sent);
    }

    #[test]
    fn formatted_text_a_user_sends_arrives_as_it_was_sent(
        before in markup_text(),
        inside in "[a-z*_~<>|.:@+-]{1,8}",
        after in markup_text(),
        kind in prop_oneof![Just(MarkupKind::Bold), Just(MarkupKind::Italic), Just(MarkupKind::Strikethrough)],
    ) {
        let mut sent = Vec::new();
        if !before.is_empty() {
            sent.push(TextNode::Plain(before));
        }
        sent.push(TextNode::Markup { kind, children: vec![TextNode::Plain(inside)] });
        if !after.is_empty() {
            sent.push(TextNode::Plain(after));
        }
        if let Some(stored) = exact_markup(&sent, Links::Refused) {
            prop_assert_eq!(parse_markup(&stored, Links::Refused), sent);
        }
    }

    #[test]
    fn the_frame_parser_never_panics(text in "\\PC{0,200}") {
        let _ = parse_client_frame(&text);
    }

    #[test]
    fn the_frame_parser_never_panics_on_near_valid_frames(
        kind in prop_oneof![Just("subscribeMessages"), Just("sendMessage"), Just("loadMore"), Just("editMessage"), Just("x")],
        id in prop_oneof![Just("\"1\"".to_owned()), Just("1".to_owned()), Just("null".to_owned()), "\"\\PC{0,70}\""],
        extra in "\\PC{0,60}",
    ) {
        let frame = format!(r#"{{"type":"{kind}","id":{id},"conversationId":"c","content":[{extra}]}}"#);
        let _ = parse_client_frame(&frame);
    }

    #[test]
    fn the_filter_parser_never_panics(text in "\\PC{0,120}") {
        let _ = parse_conversation_filter(&text);
    }

    #[test]
    fn the_filter_parser_never_panics_on_filter_shaped_json(
        field in prop_oneof![Just("custom"), Just("subject"), Just("createdAt"), Just("access"), Just("any"), Just("hasMessages")],
        op in prop_oneof![Just("\"==\""), Just("\"between\""), Just("\"oneOf\""), Just("\"exists\""), Just("1"), Just("[]")],
        operand in prop_oneof![Just("\"a\""), Just("[1,2]"), Just("[]"), Just("null"), Just("{}"), Just("[[1]]")],
    ) {
        for text in [
            format!(r#"{{"{field}":[{op},{operand}]}}"#),
            format!(r#"{{"custom":{{"{field}":[{op},{operand}]}}}}"#),
            format!(r#"["any",[{{"{field}":[{op},{operand}]}}]]"#),
        ] {
            let _ = parse_conversation_filter(&text);
        }
    }
}

#[test]
fn adversarial_texts_at_the_size_limit_parse() {
    const LIMIT: usize = 64 * 1024;
    let repeat = |unit: &str| unit.repeat(LIMIT / unit.len());
    for text in [
        repeat("*a "),
        repeat("*"),
        repeat("_x"),
        repeat("*_~a"),
        repeat("a*_~"),
        repeat("<"),
        format!("{}>", "<".repeat(LIMIT - 1)),
        format!("{}|x>", "<https://a.io".repeat(LIMIT / 14)),
        repeat("```"),
        repeat("- *a\n"),
        repeat("+1 "),
        repeat("a@b."),
        repeat("www.a."),
        format!("{}{}", "*_~".repeat(LIMIT / 6), "a~_*".repeat(LIMIT / 8)),
    ] {
        for links in [Links::Allowed, Links::Refused] {
            let nodes = parse_markup(&text, links);
            assert!(!to_markup(&nodes).is_empty());
        }
    }
}

#[test]
fn deeply_nested_frames_and_filters_are_refused_not_overflowed() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_client_frame(&deep).is_err());
    assert!(parse_conversation_filter(&deep).is_err());
    let deep_object = format!(
        r#"{{"type":"sendMessage","id":"1","conversationId":"c","content":{}{}}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    assert!(parse_client_frame(&deep_object).is_err());
}
