//! The `lanyard` command's pure text tools, as a library so tests and the fuzz targets reach them:
//! the span-keeping JSON(C) parser ([`jsonc`]) and the minimal in-place edits client wiring makes
//! with it ([`jsonc_edit`]). Everything else of the command lives in the binary; nothing here does
//! I/O or knows about any AI client.

pub mod jsonc;
pub mod jsonc_edit;
