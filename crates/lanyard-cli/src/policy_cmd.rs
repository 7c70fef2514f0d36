//! `lanyard policy show [--origins]` and `lanyard policy validate FILE`: what this machine's policy
//! is and where each value came from, and a pre-deployment check for administrators.
//!
//! Thin: the reading, merging and validation are `lanyard_core::policy`'s. Errors go to stderr,
//! one per line, each naming its source and key path; the exit code is 3 when the policy is not
//! usable. Nothing here talks to the agent.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use lanyard_core::policy::sources::macos_plist;
use lanyard_core::policy::sources::platform::PolicySources;
use lanyard_core::policy::{
    self, parse_json, FileChecks, Layer, PolicyError, PolicySnapshot, Scope, SETTING_SPECS,
};
use serde_json::Value;

use crate::exit;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Show the effective policy on this machine (merged from every source).
    Show {
        /// Show where each value comes from and whether it is locked.
        #[arg(long)]
        origins: bool,
    },
    /// Check a policy file before deploying it (JSON, a managed-preferences .plist or a
    /// .mobileconfig profile); exits 3 with every error.
    Validate {
        file: PathBuf,
        /// Do not require key files, secret files and CA bundles to be readable here.
        #[arg(long)]
        skip_file_checks: bool,
    },
}

pub fn run(command: &PolicyCommand, policy_sources: &PolicySources) -> u8 {
    match command {
        PolicyCommand::Show { origins } => show(policy_sources, *origins),
        PolicyCommand::Validate {
            file,
            skip_file_checks,
        } => validate(file, *skip_file_checks),
    }
}

fn report(errors: &[PolicyError]) -> u8 {
    eprintln!(
        "lanyard: the policy is not usable ({} problem{}):",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        eprintln!("  {e}");
    }
    exit::MISCONFIGURED
}

fn show(policy_sources: &PolicySources, origins: bool) -> u8 {
    let snapshot = match policy_sources.load() {
        Ok(snapshot) => snapshot,
        Err(errors) => {
            eprintln!("lanyard: the policy is read from (later parts win):");
            for line in policy_sources.locations() {
                eprintln!("  {line}");
            }
            return report(&errors);
        }
    };
    if !snapshot.refused.is_empty() {
        eprintln!("lanyard: parts of the policy were ignored (the rest applies):");
        for e in &snapshot.refused {
            eprintln!("  {e}");
        }
    }
    if origins {
        println!("# read from (later parts win):");
        for line in policy_sources.locations() {
            println!("#   {line}");
        }
        print_origins(&snapshot);
        return 0;
    }
    match serde_json::to_string_pretty(&snapshot.policy) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("lanyard: {e}");
            exit::FAILURE
        }
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Mandatory => "mandatory",
        Scope::Recommended => "recommended",
        Scope::User => "user",
    }
}

fn print_origins(snapshot: &PolicySnapshot) {
    for line in origin_lines(snapshot) {
        println!("{line}");
    }
}

/// `policy show --origins`' table, one line per setting: `key  value  <- source key path (scope)`.
/// Also the diagnostics archive's `policy-origins.txt`.
pub fn origin_lines(snapshot: &PolicySnapshot) -> Vec<String> {
    let document = serde_json::to_value(&snapshot.policy).unwrap_or(Value::Null);
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for (key, origin) in &snapshot.origins {
        let value = pointer_for(key)
            .and_then(|p| document.pointer(&p).cloned())
            .unwrap_or(Value::Null);
        let shown = match value.get("id") {
            Some(id) if key.starts_with("servers[") => format!("server {id}"),
            _ => value.to_string(),
        };
        let lock = if origin.locked { ", locked" } else { "" };
        rows.push((
            key.clone(),
            shown,
            format!(
                "{} {} ({}{lock})",
                origin.source,
                origin.key_path,
                scope_name(origin.scope)
            ),
        ));
    }
    for spec in SETTING_SPECS {
        let key = format!("settings.{}", spec.key);
        if !snapshot.origins.contains_key(&key) {
            let value = document
                .pointer(&format!("/settings/{}", spec.key))
                .cloned()
                .unwrap_or(Value::Null);
            rows.push((key, value.to_string(), "built-in default".into()));
        }
    }
    rows.sort();
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    rows.into_iter()
        .map(|(key, value, origin)| format!("{key:<width$}  {value}  <- {origin}"))
        .collect()
}

/// `servers[2].url` as a JSON pointer (`/servers/2/url`).
fn pointer_for(key: &str) -> Option<String> {
    let mut pointer = String::new();
    for part in key.split('.') {
        match part.split_once('[') {
            Some((name, index)) => {
                pointer.push('/');
                pointer.push_str(name);
                pointer.push('/');
                pointer.push_str(index.strip_suffix(']')?);
            }
            None => {
                pointer.push('/');
                pointer.push_str(part);
            }
        }
    }
    Some(pointer)
}

fn validate(file: &Path, skip_file_checks: bool) -> u8 {
    let name = file.display().to_string();
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => return report(&[PolicyError::new(&name, "", format!("cannot read: {e}"))]),
    };
    let extension = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let layers: Result<Vec<Layer>, Vec<PolicyError>> = match extension.as_deref() {
        Some("plist") => macos_plist::layers_from_plist(&bytes, &name).map_err(|e| vec![e]),
        Some("mobileconfig") => {
            macos_plist::layers_from_mobileconfig(&bytes, &name).map_err(|e| vec![e])
        }
        _ => match String::from_utf8(bytes) {
            Ok(text) => parse_json(&text, &name)
                .map(|document| vec![Layer::new(name.clone(), Scope::Mandatory, document)]),
            Err(_) => Err(vec![PolicyError::new(&name, "", "not UTF-8 text")]),
        },
    };
    let checks = if skip_file_checks {
        FileChecks::Skip
    } else {
        FileChecks::Readable
    };
    match layers.and_then(|layers| policy::resolve(&layers, checks)) {
        Ok(snapshot) => {
            println!(
                "{name}: valid ({} server{}{})",
                snapshot.policy.servers.len(),
                if snapshot.policy.servers.len() == 1 {
                    ""
                } else {
                    "s"
                },
                if snapshot.policy.idp.is_some() {
                    ", identity provider set"
                } else {
                    ""
                }
            );
            0
        }
        Err(errors) => report(&errors),
    }
}
