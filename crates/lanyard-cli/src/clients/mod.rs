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
//! entry whose `headersHelper` runs `lanyard token --header-json`, or (VS Code doing
//! enterprise-managed authorization itself) an http entry with `oauth.enterpriseManaged: true`. A
//! user's own `lanyard-x` entry of any other shape is never changed or removed. VS Code's
//! `mcp.json` is JSON with comments, so there each entry also gets a `// Managed by Lanyard …`
//! line above it, for people reading it. Codex CLI's `config.toml` is TOML: [`codex`] plans it.

pub mod codex;
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
    Codex,
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
            AiClient::Codex => Self::Codex,
        }
    }

    /// The client a policy's `settings.ai_clients_native` entry names.
    pub fn from_native(client: lanyard_core::policy::NativeEmaClient) -> Self {
        use lanyard_core::policy::NativeEmaClient;
        match client {
            NativeEmaClient::Vscode => Self::VsCode,
            NativeEmaClient::Codex => Self::Codex,
        }
    }

    /// Whether this client can do enterprise-managed authorization itself.
    pub fn has_native_ema(self) -> bool {
        matches!(self, Client::VsCode | Client::Codex)
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
    /// Codex CLI's home: `$CODEX_HOME`, else `~/.codex`.
    pub codex_home: PathBuf,
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
            codex_home: home.join(".codex"),
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
        if let Some(dir) = std::env::var_os("CODEX_HOME").filter(|d| !d.is_empty()) {
            locations.codex_home = PathBuf::from(dir);
        }
        Ok(locations)
    }
}

