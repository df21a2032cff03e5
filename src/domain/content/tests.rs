use super::*;

fn plain(text: &str) -> TextNode {
    TextNode::Plain(text.to_owned())
}

fn markup(kind: MarkupKind, children: Vec<TextNode>) -> TextNode {
    TextNode::Markup { kind, children }
}

#[test]
fn bold_italic_and_strikethrough_nest_at_word_boundaries() {
    assert_eq!(
        parse_markup("a *bold* and _it_ ~gone~.", Links::Allowed),
        vec![
            plain("a "),
            markup(MarkupKind::Bold, vec![plain("bold")]),
            plain(" and "),
            markup(MarkupKind::Italic, vec![plain("it")]),
            plain(" "),
            markup(MarkupKind::Strikethrough, vec![plain("gone")]),
            plain("."),
        ]
    );
    assert_eq!(
        parse_markup("*_both_*", Links::Allowed),
        vec![markup(MarkupKind::Bold, vec![markup(MarkupKind::Italic, vec![plain("both")])])]
    );
    for literal in ["2*3*4", "a * not bold*", "*not bold *", "snake_case_name", "**", "*across\nlines*"] {
        assert_eq!(parse_markup(literal, Links::Allowed), vec![plain(literal)], "{literal:?}");
    }
}

#[test]
fn code_spans_are_not_parsed_further() {
    assert_eq!(
        parse_markup("run ```*x* <!!mention:u|U>``` now", Links::Allowed),
        vec![plain("run "), TextNode::CodeSpan { text: "*x* <!!mention:u|U>".into() }, plain(" now")]
    );
}

#[test]
fn bullet_lines_become_a_list() {
    assert_eq!(
        parse_markup("Shopping:\n- milk\n* *eggs*\nthanks", Links::Allowed),
        vec![
            plain("Shopping:\n"),
            TextNode::BulletList {
                children: vec![
                    TextNode::BulletPoint { children: vec![plain("milk")] },
                    TextNode::BulletPoint { children: vec![markup(MarkupKind::Bold, vec![plain("eggs")])] },
                ]
            },
            plain("thanks"),
        ]
    );
}

#[test]
fn mentions_custom_emoji_links_and_actions() {
    assert_eq!(
        parse_markup("hi <!!mention:user%201|Alice> <!!customemoji::cat-roomba:>", Links::Refused),
        vec![
            plain("hi "),
            TextNode::Mention { id: "user 1".into(), text: "Alice".into() },
            plain(" "),
            TextNode::CustomEmoji { text: ":cat-roomba:".into() },
        ]
    );
    let with_links = parse_markup("<https://x.io|*site*> <actionbutton:buy?sku=1&n=2|Buy>", Links::Allowed);
    assert_eq!(
        with_links,
        vec![
            TextNode::Link {
                url: "https://x.io".into(),
                children: vec![markup(MarkupKind::Bold, vec![plain("site")])]
            },
            plain(" "),
            TextNode::ActionButton {
                action: "buy".into(),
                params: [("sku".to_owned(), "1".to_owned()), ("n".to_owned(), "2".to_owned())].into(),
                children: vec![plain("Buy")],
            },
        ]
    );
    // Users' text keeps link syntax as plain text.
    assert_eq!(parse_markup("<https://x.io|site>", Links::Refused), vec![plain("<https://x.io|site>")]);
}

#[test]
fn urls_emails_and_phone_numbers_become_autolinks() {
    assert_eq!(
        parse_markup("see https://a.io/x, www.b.com or mail c@d.org.", Links::Allowed),
        vec![
            plain("see "),
            TextNode::AutoLink { url: "https://a.io/x".into(), text: "https://a.io/x".into() },
            plain(", "),
            TextNode::AutoLink { url: "http://www.b.com".into(), text: "www.b.com".into() },
            plain(" or mail "),
            TextNode::AutoLink { url: "mailto:c@d.org".into(), text: "c@d.org".into() },
            plain("."),
        ]
    );
    assert_eq!(
        parse_markup("call +31 20 123 4567 now", Links::Allowed),
        vec![
            plain("call "),
            TextNode::AutoLink { url: "tel:+31201234567".into(), text: "+31 20 123 4567".into() },
            plain(" now"),
        ]
    );
}

