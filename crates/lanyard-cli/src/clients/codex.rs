//! OpenAI Codex CLI's `config.toml`: the pure plan that writes Lanyard's `[mcp_servers.lanyard-<id>]`
//! tables into it (or takes them out), and the whole document an administrator deploys as Codex's
//! system configuration.
//!
//! The file is TOML, edited in place with `toml_edit`: the user's other keys, tables, comments and
//! layout stay as they are, and each table Lanyard adds carries a `# Managed by Lanyard` line.
//! Nothing here touches the disk or writes a secret.
//!
//! Which entry Codex gets, and why (observed with Codex CLI 0.169.0, see the interop suite):
//!
//! - **Through Lanyard** (the default): a stdio entry running `lanyard proxy <id>`, not an HTTP
//!   entry with `http_headers_helper`. Codex runs a headers helper once and reuses its headers
//!   until a request is refused; when the helper answers with Lanyard's credential-free
//!   `Authorization` for a denied server, the server's 401 makes Codex say "The … MCP server is not
//!   logged in. Run `codex mcp login …`": exactly the per-server OAuth that enterprise-managed
//!   authorization exists to remove. A stdio server has no OAuth in Codex at all, the proxy asks
//!   the agent for a fresh token on every request, and a refusal reaches Codex as the IdP's message.
//! - Codex starts stdio servers with a trimmed environment (`HOME`, `PATH`, `USER`, … but not
//!   `XDG_RUNTIME_DIR`), so each entry forwards `XDG_RUNTIME_DIR` and `LANYARD_AGENT_SOCKET` by
//!   name (`env_vars`) and the proxy finds the agent the shell that started Codex would.
//! - **Native** (`settings.ai_clients_native` names `codex`): Codex does enterprise-managed
//!   authorization itself. Each enterprise-managed server with a public client gets
//!   `auth = "ema_auth"` with its client id at the server's authorization server and its scopes,
//!   the IdP goes into `[mcp_enterprise_managed_auth.idp]` (`issuer`, `client_id`), and the feature
//!   flag `[features] use_xaa = true` is set: Codex ignores `ema_auth` servers without it (it lists
//!   them as disabled). Codex accepts neither from a project's `.codex/config.toml`, only from the
//!   user's or the system's file.
//!
//! A table is Lanyard's when its key is `lanyard-<server id>` *and* it has one of those two shapes
//! (a `lanyard` command whose first argument is `proxy`, or `auth = "ema_auth"`); a user's own
//! `lanyard-x` of any other shape is never changed or removed. The IdP table and the feature flag
//! are Lanyard's only when they carry its marker.

use std::path::Path;

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

use super::{diff, Change, Edit, LanyardEntry, NativeIdp, PlanError, ServerSpec, KEY_PREFIX};

/// The comment line above each table Lanyard writes.
pub const MARKER: &str = "# Managed by Lanyard: `lanyard clients remove codex` takes it out.";
/// What `MARKER` is recognised by (also in a value's trailing comment).
const MARK: &str = "Managed by Lanyard";

/// The variables Codex is told to pass on to `lanyard proxy`: where the agent listens.
pub const FORWARDED_ENV: [&str; 2] = ["XDG_RUNTIME_DIR", "LANYARD_AGENT_SOCKET"];

const SERVERS: &str = "mcp_servers";
const EMA: &str = "mcp_enterprise_managed_auth";
const FEATURES: &str = "features";
const XAA: &str = "use_xaa";

fn malformed(e: toml_edit::TomlError) -> PlanError {
    PlanError::MalformedToml(e.to_string().trim_end().replace('\n', " "))
}

