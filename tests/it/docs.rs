//! What a newcomer reads: the repository's docs cite only what its reader can open, and `natter --help` says what
//! each subcommand does.

use std::path::Path;

#[test]
fn the_docs_cite_only_what_a_reader_of_the_repository_can_open() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md"), root.join("ARCHITECTURE.md"), root.join("load/RESULTS.md")];
    for entry in std::fs::read_dir(root.join("proto")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "md") {
            docs.push(path);
        }
    }
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for outside in ["../shared", "seeds/"] {
            assert!(!text.contains(outside), "{} cites {outside:?}, which is not in the repository", doc.display());
        }
    }
}

#[test]
fn natter_help_says_what_each_subcommand_does() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_natter")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    let serve = help.lines().find(|line| line.trim_start().starts_with("serve")).unwrap_or_else(|| panic!("{help}"));
    for what in ["REST API", "WebSocket gateway", "/metrics"] {
        assert!(serve.contains(what), "`serve` should say it serves the {what}: {serve}");
    }
}
