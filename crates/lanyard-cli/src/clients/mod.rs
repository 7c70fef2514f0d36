//! Client wiring: which AI clients Lanyard knows, where their MCP config lives, and the pure plan
//! that writes every configured server into one of those files (or takes Lanyard's entries out).
//!
//! `plan` is a pure function of the file's current text: it finds the client's server map and
//! inserts, replaces or removes only Lanyard's members as minimal textual edits, so every other
//! entry, comment and the file's formatting stay byte-for-byte. It never writes a token: entries
//! hold the command that fetches one (`lanyard proxy <id>` or `lanyard token --header-json
//! --no-oauth-fallback <id>`, which never lets Claude Code fall back to its own OAuth).
//! File I/O (backups, atomic writes) lives in [`command`]; nothing here touches the disk.
//!
//! How an entry is recognised as Lanyard's, per client (no client documents extra fields as
//! tolerated, and Claude Desktop is known to skip entries it finds invalid, so we add none):
//! its key is `lanyard-<server id>` *and* its value is one Lanyard writes — a stdio entry whose
//! command is the `lanyard` executable with `args` starting `proxy`, or (Claude Code) an http
//! entry whose `headersHelper` runs `lanyard token --header-json`. A user's own `lanyard-x` entry
//! of any other shape is never changed or removed. VS Code's `mcp.json` is JSON with comments,
//! so there each entry also gets a `// Managed by Lanyard …` line above it, for people reading it.

pub mod command;
mod diff;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use edit::Out;
pub use jsonc::ParseError;
use jsonc::{Dialect, Node};
use lanyard_cli::jsonc;
use lanyard_cli::jsonc_edit as edit;

/// Every client config key Lanyard writes starts with this.
pub const KEY_PREFIX: &str = "lanyard-";

/// The AI clients Lanyard can wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    ClaudeCode,
    ClaudeDesktop,
    VsCode,
    Cursor,
    GeminiCli,
}

impl Client {
    /// The client a policy's `settings.ai_clients` entry names.
    pub fn from_policy(client: lanyard_core::policy::AiClient) -> Self {
        use lanyard_core::policy::AiClient;
        match client {
            AiClient::ClaudeCode => Self::ClaudeCode,
            AiClient::ClaudeDesktop => Self::ClaudeDesktop,
            AiClient::Cursor => Self::Cursor,
            AiClient::Vscode => Self::VsCode,
            AiClient::Gemini => Self::GeminiCli,
        }
    }
}

/// Where the per-user config locations are rooted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// The user's home directory.
    pub home: PathBuf,
    /// The OS's per-user application config directory (`~/.config`, `~/Library/Application
    /// Support`, `%APPDATA%`).
    pub app_config: PathBuf,
}

impl Locations {
    /// Locations under `home` laid out as this OS lays them out, ignoring the environment (tests,
    /// and `LANYARD_CLIENTS_HOME`).
    pub fn under_home(home: &Path) -> Locations {
        let app_config = if cfg!(target_os = "macos") {
            home.join("Library").join("Application Support")
        } else if cfg!(windows) {
            home.join("AppData").join("Roaming")
        } else {
            home.join(".config")
        };
        Locations {
            home: home.to_path_buf(),
            app_config,
        }
    }

    /// The real locations: `LANYARD_CLIENTS_HOME` (acting as the home directory, for tests) or the
    /// user's home and application config directories.
    pub fn from_env() -> Result<Locations, String> {
        if let Some(home) = std::env::var_os("LANYARD_CLIENTS_HOME").filter(|h| !h.is_empty()) {
            return Ok(Locations::under_home(Path::new(&home)));
        }
        let home_var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
        let home = std::env::var_os(home_var)
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| format!("cannot find your home directory (${home_var} is not set)"))?;
        let mut locations = Locations::under_home(&home);
        let from_env = if cfg!(windows) {
            std::env::var_os("APPDATA")
        } else if cfg!(target_os = "macos") {
            None
        } else {
            std::env::var_os("XDG_CONFIG_HOME")
        };
        if let Some(dir) = from_env.filter(|d| !d.is_empty()) {
            locations.app_config = PathBuf::from(dir);
        }
        Ok(locations)
    }
}

