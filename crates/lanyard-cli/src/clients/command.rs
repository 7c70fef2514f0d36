//! `lanyard clients list|install|remove`: reads each client's config file, applies the pure plan
//! from the parent module, and writes the result safely.
//!
//! Owns the file I/O of client wiring: a timestamped backup next to the file before every write,
//! an atomic replace (temporary file + rename, following a symlinked config to its target), and a
//! refusal to write when the file changed under us. A malformed file is reported with its line and
//! column and left untouched. It prints paths and entry names only, never anything secret, and it
//! never talks to the engine or the keychain.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use lanyard_core::policy::sources::platform::PolicySources;
use lanyard_core::policy::FileChecks;

use super::{
    lanyard_entries, plan, plan_vscode_settings, Action, Change, Client, Edit, Locations,
    NativeIdp, PlanError, ServerSpec,
};

/// Exit codes, matching the rest of the `lanyard` command.
const FAILURE: u8 = 1;
const MISCONFIGURED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Show each known AI client, its config file and the Lanyard entries in it.
    List,
    /// Write every server of the policy into CLIENT's config (claude-code, claude-desktop,
    /// vscode, cursor, gemini, codex or all). A client the policy names in
    /// `settings.ai_clients_native` (vscode, codex) gets its own enterprise-managed configuration
    /// instead.
    Install {
        client: String,
        /// Print the change as a unified diff and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Edit this file instead of the client's usual config file.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Write an administrator's file that wires every server of the policy for a whole fleet.
    /// `claude-code-managed`: Claude Code's `managed-mcp.json` (deploy it with the same MDM
    /// channel as Lanyard's policy; when present, Claude Code takes its server list from it alone).
    /// `codex-managed`: Codex CLI's system `config.toml` (`/etc/codex/config.toml`,
    /// `%ProgramData%\OpenAI\Codex\config.toml`). `vscode-policy`: VS Code's
    /// `McpEnterpriseManagedAuthIdp` policy as `/etc/vscode/policy.json`.
    Export {
        /// What to write: claude-code-managed, codex-managed or vscode-policy.
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Where `lanyard` is installed on the employees' machines (default: this executable).
        #[arg(long, value_name = "PATH")]
        lanyard_path: Option<PathBuf>,
    },
    /// Take every Lanyard entry out of CLIENT's config, leaving all others.
    Remove {
        client: String,
        /// Print the change as a unified diff and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Edit this file instead of the client's usual config file.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

/// Runs one `lanyard clients …` command; returns the process exit code.
pub fn run(command: &ClientsCommand, policy_sources: &PolicySources) -> u8 {
    let locations = match Locations::from_env() {
        Ok(locations) => locations,
        Err(e) => {
            eprintln!("lanyard: {e}");
            return FAILURE;
        }
    };
    match command {
        ClientsCommand::List => list(&locations, policy_sources),
        ClientsCommand::Install {
            client,
            dry_run,
            config,
        } => {
            // Wiring a client needs no secret: a key file this machine cannot read is the
            // agent's problem to report (its status names it), not a reason to wire nothing.
            let policy = match policy_sources.load_with(FileChecks::Skip) {
                Ok(snapshot) => {
                    let policy = snapshot.policy;
                    let source = policy_sources
                        .explicit_file()
                        .map_or_else(|| "the managed policy".into(), |f| f.display().to_string());
                    for e in policy.validate(&source) {
                        eprintln!(
                            "lanyard: warning: {e} — the entry is written anyway; \
                             `lanyard status` will show the server's error until this is fixed"
                        );
                    }
                    policy
                }
                Err(errors) => {
                    eprintln!("lanyard: the policy is not usable:");
                    for e in errors {
                        eprintln!("  {e}");
                    }
                    return MISCONFIGURED;
                }
            };
            let servers: Vec<ServerSpec> = policy.servers.iter().map(ServerSpec::from).collect();
            let exe = match std::env::current_exe() {
                Ok(exe) => exe,
                Err(e) => {
                    eprintln!("lanyard: cannot find the path of this lanyard executable: {e}");
                    return FAILURE;
                }
            };
            if servers.is_empty() {
                eprintln!("lanyard: the policy lists no servers; only stale Lanyard entries will be removed.");
            }
            // `all` means the clients the policy names in `settings.ai_clients`, when it does.
            let chosen: Vec<Client> = policy
                .settings
                .ai_clients
                .iter()
                .map(|c| Client::from_policy(*c))
                .collect();
            let native_clients: Vec<Client> = policy
                .settings
                .ai_clients_native
                .iter()
                .map(|c| Client::from_native(*c))
                .collect();
            let idp = policy.idp.as_ref().map(NativeIdp::from);
            each_client_of(client, &chosen, config.as_deref(), &locations, |c, path| {
                let native = idp.as_ref().filter(|_| native_clients.contains(&c));
                apply(
                    c,
                    path,
                    |current, label| {
                        plan(
                            c,
                            current,
                            Action::Install {
                                servers: &servers,
                                exe: &exe,
                                native,
                            },
                            label,
                        )
                    },
                    *dry_run,
                )?;
                if c == Client::VsCode && config.is_none() {
                    // The IdP of VS Code's own EMA is a setting (or the administrator's policy).
                    let settings = Client::vscode_settings_path(&locations);
                    if native.is_some() || mentions_vscode_idp(&settings) {
                        apply(
                            c,
                            &settings,
                            |current, label| plan_vscode_settings(current, native, label),
                            *dry_run,
                        )?;
                    }
                }
                Ok(())
            })
        }
        ClientsCommand::Export {
            format,
            output,
            lanyard_path,
        } => export(
            policy_sources,
            format,
            output.as_deref(),
            lanyard_path.as_deref(),
        ),
        ClientsCommand::Remove {
            client,
            dry_run,
            config,
        } => each_client(client, config.as_deref(), &locations, |c, path| {
            apply(
                c,
                path,
                |current, label| plan(c, current, Action::Remove, label),
                *dry_run,
            )?;
            let settings = Client::vscode_settings_path(&locations);
            if c == Client::VsCode && config.is_none() && mentions_vscode_idp(&settings) {
                apply(
                    c,
                    &settings,
                    |current, label| plan_vscode_settings(current, None, label),
                    *dry_run,
                )?;
            }
            Ok(())
        }),
    }
}

/// `lanyard clients export FORMAT`: a whole file for an administrator to deploy.
fn export(
    policy_sources: &PolicySources,
    format: &str,
    output: Option<&Path>,
    lanyard_path: Option<&Path>,
) -> u8 {
    const FORMATS: [&str; 3] = ["claude-code-managed", "codex-managed", "vscode-policy"];
    if !FORMATS.contains(&format) {
        eprintln!(
            "lanyard: unknown export format {format:?} (known: {})",
            FORMATS.join(", ")
        );
        return FAILURE;
    }
    // Generated on an administrator's machine for the fleet: key files need not exist here.
    let policy = match policy_sources.load_with(FileChecks::Skip) {
        Ok(snapshot) => snapshot.policy,
        Err(errors) => {
            eprintln!("lanyard: the policy is not usable:");
            for e in errors {
                eprintln!("  {e}");
            }
            return MISCONFIGURED;
        }
    };
    let exe = match lanyard_path
        .map(Path::to_path_buf)
        .map_or_else(std::env::current_exe, Ok)
    {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("lanyard: cannot find the path of this lanyard executable: {e}");
            return FAILURE;
        }
    };
    let servers: Vec<ServerSpec> = policy.servers.iter().map(ServerSpec::from).collect();
    let idp = policy.idp.as_ref().map(NativeIdp::from);
    let (text, deploy_as) = match format {
        "codex-managed" => {
            let native = idp.as_ref().filter(|_| {
                policy
                    .settings
                    .ai_clients_native
                    .iter()
                    .any(|c| Client::from_native(*c) == Client::Codex)
            });
            (
                super::codex::managed_config(&servers, &exe, native),
                super::codex::managed_config_path().to_string(),
            )
        }
        "vscode-policy" => {
            let Some(idp) = &idp else {
                eprintln!(
                    "lanyard: the policy has no \"idp\": VS Code's own enterprise-managed \
                     authorization needs one"
                );
                return MISCONFIGURED;
            };
            (
                super::vscode_policy(idp),
                "/etc/vscode/policy.json (Linux), or its McpEnterpriseManagedAuthIdp value as the \
                 Group Policy / macOS profile setting of that name"
                    .to_string(),
            )
        }
        _ => (
            super::claude_code_managed_mcp(&servers, &exe),
            format!("{}/managed-mcp.json", super::claude_code_managed_dir()),
        ),
    };
    match output {
        None => {
            print!("{text}");
            0
        }
        Some(path) => match std::fs::write(path, &text) {
            Ok(()) => {
                eprintln!(
                    "Wrote {} ({} servers). Deploy it as {deploy_as}, owned by the administrator.",
                    path.display(),
                    servers.len(),
                );
                0
            }
            Err(e) => {
                eprintln!("lanyard: writing {}: {e}", path.display());
                FAILURE
            }
        },
    }
}

/// Runs `job` for the named client (or every client for `all`); failures are reported and the
/// other clients still run.
fn each_client(
    name: &str,
    config: Option<&Path>,
    locations: &Locations,
    job: impl FnMut(Client, &Path) -> Result<(), String>,
) -> u8 {
    each_client_of(name, &[], config, locations, job)
}

/// [`each_client`], where `all` means `chosen` unless that is empty.
fn each_client_of(
    name: &str,
    chosen: &[Client],
    config: Option<&Path>,
    locations: &Locations,
    mut job: impl FnMut(Client, &Path) -> Result<(), String>,
) -> u8 {
    let clients: Vec<Client> = if name == "all" {
        if config.is_some() {
            eprintln!("lanyard: --config names one file, so it needs one client, not \"all\"");
            return FAILURE;
        }
        if chosen.is_empty() {
            Client::ALL.to_vec()
        } else {
            chosen.to_vec()
        }
    } else {
        match name.parse::<Client>() {
            Ok(client) => vec![client],
            Err(e) => {
                eprintln!("lanyard: {e}, or all");
                return FAILURE;
            }
        }
    };
    let mut code = 0;
    for client in clients {
        let path = config.map_or_else(|| client.config_path(locations), Path::to_path_buf);
        if let Err(e) = job(client, &path) {
            eprintln!("lanyard: {}: {e}", client.display_name());
            code = FAILURE;
        }
    }
    code
}

/// Whether VS Code's settings file at `path` names the IdP setting at all (only then is there
/// anything of Lanyard's to check in it).
fn mentions_vscode_idp(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.contains(super::VSCODE_IDP_SETTING))
}

