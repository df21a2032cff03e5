//! The layering rule of `src/lib.rs`: no module imports one above it, so no import cycle can form, and nothing
//! outside `store/` names a backend. Read from the source files themselves.

use std::{collections::BTreeSet, path::Path};

/// Top-level modules from the bottom up; a module may use only modules of a lower rank.
const RANKS: &[(&str, u32)] = &[
    ("domain", 0),
    ("metrics", 1),
    ("telemetry", 1),
    ("wire", 1),
    ("store", 1),
    ("hub", 2),
    ("limits", 2),
    ("token", 2),
    ("config", 3),
    ("cluster", 3),
    ("http", 3),
    ("app", 4),
    ("api", 5),
    ("demo", 5),
    ("realtime", 5),
    ("webhooks", 5),
    ("gateway", 6),
    ("serve", 1),
    ("lib", 7),
    ("main", 8),
];

/// The same inside `realtime`: the sans-IO state machines below the shell.
const REALTIME_RANKS: &[(&str, u32)] = &[
    ("error", 0),
    ("state", 0),
    ("frames", 1),
    ("output", 2),
    ("subscription", 3),
    ("user_subscription", 3),
    ("state_subscription", 3),
    ("typing_subscription", 3),
    ("session", 4),
    ("publisher", 5),
    ("writes", 5),
    ("handshake", 5),
    ("frame_writer", 5),
    ("catchup", 6),
    ("socket", 6),
    ("mod", 7),
];

fn rank(table: &[(&str, u32)], name: &str) -> u32 {
    table.iter().find(|(module, _)| *module == name).map(|(_, rank)| *rank).unwrap_or_else(|| {
        panic!("module {name:?} has no rank in tests/it/layers.rs: place it in the layering of src/lib.rs")
    })
}

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// The first path segment after each `prefix` in `text`: `prefix::x`, and each item of `prefix::{x, y::z}`.
fn used_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let needle = format!("{prefix}::");
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let preceded_by_ident =
            rest[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        rest = &rest[at + needle.len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Split the group's top level at commas.
            let (mut depth, mut item) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        used.insert(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            used.insert(first_segment(&item));
        } else {
            used.insert(first_segment(rest));
        }
    }
    used.retain(|name| !name.is_empty() && name != "self");
    used
}

fn first_segment(text: &str) -> String {
    text.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

#[test]
fn no_module_imports_one_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut violations = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let mut parts = relative.iter().map(|part| part.to_str().unwrap().trim_end_matches(".rs"));
        let module = parts.next().unwrap();
        let module_rank = rank(RANKS, module);
        for used in used_after(&text, "crate") {
            if used != module && rank(RANKS, &used) >= module_rank {
                violations.push(format!("{}: {module} uses {used}", relative.display()));
            }
        }
        if module == "realtime" {
            let inner = parts.next().unwrap_or("mod");
            let inner_rank = rank(REALTIME_RANKS, inner);
            let mut inside = used_after(&text, "crate::realtime");
            // `super::` of a file directly in realtime/ is realtime itself; a test file's is its own module.
            if relative.iter().count() == 2 {
                inside.extend(used_after(&text, "super"));
            }
            for used in inside.into_iter().filter(|used| REALTIME_RANKS.iter().any(|(name, _)| name == used)) {
                if used != inner && rank(REALTIME_RANKS, &used) >= inner_rank {
                    violations.push(format!("{}: realtime::{inner} uses realtime::{used}", relative.display()));
                }
            }
        }
        let names_a_backend = text.contains("rusqlite") || text.contains("sqlite::");
        if module != "store" && names_a_backend {
            violations.push(format!("{}: names the SQLite backend outside store/", relative.display()));
        }
    }
    assert!(violations.is_empty(), "upward imports:\n{}", violations.join("\n"));
}

#[test]
fn the_check_reads_groups_and_paths() {
    let text = "use crate::{\n    app::AppState,\n    hub::{Hub, Node},\n    store,\n};\nlet x = crate::wire::Links; supercrate::no;";
    let used: Vec<_> = used_after(text, "crate").into_iter().collect();
    assert_eq!(used, ["app", "hub", "store", "wire"]);
}