impl Client {
    pub const ALL: [Client; 5] = [
        Client::ClaudeCode,
        Client::ClaudeDesktop,
        Client::VsCode,
        Client::Cursor,
        Client::GeminiCli,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Client::ClaudeCode => "claude-code",
            Client::ClaudeDesktop => "claude-desktop",
            Client::VsCode => "vscode",
            Client::Cursor => "cursor",
            Client::GeminiCli => "gemini",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Client::ClaudeCode => "Claude Code",
            Client::ClaudeDesktop => "Claude Desktop",
            Client::VsCode => "VS Code",
            Client::Cursor => "Cursor",
            Client::GeminiCli => "Gemini CLI",
        }
    }

    /// How its entries reach a token: Claude Code runs a headers helper for each request; the
    /// others start `lanyard proxy` as a stdio server (Gemini CLI's static headers would expire).
    pub fn mode(self) -> &'static str {
        match self {
            Client::ClaudeCode => "helper",
            _ => "proxy",
        }
    }

    /// The user-scope MCP config file.
    pub fn config_path(self, at: &Locations) -> PathBuf {
        match self {
            Client::ClaudeCode => at.home.join(".claude.json"),
            Client::ClaudeDesktop => at
                .app_config
                .join("Claude")
                .join("claude_desktop_config.json"),
            Client::VsCode => at.app_config.join("Code").join("User").join("mcp.json"),
            Client::Cursor => at.home.join(".cursor").join("mcp.json"),
            Client::GeminiCli => at.home.join(".gemini").join("settings.json"),
        }
    }

    /// A directory that exists once the client has run on this machine (a hint for `list`).
    pub fn presence_dir(self, at: &Locations) -> PathBuf {
        match self {
            Client::ClaudeCode => at.home.join(".claude"),
            _ => self
                .config_path(at)
                .parent()
                .map_or_else(|| at.home.clone(), Path::to_path_buf),
        }
    }

    /// VS Code reads its settings dialect, and Gemini CLI strips comments before parsing; the
    /// others parse strict JSON, so we do too (and never hand them a file they would reject).
    fn dialect(self) -> Dialect {
        match self {
            Client::VsCode | Client::GeminiCli => Dialect::Jsonc,
            _ => Dialect::Json,
        }
    }

    /// The top-level key of the server map.
    fn map_key(self) -> &'static str {
        match self {
            Client::VsCode => "servers",
            _ => "mcpServers",
        }
    }

    /// The comment line written above each entry, where the format has comments.
    fn marker_comment(self) -> Option<&'static str> {
        match self {
            Client::VsCode => {
                Some("// Managed by Lanyard: `lanyard clients remove vscode` takes it out.")
            }
            _ => None,
        }
    }

    /// The entry for `server`, launching `lanyard` at `exe`.
    fn entry(self, server: &ServerSpec, exe: &Path) -> Out {
        let exe = exe.to_string_lossy().into_owned();
        let proxy_args = Out::List(vec!["proxy".into(), server.id.clone()]);
        match self {
            Client::ClaudeCode => Out::Map(vec![
                ("type".into(), Out::Str("http".into())),
                ("url".into(), Out::Str(server.url.clone())),
                (
                    "headersHelper".into(),
                    Out::Str(format!(
                        "{} token --header-json --no-oauth-fallback {}",
                        shell_quote(&exe),
                        shell_quote(&server.id)
                    )),
                ),
            ]),
            Client::ClaudeDesktop | Client::Cursor | Client::GeminiCli => Out::Map(vec![
                ("command".into(), Out::Str(exe)),
                ("args".into(), proxy_args),
            ]),
            Client::VsCode => Out::Map(vec![
                ("type".into(), Out::Str("stdio".into())),
                ("command".into(), Out::Str(exe)),
                ("args".into(), proxy_args),
            ]),
        }
    }
}

impl std::str::FromStr for Client {
    type Err = String;

    fn from_str(name: &str) -> Result<Client, String> {
        Client::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Client::ALL.iter().map(|c| c.name()).collect();
                format!("unknown client {name:?} (known: {})", names.join(", "))
            })
    }
}

/// Claude Code's admin-owned `managed-mcp.json` for `servers`: the same entries `clients install
/// claude-code` writes into a user's `~/.claude.json`, as a whole document. When the file is
/// present Claude Code takes its server list from it alone, so it holds every server of the
/// policy, each fetching its headers from the `lanyard` at `exe` on the employee's machine.
pub fn claude_code_managed_mcp(servers: &[ServerSpec], exe: &Path) -> String {
    let entries: serde_json::Map<String, serde_json::Value> = servers
        .iter()
        .map(|server| {
            (
                format!("{KEY_PREFIX}{}", server.id),
                Client::ClaudeCode.entry(server, exe).to_json(),
            )
        })
        .collect();
    let document = serde_json::json!({ "mcpServers": entries });
    // A map of strings always serializes.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

/// Where Claude Code looks for `managed-mcp.json` on each operating system.
pub fn claude_code_managed_dir() -> &'static str {
    if cfg!(target_os = "macos") {
        "/Library/Application Support/ClaudeCode"
    } else if cfg!(windows) {
        r"C:\Program Files\ClaudeCode"
    } else {
        "/etc/claude-code"
    }
}

