//! Lanyard's engine library: sign in to the corporate IdP once, then obtain and keep fresh an access
//! token for every configured MCP server through Enterprise-Managed Authorization (RFC 8693 token
//! exchange for an ID-JAG, then RFC 7523 jwt-bearer), or through Client Credentials for machines.
//!
//! Layers, from the wire up: [`oauth`] (pure requests/responses + one HTTP executor), [`signin`]
//! (the IdP session), [`engine`] (the actor that owns all state), with [`policy`] and [`store`] as the
//! inputs and the secret keeper. No GUI and no global state live here.

pub mod admin_files;
pub mod clock;
pub mod device_key;
pub mod engine;
pub mod ipc;
pub mod mcp;
pub mod oauth;
pub mod os;
pub mod policy;
pub mod redact;
pub mod secret;
pub mod signin;
pub mod store;
pub mod wake;