/// Plans `action` on Codex's config whose current text is `current` (`None`: no file yet).
pub(super) fn plan(
    current: Option<&str>,
    action: super::Action<'_>,
    label: &str,
) -> Result<Edit, PlanError> {
    let old = current.unwrap_or("");
    let mut doc: DocumentMut = old.parse().map_err(malformed)?;
    let mut changes = Vec::new();
    match action {
        super::Action::Remove => {
            if let Some(servers) = servers_table(&mut doc, false)? {
                remove_ours(servers, |_| true, &mut changes);
                let empty = servers.is_empty() && servers.is_implicit();
                if empty {
                    doc.as_table_mut().remove(SERVERS);
                }
            }
            if remove_native_settings(&mut doc) {
                changes.push(Change::Removed(format!("{EMA}.idp")));
            }
        }
        super::Action::Install {
            servers: specs,
            exe,
            native,
        } => {
            let mut wanted: Vec<(String, Table)> = Vec::new();
            for server in specs {
                let key = format!("{KEY_PREFIX}{}", server.id);
                match native {
                    None => wanted.push((key, proxy_table(server, exe))),
                    Some(_) => match server.native_unfit {
                        Some(why) => changes.push(Change::Skipped(key, why)),
                        None => wanted.push((key, native_table(server))),
                    },
                }
            }
            let servers = servers_table(&mut doc, true)?
                .ok_or_else(|| PlanError::MalformedToml(format!("no [{SERVERS}] table")))?;
            for (key, table) in &wanted {
                match servers.get(key) {
                    None => {
                        servers.insert(key, Item::Table(table.clone()));
                        changes.push(Change::Added(key.clone()));
                    }
                    Some(item) if !is_ours(item) => changes.push(Change::Conflict(key.clone())),
                    Some(item) => {
                        if canonical_item(item) != canonical_table(table) {
                            let mut replacement = table.clone();
                            if let Some(existing) = item.as_table() {
                                *replacement.decor_mut() = existing.decor().clone();
                                if let Some(position) = existing.position() {
                                    replacement.set_position(Some(position));
                                }
                            }
                            servers.insert(key, Item::Table(replacement));
                            changes.push(Change::Updated(key.clone()));
                        }
                    }
                }
            }
            let keep: Vec<&str> = wanted.iter().map(|(k, _)| k.as_str()).collect();
            remove_ours(servers, |key| !keep.contains(&key), &mut changes);
            // Nothing of ours left in a table we made: no empty table stays behind.
            let empty = servers.is_empty() && servers.is_implicit();
            if empty {
                doc.as_table_mut().remove(SERVERS);
            }
            match native {
                Some(idp) => {
                    if set_native_settings(&mut doc, idp)? {
                        changes.push(Change::Updated(format!("{EMA}.idp")));
                    }
                }
                None => {
                    if remove_native_settings(&mut doc) {
                        changes.push(Change::Removed(format!("{EMA}.idp")));
                    }
                }
            }
        }
    }
    let new_text = if changes
        .iter()
        .all(|c| matches!(c, Change::Conflict(_) | Change::Skipped(..)))
    {
        old.to_string()
    } else {
        doc.to_string()
    };
    let diff = diff::unified(label, old, &new_text);
    Ok(Edit {
        new_text,
        diff,
        changes,
    })
}

/// The `[mcp_servers]` table (created, implicit, when `create`).
fn servers_table(doc: &mut DocumentMut, create: bool) -> Result<Option<&mut Table>, PlanError> {
    let root = doc.as_table_mut();
    if root.get(SERVERS).is_none() {
        if !create {
            return Ok(None);
        }
        let mut table = Table::new();
        table.set_implicit(true);
        root.insert(SERVERS, Item::Table(table));
    }
    match root.get_mut(SERVERS) {
        Some(Item::Table(table)) => Ok(Some(table)),
        Some(_) => Err(PlanError::MalformedToml(format!(
            "`{SERVERS}` is not a table; left unchanged"
        ))),
        None => Ok(None),
    }
}

/// Removes every table of ours in `servers` whose key `drop` picks, noting each.
fn remove_ours(servers: &mut Table, doomed: impl Fn(&str) -> bool, changes: &mut Vec<Change>) {
    let ours: Vec<String> = servers
        .iter()
        .filter(|(key, item)| key.starts_with(KEY_PREFIX) && is_ours(item) && doomed(key))
        .map(|(key, _)| key.to_string())
        .collect();
    for key in ours {
        servers.remove(&key);
        changes.push(Change::Removed(key));
    }
}