#[test]
fn markup_round_trips_through_to_markup() {
    for text in [
        "plain",
        "a *b* _c_ ~d~ ```e``` <!!mention:u|U> <!!customemoji::x:>",
        "list:\n- one\n- *two*\n",
        "<https://x.io|site> and <actionlink:go?a=1|Go>",
        "https://a.io and +31 20 123 4567",
    ] {
        let nodes = parse_markup(text, Links::Allowed);
        assert_eq!(parse_markup(&to_markup(&nodes), Links::Allowed), nodes, "{text:?}");
    }
}

#[test]
fn plaintext_flattens_formatting() {
    let blocks = vec![ContentBlock::Text {
        children: parse_markup("*Hi* <!!mention:u|Bob>, see:\n- one\n- two", Links::Allowed),
    }];
    assert_eq!(plaintext(&blocks), "Hi @Bob, see:\n\n- one\n- two\n");
    let file = ContentBlock::File(FileBlock { url: "u".into(), size: 1, filename: "a.png".into() });
    assert_eq!(plaintext(&[file, ContentBlock::Location { latitude: 1.0, longitude: 2.0 }]), "📎 a.png\n\n📍");
}

#[test]
fn users_may_not_send_links_or_misleading_autolinks() {
    let link = TextNode::Link { url: "https://evil".into(), children: vec![plain("bank")] };
    assert!(check_user_nodes(&[link]).is_err());
    let action = TextNode::ActionLink { action: "a".into(), params: BTreeMap::new(), children: vec![] };
    assert!(check_user_nodes(&[markup(MarkupKind::Bold, vec![action])]).is_err());
    let lying = TextNode::AutoLink { url: "https://evil.com".into(), text: "bank.com".into() };
    assert!(check_user_nodes(&[lying]).is_err());
    let honest = TextNode::AutoLink { url: "https://www.bank.com".into(), text: "www.bank.com".into() };
    assert!(check_user_nodes(&[honest]).is_ok());
    assert!(check_user_nodes(&parse_markup("mail a@b.co or +31 20 123 4567", Links::Refused)).is_ok());
}

#[test]
fn a_backslash_makes_a_markup_character_literal_and_others_stay() {
    assert_eq!(parse_markup("\\*not bold\\* \\- x", Links::Allowed), vec![plain("*not bold* - x")]);
    assert_eq!(parse_markup("C:\\path\\to", Links::Allowed), vec![plain("C:\\path\\to")]);
    assert_eq!(parse_markup("a\\\\b", Links::Allowed), vec![plain("a\\b")]);
    assert_eq!(parse_markup("```\\`\\`\\````", Links::Refused), vec![TextNode::CodeSpan { text: "```".into() }]);
}

#[test]
fn exact_markup_escapes_only_when_the_plain_rendering_would_change_the_nodes() {
    let exact = |nodes: &[TextNode]| exact_markup(nodes, Links::Refused).unwrap();
    assert_eq!(exact(&[plain("plain words, snake_case")]), "plain words, snake_case");
    assert_eq!(exact(&[plain("*not bold*")]), "\\*not bold\\*");
    assert_eq!(exact(&[plain("- not a list")]), "\\- not a list");
    assert_eq!(exact(&[plain("see www.a.com")]), "see www\\.a.com");
    let secure = TextNode::AutoLink { url: "https://www.example.com/x".into(), text: "www.example.com/x".into() };
    assert_eq!(exact(std::slice::from_ref(&secure)), "<https://www.example.com/x|www.example.com/x>");
    assert_eq!(parse_markup(&exact(std::slice::from_ref(&secure)), Links::Refused), vec![secure]);
    // Formatting that starts with a space has no markup.
    assert_eq!(exact_markup(&[markup(MarkupKind::Bold, vec![plain(" x")])], Links::Refused), None);
}

#[test]
fn a_bare_domain_may_autolink_over_http_or_https_and_nowhere_else() {
    let auto = |url: &str, text: &str| TextNode::AutoLink { url: url.into(), text: text.into() };
    assert!(check_user_nodes(&[auto("https://example.com", "example.com")]).is_ok());
    assert!(check_user_nodes(&[auto("http://shop.example.co.uk/boots", "shop.example.co.uk/boots")]).is_ok());
    assert!(check_user_nodes(&[auto("https://evil.com", "example.com")]).is_err());
    assert!(check_user_nodes(&[auto("https://example", "example")]).is_err());
    // The same tag typed as text is an autolink only where its text says.
    assert_eq!(
        parse_markup("<https://example.com|example.com>", Links::Refused),
        vec![auto("https://example.com", "example.com")]
    );
    assert_eq!(
        parse_markup("<https://evil.com|example.com>", Links::Refused),
        vec![plain("<https://evil.com|example.com>")]
    );
}