impl Client {
    pub const ALL: [Client; 6] = [
        Client::ClaudeCode,
        Client::ClaudeDesktop,
        Client::VsCode,
        Client::Cursor,
        Client::GeminiCli,
        Client::Codex,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Client::ClaudeCode => "claude-code",
            Client::ClaudeDesktop => "claude-desktop",
            Client::VsCode => "vscode",
            Client::Cursor => "cursor",
            Client::GeminiCli => "gemini",
            Client::Codex => "codex",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Client::ClaudeCode => "Claude Code",
            Client::ClaudeDesktop => "Claude Desktop",
            Client::VsCode => "VS Code",
            Client::Cursor => "Cursor",
            Client::GeminiCli => "Gemini CLI",
            Client::Codex => "Codex CLI",
        }
    }

    /// How its entries reach a token: Claude Code runs a headers helper for each request; the
    /// others start `lanyard proxy` as a stdio server (Gemini CLI's static headers would expire;
    /// Codex would offer its own OAuth for a denied server, see [`codex`]); a client the policy
    /// lets do enterprise-managed authorization itself is `native`.
    pub fn mode(self, native: bool) -> &'static str {
        match self {
            _ if native && self.has_native_ema() => "native",
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
            Client::Codex => at.codex_home.join("config.toml"),
        }
    }

    /// VS Code's user `settings.json`, where a native setup's IdP goes.
    pub fn vscode_settings_path(at: &Locations) -> PathBuf {
        at.app_config
            .join("Code")
            .join("User")
            .join("settings.json")
    }

    /// A directory that exists once the client has run on this machine (a hint for `list`).
    pub fn presence_dir(self, at: &Locations) -> PathBuf {
        match self {
            Client::ClaudeCode => at.home.join(".claude"),
            Client::Codex => at.codex_home.clone(),
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

    /// VS Code's own enterprise-managed entry for `server`: its client id at the server's
    /// authorization server, the IdP coming from `mcp.enterpriseManagedAuth.idp`.
    fn native_entry(server: &ServerSpec) -> Out {
        Out::Map(vec![
            ("type".into(), Out::Str("http".into())),
            ("url".into(), Out::Str(server.url.clone())),
            (
                "oauth".into(),
                Out::Map(vec![
                    ("clientId".into(), Out::Str(server.client_id.clone())),
                    ("enterpriseManaged".into(), Out::Bool(true)),
                ]),
            ),
        ])
    }

    /// The entry for `server`, launching `lanyard` at `exe`.
    fn entry(self, server: &ServerSpec, exe: &Path) -> Out {
        let exe = exe.to_string_lossy().into_owned();
        let proxy_args = Out::List(vec!["proxy".into(), server.id.clone()]);
        match self {
            // A bound token needs a proof per request, which only the proxy can ask for.
            Client::ClaudeCode if server.needs_proxy => Out::Map(vec![
                ("type".into(), Out::Str("stdio".into())),
                ("command".into(), Out::Str(exe)),
                ("args".into(), proxy_args),
            ]),
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
            Client::ClaudeDesktop | Client::Cursor | Client::GeminiCli | Client::Codex => {
                Out::Map(vec![
                    ("command".into(), Out::Str(exe)),
                    ("args".into(), proxy_args),
                ])
            }
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
    /// The client id at the server's authorization server (a native entry names it).
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Why a client doing enterprise-managed authorization itself cannot have this server
    /// (`None`: it can).
    pub native_unfit: Option<&'static str>,
    /// Its tokens are DPoP-bound by policy (`servers[].dpop: required`): a fixed header cannot
    /// carry them, so even Claude Code reaches it through `lanyard proxy`.
    pub needs_proxy: bool,
}

#[cfg(test)]
impl ServerSpec {
    /// An enterprise-managed server with a public client and no scopes.
    pub fn new(id: &str, url: &str, client_id: &str) -> ServerSpec {
        ServerSpec {
            id: id.into(),
            url: url.into(),
            client_id: client_id.into(),
            scopes: Vec::new(),
            native_unfit: None,
            needs_proxy: false,
        }
    }
}

impl From<&lanyard_core::policy::ServerPolicy> for ServerSpec {
    fn from(server: &lanyard_core::policy::ServerPolicy) -> ServerSpec {
        use lanyard_core::policy::{ClientAuthPolicy, ServerMode};
        let native_unfit = match (&server.mode, &server.client_auth) {
            (ServerMode::EnterpriseManaged, ClientAuthPolicy::None) => None,
            (ServerMode::EnterpriseManaged, _) => Some(
                "its client authenticates with a secret or a key, which Lanyard never writes into \
                 an AI client's file; it stays with Lanyard's other clients",
            ),
            // A client's own OAuth would ask the user to consent again and keep its own tokens.
            (ServerMode::Oauth, _) => Some(
                "Lanyard holds its connection (`lanyard connect`), which a client doing \
                 enterprise-managed authorization itself cannot use; it stays with Lanyard's \
                 other clients",
            ),
            _ => Some("it is for machines (no user signs in), not an AI client's own sign-in"),
        };
        ServerSpec {
            id: server.id.clone(),
            url: server.url.clone(),
            client_id: server.client_id.clone(),
            scopes: server.scopes.clone(),
            native_unfit,
            needs_proxy: server.dpop == lanyard_core::oauth::DpopUse::Required,
        }
    }
}

/// The identity provider a client doing enterprise-managed authorization itself signs in at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeIdp {
    pub issuer: String,
    pub client_id: String,
}

impl From<&lanyard_core::policy::IdpPolicy> for NativeIdp {
    fn from(idp: &lanyard_core::policy::IdpPolicy) -> NativeIdp {
        NativeIdp {
            issuer: idp.issuer.clone(),
            client_id: idp.client_id.clone(),
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
        /// The client does enterprise-managed authorization itself, at this IdP: its own
        /// configuration is written instead of entries that go through Lanyard.
        native: Option<&'a NativeIdp>,
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
    /// A server the client cannot have in its native setup, and why.
    Skipped(String, &'static str),
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
            Change::Skipped(key, why) => write!(f, "skip {key}: {why}"),
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
    /// A TOML file that does not parse (the parser's message, with its line and column).
    MalformedToml(String),
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
            PlanError::MalformedToml(e) => write!(f, "{e}"),
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
    if client == Client::Codex {
        return codex::plan(current, action, label);
    }
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
                    .position(|m| is_ours(client, &text, &m.key, &m.value))
                else {
                    break;
                };
                changes.push(Change::Removed(members[index].key.clone()));
                text = edit::remove_member(&text, &map, index, client.marker_comment());
            }
            text
        }
        Action::Install {
            servers,
            exe,
            native,
        } => {
            let mut text = if blank {
                with_empty_object(old)
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
            let native = native.filter(|_| client.has_native_ema());
            let mut kept: Vec<&ServerSpec> = Vec::new();
            for server in servers {
                let key = format!("{KEY_PREFIX}{}", server.id);
                let entry = match (native, server.native_unfit) {
                    (None, _) => client.entry(server, exe),
                    (Some(_), None) => Client::native_entry(server),
                    (Some(_), Some(why)) => {
                        changes.push(Change::Skipped(key, why));
                        continue;
                    }
                };
                kept.push(server);
                let (_, map) = locate(client, &text)?;
                let map = map.ok_or_else(|| not_an_object(&text, 0, client.map_key()))?;
                match map.members().unwrap_or(&[]).iter().find(|m| m.key == key) {
                    None => {
                        text =
                            edit::insert_member(&text, &map, &key, &entry, client.marker_comment());
                        changes.push(Change::Added(key));
                    }
                    Some(member) if !is_ours(client, &text, &member.key, &member.value) => {
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
                    is_ours(client, &text, &m.key, &m.value)
                        && !kept
                            .iter()
                            .any(|s| m.key.strip_prefix(KEY_PREFIX) == Some(s.id.as_str()))
                });
                let Some(index) = stale else { break };
                changes.push(Change::Removed(members[index].key.clone()));
                text = edit::remove_member(&text, &map, index, client.marker_comment());
            }
            if changes
                .iter()
                .all(|c| matches!(c, Change::Conflict(_) | Change::Skipped(..)))
            {
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
    if client == Client::Codex {
        return codex::lanyard_entries(text);
    }
    if jsonc::is_blank(text, client.dialect()) {
        return Ok(Vec::new());
    }
    let (_, map) = locate(client, text)?;
    let members = map.as_ref().and_then(|m| m.members()).unwrap_or(&[]);
    Ok(members
        .iter()
        .filter(|m| is_ours(client, text, &m.key, &m.value))
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

/// An empty (or comments-only) file with an empty object added on lines of its own; its
/// comments stay.
fn with_empty_object(old: &str) -> String {
    let newline = edit::Layout::detect(old).newline;
    let separator = if old.is_empty() || old.ends_with('\n') {
        ""
    } else {
        newline
    };
    format!("{old}{separator}{{{newline}}}{newline}")
}

/// Whether a member of the server map is one Lanyard wrote (see the module documentation).
fn is_ours(client: Client, text: &str, key: &str, value: &Node) -> bool {
    if !key.starts_with(KEY_PREFIX) {
        return false;
    }
    let enterprise_managed = value
        .get("oauth")
        .and_then(|oauth| oauth.get("enterpriseManaged"))
        .is_some_and(|flag| text.get(flag.start..flag.end) == Some("true"));
    if client == Client::VsCode && enterprise_managed {
        return true;
    }
    let command_is_lanyard = value
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
    let lanyard_proxy = command_is_lanyard && runs_proxy;
    match client {
        // The headers helper, or the proxy for a server whose tokens are DPoP-bound.
        Client::ClaudeCode => {
            lanyard_proxy
                || value
                    .get("headersHelper")
                    .and_then(Node::as_str)
                    .is_some_and(|helper| {
                        helper.contains("lanyard") && helper.contains(" token --header-json ")
                    })
        }
        _ => lanyard_proxy,
    }
}

/// VS Code's setting naming the IdP of its own enterprise-managed authorization (also pushable as
/// the `McpEnterpriseManagedAuthIdp` policy, see [`vscode_policy`]).
pub const VSCODE_IDP_SETTING: &str = "mcp.enterpriseManagedAuth.idp";

fn vscode_idp_value(idp: &NativeIdp) -> Out {
    Out::Map(vec![
        ("issuer".into(), Out::Str(idp.issuer.clone())),
        ("clientId".into(), Out::Str(idp.client_id.clone())),
    ])
}

/// Whether the line just above `offset` is exactly `comment` (trimmed).
fn preceded_by(text: &str, offset: usize, comment: &str) -> bool {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    if line_start == 0 || !text[line_start..offset].trim().is_empty() {
        return false;
    }
    let above = text[..line_start - 1].rfind('\n').map_or(0, |i| i + 1);
    text[above..line_start].trim() == comment
}

/// Plans VS Code's user `settings.json`: with `idp`, its `mcp.enterpriseManagedAuth.idp` set to it
/// (below Lanyard's comment line); without, that setting taken out if Lanyard's comment marks it.
/// A value someone else set is never changed.
pub fn plan_vscode_settings(
    current: Option<&str>,
    idp: Option<&NativeIdp>,
    label: &str,
) -> Result<Edit, PlanError> {
    let marker = Client::VsCode.marker_comment();
    let old = current.unwrap_or("");
    let blank = jsonc::is_blank(old, Dialect::Jsonc);
    let mut changes = Vec::new();
    let new_text = match idp {
        None if blank => old.to_string(),
        None => {
            let root = jsonc::parse(old, Dialect::Jsonc).map_err(PlanError::Malformed)?;
            let members = root.members().unwrap_or(&[]);
            match members.iter().position(|m| m.key == VSCODE_IDP_SETTING) {
                Some(index)
                    if marker.is_some_and(|c| preceded_by(old, members[index].key_start, c)) =>
                {
                    changes.push(Change::Removed(VSCODE_IDP_SETTING.into()));
                    edit::remove_member(old, &root, index, marker)
                }
                _ => old.to_string(),
            }
        }
        Some(idp) => {
            let text = if blank {
                with_empty_object(old)
            } else {
                old.to_string()
            };
            let root = jsonc::parse(&text, Dialect::Jsonc).map_err(PlanError::Malformed)?;
            if root.members().is_none() {
                return Err(not_an_object(&text, root.start, "the top level"));
            }
            let value = vscode_idp_value(idp);
            let members = root.members().unwrap_or(&[]);
            match members.iter().find(|m| m.key == VSCODE_IDP_SETTING) {
                None => {
                    changes.push(Change::Added(VSCODE_IDP_SETTING.into()));
                    edit::insert_member(&text, &root, VSCODE_IDP_SETTING, &value, marker)
                }
                Some(member)
                    if !marker.is_some_and(|c| preceded_by(&text, member.key_start, c)) =>
                {
                    changes.push(Change::Conflict(VSCODE_IDP_SETTING.into()));
                    old.to_string()
                }
                Some(member) => {
                    let current_value = &text[member.value.start..member.value.end];
                    if edit::rendered_value(&text, &root, member, &value) == current_value {
                        old.to_string()
                    } else {
                        changes.push(Change::Updated(VSCODE_IDP_SETTING.into()));
                        edit::replace_value(&text, &root, member, &value)
                    }
                }
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

/// What an administrator pushes to VS Code for its own enterprise-managed authorization: the
/// `McpEnterpriseManagedAuthIdp` policy (VS Code 1.122+), as Linux's `/etc/vscode/policy.json`.
/// The setting is an object, so the policy's value is that object as a JSON string (the same
/// string goes into the Windows registry value or the macOS profile key of that name).
pub fn vscode_policy(idp: &NativeIdp) -> String {
    let value = vscode_idp_value(idp).to_json().to_string();
    let document = serde_json::json!({ "McpEnterpriseManagedAuthIdp": value });
    // A map of strings always serializes.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}