/// Reads a config file: `None` when it does not exist.
fn read_config(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{} is not UTF-8 text; left unchanged", path.display())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn apply(
    client: Client,
    path: &Path,
    planner: impl FnOnce(Option<&str>, &str) -> Result<Edit, PlanError>,
    dry_run: bool,
) -> Result<(), String> {
    let current = read_config(path)?;
    let label = path.display().to_string();
    let edit =
        planner(current.as_deref(), &label).map_err(|e| format!("{label}: {e}; left unchanged"))?;
    for change in &edit.changes {
        if let Change::Conflict(_) | Change::Skipped(..) = change {
            eprintln!("lanyard: {}: {change}", client.display_name());
        }
    }
    if current.as_deref().unwrap_or("") == edit.new_text {
        println!("{}: nothing to change in {label}", client.display_name());
        return Ok(());
    }
    if dry_run {
        print!("{}", edit.diff);
        return Ok(());
    }
    let backup = write_with_backup(path, current.as_deref(), &edit.new_text)?;
    let done: Vec<String> = edit
        .changes
        .iter()
        .filter(|c| !matches!(c, Change::Conflict(_) | Change::Skipped(..)))
        .map(|c| c.to_string())
        .collect();
    println!("{}: {} in {label}", client.display_name(), done.join(", "));
    if let Some(backup) = backup {
        println!("  backup: {}", backup.display());
    }
    Ok(())
}