/// Whether a server table is one Lanyard writes (see the module documentation).
fn is_ours(item: &Item) -> bool {
    let Some(table) = item.as_table_like() else {
        return false;
    };
    let runs_proxy = table
        .get("command")
        .and_then(Item::as_str)
        .is_some_and(|command| {
            let file = command.rsplit(['/', '\\']).next().unwrap_or(command);
            file == "lanyard" || file.eq_ignore_ascii_case("lanyard.exe")
        })
        && table
            .get("args")
            .and_then(Item::as_array)
            .and_then(|args| args.get(0))
            .and_then(Value::as_str)
            == Some("proxy");
    let native = table.get("auth").and_then(Item::as_str) == Some("ema_auth");
    runs_proxy || native
}

fn string_array<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    let mut array = Array::new();
    for item in items {
        array.push(item);
    }
    Value::Array(array)
}

fn marked(mut table: Table) -> Table {
    table.decor_mut().set_prefix(format!("\n{MARKER}\n"));
    table
}

/// The stdio entry running `lanyard proxy <id>`.
fn proxy_table(server: &ServerSpec, exe: &Path) -> Table {
    let mut table = Table::new();
    table.insert(
        "command",
        toml_edit::value(exe.to_string_lossy().into_owned()),
    );
    table.insert(
        "args",
        Item::Value(string_array(["proxy", server.id.as_str()])),
    );
    table.insert("env_vars", Item::Value(string_array(FORWARDED_ENV)));
    marked(table)
}

/// The entry for Codex's own enterprise-managed authorization.
fn native_table(server: &ServerSpec) -> Table {
    let mut table = Table::new();
    table.insert("url", toml_edit::value(server.url.clone()));
    table.insert("auth", toml_edit::value("ema_auth"));
    if !server.scopes.is_empty() {
        table.insert(
            "scopes",
            Item::Value(string_array(server.scopes.iter().map(String::as_str))),
        );
    }
    let mut oauth = InlineTable::new();
    oauth.insert("client_id", server.client_id.clone().into());
    table.insert("oauth", Item::Value(Value::InlineTable(oauth)));
    marked(table)
}