/// Quotes `s` for the shell that runs Claude Code's `headersHelper`, only when it needs it.
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else if cfg!(windows) {
        format!("\"{}\"", s.replace('"', "\\\""))
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The part of a policy server a client entry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub id: String,
    pub url: String,
}

impl From<&lanyard_core::policy::ServerPolicy> for ServerSpec {
    fn from(server: &lanyard_core::policy::ServerPolicy) -> ServerSpec {
        ServerSpec {
            id: server.id.clone(),
            url: server.url.clone(),
        }
    }
}

/// What to do to a client's config.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Make Lanyard's entries exactly these servers (adding, updating, and dropping entries of
    /// servers no longer in the policy).
    Install {
        servers: &'a [ServerSpec],
        exe: &'a Path,
    },
    /// Take out every Lanyard entry.
    Remove,
}

/// One member-level change a plan makes (or declines to make).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(String),
    Updated(String),
    Removed(String),
    /// A key Lanyard would use holds an entry Lanyard did not write: left alone.
    Conflict(String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added(key) => write!(f, "add {key}"),
            Change::Updated(key) => write!(f, "update {key}"),
            Change::Removed(key) => write!(f, "remove {key}"),
            Change::Conflict(key) => {
                write!(
                    f,
                    "skip {key}: an entry Lanyard did not write already uses that name"
                )
            }
        }
    }
}

/// The result of a plan: the whole new text, a unified diff against the old one, and the changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub new_text: String,
    pub diff: String,
    pub changes: Vec<Change>,
}

/// Why a client file cannot be edited. The file is left as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    Malformed(ParseError),
    /// The top level or the server map is not a JSON object.
    NotAnObject {
        what: String,
        line: usize,
        column: usize,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Malformed(e) => write!(f, "{e}"),
            PlanError::NotAnObject { what, line, column } => {
                write!(
                    f,
                    "line {line}, column {column}: {what} is not a JSON object"
                )
            }
        }
    }
}

impl std::error::Error for PlanError {}

/// A Lanyard entry found in a client config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanyardEntry {
    pub key: String,
    pub server_id: String,
}

