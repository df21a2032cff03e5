//! Structured logs through `tracing`. `RUST_LOG` overrides the default filter; `natter=debug` adds a line per
//! request (`gateway::observe_requests`).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("natter=info,tower_http=warn"));
    // Colours only for a person at a terminal: a file, a pipe or a log collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
    // A second init (tests) is harmless.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).try_init();
}