/// A formatting-free rendering of a value, to compare what an entry says, not how.
fn canonical_value(value: &Value) -> String {
    match value {
        Value::Array(array) => {
            let items: Vec<String> = array.iter().map(canonical_value).collect();
            format!("[{}]", items.join(","))
        }
        Value::InlineTable(table) => {
            let items: Vec<String> = table
                .iter()
                .map(|(k, v)| format!("{k}={}", canonical_value(v)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        other => {
            let mut bare = other.clone();
            bare.decor_mut().clear();
            bare.to_string()
        }
    }
}

fn canonical_item(item: &Item) -> String {
    match item {
        Item::Value(value) => canonical_value(value),
        Item::Table(table) => canonical_table(table),
        Item::ArrayOfTables(_) | Item::None => String::from("?"),
    }
}

fn canonical_table(table: &Table) -> String {
    let items: Vec<String> = table
        .iter()
        .map(|(k, v)| format!("{k}={}", canonical_item(v)))
        .collect();
    format!("{{{}}}", items.join(","))
}

/// Writes the IdP table and the feature flag; whether anything changed. A user's own IdP table
/// (without the marker) is an error: Codex takes one IdP, and it is not Lanyard's to replace.
fn set_native_settings(doc: &mut DocumentMut, idp: &NativeIdp) -> Result<bool, PlanError> {
    let mut changed = false;
    let root = doc.as_table_mut();
    if root.get(EMA).is_none() {
        let mut parent = Table::new();
        parent.set_implicit(true);
        root.insert(EMA, Item::Table(parent));
    }
    let Some(parent) = root.get_mut(EMA).and_then(Item::as_table_mut) else {
        return Err(PlanError::MalformedToml(format!(
            "`{EMA}` is not a table; left unchanged"
        )));
    };
    let mut wanted = Table::new();
    wanted.insert("issuer", toml_edit::value(idp.issuer.clone()));
    wanted.insert("client_id", toml_edit::value(idp.client_id.clone()));
    let wanted = marked(wanted);
    match parent.get("idp") {
        Some(Item::Table(current)) if !current.decor().prefix().is_some_and(has_mark) => {
            return Err(PlanError::MalformedToml(format!(
                "[{EMA}.idp] is set by someone else; left unchanged (Codex takes one identity provider)"
            )));
        }
        Some(current) if canonical_item(current) == canonical_table(&wanted) => {}
        _ => {
            parent.insert("idp", Item::Table(wanted));
            changed = true;
        }
    }
    if root.get(FEATURES).is_none() {
        root.insert(FEATURES, Item::Table(marked(Table::new())));
    }
    let Some(features) = root.get_mut(FEATURES).and_then(Item::as_table_mut) else {
        return Err(PlanError::MalformedToml(format!(
            "`{FEATURES}` is not a table; left unchanged"
        )));
    };
    if features.get(XAA).and_then(Item::as_bool) != Some(true) {
        let mut flag = Value::from(true);
        flag.decor_mut().set_suffix(format!(" # {MARK}"));
        features.insert(XAA, Item::Value(flag));
        changed = true;
    }
    Ok(changed)
}

fn has_mark(decor: &toml_edit::RawString) -> bool {
    decor.as_str().is_some_and(|s| s.contains(MARK))
}

/// Takes out the IdP table and the feature flag where they carry Lanyard's marker; whether any did.
fn remove_native_settings(doc: &mut DocumentMut) -> bool {
    let mut removed = false;
    let root = doc.as_table_mut();
    if let Some(parent) = root.get_mut(EMA).and_then(Item::as_table_mut) {
        let ours = parent
            .get("idp")
            .and_then(Item::as_table)
            .is_some_and(|t| t.decor().prefix().is_some_and(has_mark));
        if ours {
            parent.remove("idp");
            removed = true;
        }
        if parent.is_empty() && parent.is_implicit() {
            root.remove(EMA);
        }
    }
    if let Some(features) = root.get_mut(FEATURES).and_then(Item::as_table_mut) {
        let flag_ours = features
            .get(XAA)
            .and_then(Item::as_value)
            .is_some_and(|v| v.decor().suffix().is_some_and(has_mark));
        if flag_ours {
            features.remove(XAA);
            removed = true;
        }
        let table_ours = features.decor().prefix().is_some_and(has_mark);
        if features.is_empty() && table_ours {
            root.remove(FEATURES);
        }
    }
    removed
}

/// The Lanyard entries in Codex's config text (none for a missing or empty file).
pub(super) fn lanyard_entries(text: &str) -> Result<Vec<LanyardEntry>, PlanError> {
    let doc: DocumentMut = text.parse().map_err(malformed)?;
    let Some(servers) = doc.as_table().get(SERVERS).and_then(Item::as_table_like) else {
        return Ok(Vec::new());
    };
    Ok(servers
        .iter()
        .filter(|(key, item)| key.starts_with(KEY_PREFIX) && is_ours(item))
        .map(|(key, _)| LanyardEntry {
            key: key.to_string(),
            server_id: key.strip_prefix(KEY_PREFIX).unwrap_or(key).to_string(),
        })
        .collect())
}

/// Codex's system configuration for `servers` (`/etc/codex/config.toml`,
/// `%ProgramData%\OpenAI\Codex\config.toml`): the same tables `clients install codex` writes, as a
/// whole document, either through Lanyard at `exe` or, with `native`, Codex's own EMA.
pub fn managed_config(servers: &[ServerSpec], exe: &Path, native: Option<&NativeIdp>) -> String {
    let action = super::Action::Install {
        servers,
        exe,
        native,
    };
    let header =
        "# Codex CLI system configuration written by `lanyard clients export codex-managed`.\n";
    match plan(Some(header), action, "codex-managed") {
        Ok(edit) => edit.new_text,
        // A document made from nothing but this header always parses.
        Err(_) => header.to_string(),
    }
}

/// Where Codex reads its system configuration on this operating system (below the user's own
/// `config.toml`: an administrator's defaults, which the user's file can add to).
pub fn managed_config_path() -> &'static str {
    if cfg!(windows) {
        r"%ProgramData%\OpenAI\Codex\config.toml"
    } else {
        "/etc/codex/config.toml"
    }
}