/// Plans `action` on a client config whose current text is `current` (`None`: no file yet).
/// `label` names the file in the diff.
pub fn plan(
    client: Client,
    current: Option<&str>,
    action: Action<'_>,
    label: &str,
) -> Result<Edit, PlanError> {
    let dialect = client.dialect();
    let old = current.unwrap_or("");
    let blank = jsonc::is_blank(old, dialect);
    let mut changes = Vec::new();
    let new_text = match action {
        Action::Remove if blank => old.to_string(),
        Action::Remove => {
            let mut text = old.to_string();
            loop {
                let (_, map) = locate(client, &text)?;
                let Some(map) = map else { break };
                let members = map.members().unwrap_or(&[]);
                let Some(index) = members
                    .iter()
                    .position(|m| is_ours(client, &m.key, &m.value))
                else {
                    break;
                };
                changes.push(Change::Removed(members[index].key.clone()));
                text = edit::remove_member(&text, &map, index, client.marker_comment());
            }
            text
        }
        Action::Install { servers, exe } => {
            let mut text = if blank {
                // An empty (or comments-only) file becomes an empty object laid out on lines of
                // its own; comments stay.
                let newline = edit::Layout::detect(old).newline;
                let separator = if old.is_empty() || old.ends_with('\n') {
                    ""
                } else {
                    newline
                };
                format!("{old}{separator}{{{newline}}}{newline}")
            } else {
                old.to_string()
            };
            let (root, map) = locate(client, &text)?;
            if map.is_none() {
                text = edit::insert_member(
                    &text,
                    &root,
                    client.map_key(),
                    &Out::Map(Vec::new()),
                    None,
                );
            }
            for server in servers {
                let key = format!("{KEY_PREFIX}{}", server.id);
                let entry = client.entry(server, exe);
                let (_, map) = locate(client, &text)?;
                let map = map.ok_or_else(|| not_an_object(&text, 0, client.map_key()))?;
                match map.members().unwrap_or(&[]).iter().find(|m| m.key == key) {
                    None => {
                        text =
                            edit::insert_member(&text, &map, &key, &entry, client.marker_comment());
                        changes.push(Change::Added(key));
                    }
                    Some(member) if !is_ours(client, &member.key, &member.value) => {
                        changes.push(Change::Conflict(key));
                    }
                    Some(member) => {
                        let current_value = &text[member.value.start..member.value.end];
                        if edit::rendered_value(&text, &map, member, &entry) != current_value {
                            text = edit::replace_value(&text, &map, member, &entry);
                            changes.push(Change::Updated(key));
                        }
                    }
                }
            }
            // Entries of servers the policy no longer lists go.
            loop {
                let (_, map) = locate(client, &text)?;
                let Some(map) = map else { break };
                let members = map.members().unwrap_or(&[]);
                let stale = members.iter().position(|m| {
                    is_ours(client, &m.key, &m.value)
                        && !servers
                            .iter()
                            .any(|s| m.key.strip_prefix(KEY_PREFIX) == Some(s.id.as_str()))
                });
                let Some(index) = stale else { break };
                changes.push(Change::Removed(members[index].key.clone()));
                text = edit::remove_member(&text, &map, index, client.marker_comment());
            }
            if changes.iter().all(|c| matches!(c, Change::Conflict(_))) {
                // Nothing of ours changed: keep the file exactly (no empty map, no new file).
                old.to_string()
            } else {
                text
            }
        }
    };
    let diff = diff::unified(label, old, &new_text);
    Ok(Edit {
        new_text,
        diff,
        changes,
    })
}

/// The Lanyard entries in a client config's text (none for a missing or blank file).
pub fn lanyard_entries(client: Client, text: &str) -> Result<Vec<LanyardEntry>, PlanError> {
    if jsonc::is_blank(text, client.dialect()) {
        return Ok(Vec::new());
    }
    let (_, map) = locate(client, text)?;
    let members = map.as_ref().and_then(|m| m.members()).unwrap_or(&[]);
    Ok(members
        .iter()
        .filter(|m| is_ours(client, &m.key, &m.value))
        .map(|m| LanyardEntry {
            key: m.key.clone(),
            server_id: m.key.strip_prefix(KEY_PREFIX).unwrap_or(&m.key).to_string(),
        })
        .collect())
}

fn not_an_object(text: &str, offset: usize, what: &str) -> PlanError {
    let (line, column) = jsonc::line_column(text, offset);
    PlanError::NotAnObject {
        what: what.to_string(),
        line,
        column,
    }
}

/// Parses `text` and finds its top-level object and (if present) the client's server map in it.
fn locate(client: Client, text: &str) -> Result<(Node, Option<Node>), PlanError> {
    let root = jsonc::parse(text, client.dialect()).map_err(PlanError::Malformed)?;
    if root.members().is_none() {
        return Err(not_an_object(text, root.start, "the top level"));
    }
    let map = match root.get(client.map_key()) {
        None => None,
        Some(map) if map.members().is_some() => Some(map.clone()),
        Some(other) => {
            return Err(not_an_object(
                text,
                other.start,
                &format!("\"{}\"", client.map_key()),
            ))
        }
    };
    Ok((root, map))
}

/// Whether a member of the server map is one Lanyard wrote (see the module documentation).
fn is_ours(client: Client, key: &str, value: &Node) -> bool {
    if !key.starts_with(KEY_PREFIX) {
        return false;
    }
    match client {
        Client::ClaudeCode => value
            .get("headersHelper")
            .and_then(Node::as_str)
            .is_some_and(|helper| {
                helper.contains("lanyard") && helper.contains(" token --header-json ")
            }),
        _ => {
            let command_is_lanyard =
                value
                    .get("command")
                    .and_then(Node::as_str)
                    .is_some_and(|command| {
                        let file = command.rsplit(['/', '\\']).next().unwrap_or(command);
                        file == "lanyard" || file.eq_ignore_ascii_case("lanyard.exe")
                    });
            let runs_proxy = value
                .get("args")
                .and_then(Node::as_array)
                .and_then(|args| args.first())
                .and_then(Node::as_str)
                == Some("proxy");
            command_is_lanyard && runs_proxy
        }
    }
}