/// Replaces the file at `path` (whose text we read as `expected`) with `new_text`: backup first
/// (when there was a file), then a temporary file in the same directory renamed over the target.
/// Returns the backup's path.
fn write_with_backup(
    path: &Path,
    expected: Option<&str>,
    new_text: &str,
) -> Result<Option<PathBuf>, String> {
    // A symlinked config (dotfile managers) is edited where it points, and stays a symlink.
    let target = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path)
            .map_err(|e| format!("cannot follow the symlink {}: {e}", path.display()))?,
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The client (Claude Code rewrites its file often) may have written since we read it.
    if read_config(&target)?.as_deref() != expected {
        return Err(format!(
            "{} changed while Lanyard was editing it; nothing written, try again",
            target.display()
        ));
    }
    let backup = match expected {
        None => None,
        Some(_) => {
            let backup = free_backup_path(&dir, &name);
            std::fs::copy(&target, &backup)
                .map_err(|e| format!("cannot back up to {}: {e}", backup.display()))?;
            Some(backup)
        }
    };
    let temporary = dir.join(format!(".{name}.lanyard-{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(new_text.as_bytes())?;
        file.sync_all()?;
        if expected.is_some() {
            std::fs::set_permissions(&temporary, std::fs::metadata(&target)?.permissions())?;
        }
        std::fs::rename(&temporary, &target)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(format!("cannot write {}: {e}", target.display()));
    }
    Ok(backup)
}

/// `<name>.lanyard-backup-<UTC time>` next to the file, with `-2`, `-3`… if that exists already.
fn free_backup_path(dir: &Path, name: &str) -> PathBuf {
    let stamp = utc_stamp(SystemTime::now());
    let first = dir.join(format!("{name}.lanyard-backup-{stamp}"));
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| dir.join(format!("{name}.lanyard-backup-{stamp}-{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first) // The range is unbounded, so `find` returns before this is reached.
}

/// `YYYYMMDDTHHMMSSZ`.
fn utc_stamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01 so that the leap day ends each 4/100/400-year cycle.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

fn list(locations: &Locations, policy_sources: &PolicySources) -> u8 {
    // The policy is optional here: with it, entries are compared with the servers it lists.
    let policy = policy_sources
        .load_with(FileChecks::Skip)
        .ok()
        .map(|s| s.policy);
    let specs: Option<Vec<ServerSpec>> = policy
        .as_ref()
        .map(|p| p.servers.iter().map(ServerSpec::from).collect());
    let native_clients: Vec<Client> = policy
        .iter()
        .flat_map(|p| p.settings.ai_clients_native.iter())
        .map(|c| Client::from_native(*c))
        .collect();
    let mut code = 0;
    for client in Client::ALL {
        let path = client.config_path(locations);
        let native = native_clients.contains(&client) && client.has_native_ema();
        println!(
            "{:<15} {:<6} {}",
            client.name(),
            client.mode(native),
            path.display()
        );
        // The servers this client should have: in a native setup, those it can reach itself.
        let policy_ids: Option<Vec<String>> = specs.as_ref().map(|specs| {
            specs
                .iter()
                .filter(|s| !native || s.native_unfit.is_none())
                .map(|s| s.id.clone())
                .collect()
        });
        let state = match read_config(&path) {
            Ok(None) => {
                let found = client.presence_dir(locations).is_dir();
                format!(
                    "no config file ({})",
                    if found {
                        "client folder present"
                    } else {
                        "client not found"
                    }
                )
            }
            Ok(Some(text)) => match lanyard_entries(client, &text) {
                Ok(entries) if entries.is_empty() => "installed: no Lanyard entries".to_string(),
                Ok(entries) => {
                    let mut parts: Vec<String> = entries
                        .iter()
                        .map(|e| match &policy_ids {
                            Some(ids) if !ids.contains(&e.server_id) => {
                                format!("{} (not in the policy)", e.key)
                            }
                            _ => e.key.clone(),
                        })
                        .collect();
                    if let Some(ids) = &policy_ids {
                        let missing: Vec<&str> = ids
                            .iter()
                            .filter(|id| !entries.iter().any(|e| &e.server_id == *id))
                            .map(String::as_str)
                            .collect();
                        if !missing.is_empty() {
                            parts.push(format!("missing: {}", missing.join(", ")));
                        }
                    }
                    format!("installed: {}", parts.join(", "))
                }
                Err(e) => {
                    code = FAILURE;
                    format!("unreadable: {e}")
                }
            },
            Err(e) => {
                code = FAILURE;
                format!("unreadable: {e}")
            }
        };
        println!("{:<15} {state}", "");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_stamps_match_known_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        // 2000-02-29 (a 400-year leap day) 12:34:56 UTC.
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(951_827_696)),
            "20000229T123456Z"
        );
        // 2024-12-31 23:59:59 UTC.
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(1_735_689_599)),
            "20241231T235959Z"
        );
    }
}
