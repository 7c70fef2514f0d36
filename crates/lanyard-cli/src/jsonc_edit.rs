//! Minimal textual edits of one JSON(C) object: insert, replace or remove a single member.
//!
//! Each function takes the document text and a parsed object [`Node`] from it, and returns the new
//! text with only that member's bytes (plus the one separating comma and line break) changed:
//! every other byte, comment and the file's indentation and line-break style stay as they were.
//! Callers re-parse after each edit. No I/O here, and no knowledge of any client.

use crate::jsonc::{Member, Node};

/// A value Lanyard writes: strings, booleans, lists of strings and maps of those (all a client
/// entry needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Str(String),
    Bool(bool),
    List(Vec<String>),
    Map(Vec<(String, Out)>),
}

/// The indentation unit and line break a document already uses, so our lines look like theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub indent_unit: String,
    pub newline: &'static str,
    /// The document has no line break at all (minified): edits stay on one line too.
    pub single_line: bool,
}

impl Layout {
    pub fn detect(text: &str) -> Layout {
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let indent_unit = text
            .lines()
            .map(|line| &line[..line.len() - line.trim_start_matches([' ', '\t']).len()])
            .find(|lead| !lead.is_empty())
            .map(|lead| {
                if lead.starts_with('\t') {
                    "\t".to_string()
                } else {
                    lead.to_string()
                }
            })
            .unwrap_or_else(|| "  ".to_string());
        Layout {
            indent_unit,
            newline,
            single_line: !text.trim_end().contains('\n'),
        }
    }
}

/// Quotes a string as a JSON string literal.
pub fn quote(s: &str) -> String {
    // Serialising a &str to JSON cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// Renders `value` on several lines; `indent` is the indentation of the line the value starts on.
pub fn render_pretty(value: &Out, indent: &str, layout: &Layout) -> String {
    match value {
        Out::Str(s) => quote(s),
        Out::Bool(b) => b.to_string(),
        Out::List(items) => render_list(items),
        Out::Map(entries) if entries.is_empty() => "{}".to_string(),
        Out::Map(entries) => {
            let inner = format!("{indent}{}", layout.indent_unit);
            let mut out = String::from("{");
            for (i, (key, value)) in entries.iter().enumerate() {
                out.push_str(if i == 0 { "" } else { "," });
                out.push_str(layout.newline);
                out.push_str(&inner);
                out.push_str(&quote(key));
                out.push_str(": ");
                out.push_str(&render_pretty(value, &inner, layout));
            }
            out.push_str(layout.newline);
            out.push_str(indent);
            out.push('}');
            out
        }
    }
}

/// Renders `value` on one line.
impl Out {
    /// The same value as a JSON tree (for documents written whole, not edited in place).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Out::Str(s) => serde_json::Value::String(s.clone()),
            Out::Bool(b) => serde_json::Value::Bool(*b),
            Out::List(items) => items
                .iter()
                .cloned()
                .map(serde_json::Value::String)
                .collect(),
            Out::Map(members) => serde_json::Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

pub fn render_compact(value: &Out) -> String {
    match value {
        Out::Str(s) => quote(s),
        Out::Bool(b) => b.to_string(),
        Out::List(items) => render_list(items),
        Out::Map(entries) => {
            let members: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}: {}", quote(k), render_compact(v)))
                .collect();
            format!("{{{}}}", members.join(", "))
        }
    }
}

fn render_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(", "))
}

/// The whitespace JSON allows between tokens (Unicode's other spaces are not among them).
const JSON_WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}

/// The whitespace that starts the line `offset` is on.
fn line_indent(text: &str, offset: usize) -> &str {
    let start = line_start(text, offset);
    let line = &text[start..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// Whether only spaces and tabs precede `offset` on its line.
fn starts_its_line(text: &str, offset: usize) -> bool {
    text[line_start(text, offset)..offset]
        .bytes()
        .all(|b| b == b' ' || b == b'\t')
}

fn same_line(text: &str, a: usize, b: usize) -> bool {
    !text[a.min(b)..a.max(b)].contains('\n')
}

/// Whether the object's members are laid out on one line (`{"a": 1, "b": 2}`).
fn is_compact(text: &str, object: &Node, layout: &Layout) -> bool {
    let has_members = object.members().is_some_and(|m| !m.is_empty());
    layout.single_line || (has_members && same_line(text, object.start, object.end))
}

/// The indentation our new members of `object` get: that of its existing members, else one unit
/// deeper than the object's own line.
fn member_indent(text: &str, object: &Node, layout: &Layout) -> String {
    match object.members().and_then(|m| m.first()) {
        Some(first) if starts_its_line(text, first.key_start) => {
            line_indent(text, first.key_start).to_string()
        }
        _ => format!("{}{}", line_indent(text, object.start), layout.indent_unit),
    }
}

/// If everything after `from` up to the end of its line is blank or a comment, the offset of that
/// line's break (before a `\r`); otherwise `None`.
fn end_of_blank_rest(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut pos = from;
    loop {
        match bytes.get(pos) {
            Some(b' ' | b'\t') => pos += 1,
            Some(b'/') if bytes.get(pos + 1) == Some(&b'/') => {
                let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
                return Some(if end > pos && bytes[end - 1] == b'\r' {
                    end - 1
                } else {
                    end
                });
            }
            Some(b'/') if bytes.get(pos + 1) == Some(&b'*') => {
                let close = text[pos + 2..].find("*/").map(|i| pos + 2 + i + 2)?;
                if !same_line(text, pos, close) {
                    return None;
                }
                pos = close;
            }
            Some(b'\r') if bytes.get(pos + 1) == Some(&b'\n') => return Some(pos),
            Some(b'\n') | None => return Some(pos),
            Some(_) => return None,
        }
    }
}

fn splice(text: &str, start: usize, end: usize, with: &str) -> String {
    format!("{}{}{}", &text[..start], with, &text[end..])
}

/// Adds `"key": value` as the last member of `object` (which must not already have `key`).
/// `comment`, when given, is a whole `// …` line written just above the member (JSONC only).
pub fn insert_member(
    text: &str,
    object: &Node,
    key: &str,
    value: &Out,
    comment: Option<&str>,
) -> String {
    let layout = Layout::detect(text);
    let members = object.members().unwrap_or(&[]);
    if is_compact(text, object, &layout) {
        let member = format!("{}: {}", quote(key), render_compact(value));
        return match members.last() {
            Some(last) => match last.comma {
                Some(comma) => splice(text, comma + 1, comma + 1, &format!(" {member}")),
                None => splice(text, last.value.end, last.value.end, &format!(", {member}")),
            },
            None => splice(text, object.start + 1, object.end - 1, &member),
        };
    }
    let nl = layout.newline;
    let indent = member_indent(text, object, &layout);
    let mut block = String::from(nl);
    if let Some(comment) = comment {
        block.push_str(&format!("{indent}{comment}{nl}"));
    }
    block.push_str(&format!(
        "{indent}{}: {}",
        quote(key),
        render_pretty(value, &indent, &layout)
    ));
    match members.last() {
        Some(last) => {
            let after = last.comma.map_or(last.value.end, |c| c + 1);
            match end_of_blank_rest(text, after) {
                // Insert after the last member's line, keeping any comment on that line with it.
                // A file that ends its members with a trailing comma (JSONC) gets ours with one
                // too, so removing ours later gives back the exact original.
                Some(eol) => match last.comma {
                    Some(_) => splice(text, eol, eol, &format!("{block},")),
                    None => {
                        let text = splice(text, eol, eol, &block);
                        splice(&text, last.value.end, last.value.end, ",")
                    }
                },
                None => {
                    let block = block.trim_start_matches(['\r', '\n']);
                    match last.comma {
                        Some(comma) => splice(text, comma + 1, comma + 1, &format!(" {block},")),
                        None => splice(
                            text,
                            last.value.end,
                            last.value.end,
                            &format!(",{nl}{block}"),
                        ),
                    }
                }
            }
        }
        None => {
            let close = object.end - 1;
            let inner = &text[object.start + 1..close];
            if inner.trim_matches(JSON_WHITESPACE).is_empty() {
                let closing = format!("{nl}{}", line_indent(text, object.start));
                splice(text, object.start + 1, close, &format!("{block}{closing}"))
            } else {
                // Only comments inside: add after them, before the closing brace's line. Only
                // JSON's whitespace is trimmed: a form feed or a no-break space ending a `//`
                // comment belongs to the comment, and left behind our member it is a syntax error.
                let at = object.start + 1 + inner.trim_end_matches(JSON_WHITESPACE).len();
                splice(text, at, at, &block)
            }
        }
    }
}

/// Replaces the value of `member` (a member of `object`) with `value`, keeping its key and
/// everything around it.
pub fn replace_value(text: &str, object: &Node, member: &Member, value: &Out) -> String {
    splice(
        text,
        member.value.start,
        member.value.end,
        &rendered_value(text, object, member, value),
    )
}

/// The text `replace_value` puts in place of `member`'s value: equal to the current value's text
/// means there is nothing to do.
pub fn rendered_value(text: &str, object: &Node, member: &Member, value: &Out) -> String {
    let layout = Layout::detect(text);
    if is_compact(text, object, &layout) {
        render_compact(value)
    } else if starts_its_line(text, member.key_start) {
        render_pretty(value, line_indent(text, member.key_start), &layout)
    } else {
        render_pretty(value, &member_indent(text, object, &layout), &layout)
    }
}

/// Removes the member at `index` of `object`, with its separating comma, its own line(s) and the
/// `comment` line just above it if that line is exactly `comment`. An object left with nothing
/// but whitespace inside becomes `{}`.
pub fn remove_member(text: &str, object: &Node, index: usize, comment: Option<&str>) -> String {
    let members = object.members().unwrap_or(&[]);
    let Some(member) = members.get(index) else {
        return text.to_string();
    };
    let previous = index.checked_sub(1).and_then(|i| members.get(i));
    let next = members.get(index + 1);
    let member_end = member.comma.map_or(member.value.end, |c| c + 1);
    let own_line_end = end_of_blank_rest(text, member_end).filter(|&eol| {
        // Only when nothing but a line break (or the end) follows: a trailing comment stays.
        text[member_end..eol].trim().is_empty()
    });
    let mut edits: Vec<(usize, usize)> = Vec::new();
    match own_line_end {
        Some(eol) if starts_its_line(text, member.key_start) => {
            let mut start = line_start(text, member.key_start);
            if let Some(comment) = comment {
                if start > 0 {
                    let above = line_start(text, start - 1);
                    if text[above..start].trim() == comment {
                        start = above;
                    }
                }
            }
            let end = if text[eol..].starts_with("\r\n") {
                eol + 2
            } else if text[eol..].starts_with('\n') {
                eol + 1
            } else {
                eol
            };
            edits.push((start, end));
            // The last member goes: the one before it loses its separating comma (unless ours
            // had a trailing comma, which JSONC allows: then the previous keeps one).
            if next.is_none() && member.comma.is_none() {
                if let Some(comma) = previous.and_then(|p| p.comma) {
                    edits.push((comma, comma + 1));
                }
            }
        }
        _ => match (previous, next) {
            (_, Some(next)) => edits.push((member.key_start, next.key_start)),
            (Some(previous), None) => edits.push((previous.value.end, member.value.end)),
            (None, None) => edits.push((member.key_start, member_end)),
        },
    }
    edits.sort_unstable_by_key(|&(start, _)| std::cmp::Reverse(start));
    let mut out = text.to_string();
    for (start, end) in edits {
        out.replace_range(start..end, "");
    }
    if members.len() == 1 {
        let removed = text.len() - out.len();
        let close = object.end - 1 - removed;
        if out[object.start + 1..close].trim().is_empty() {
            out.replace_range(object.start + 1..close, "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonc::{parse, Dialect};

    /// Found by the `jsonc_edit` fuzz target (fuzz/regressions/jsonc_edit/): an object holding only
    /// a `//` comment that ends in a form feed or a no-break space got our member inserted before
    /// that character, which then stood outside the comment and broke the file.
    #[test]
    fn a_comment_ending_in_unicode_whitespace_stays_whole() {
        for text in [
            "{//\u{c}\n}",
            "{\n  // mine\u{a0}\n}\n",
            "{ /* a */ // b\u{2028}\n}",
        ] {
            let object = parse(text, Dialect::Jsonc).expect("valid JSONC");
            let value = Out::Str("lanyard".into());
            let edited = insert_member(text, &object, "lanyard-x", &value, Some("// Lanyard"));
            let root = parse(&edited, Dialect::Jsonc)
                .unwrap_or_else(|e| panic!("{text:?} → {edited:?}: {e}"));
            assert_eq!(
                root.get("lanyard-x").and_then(Node::as_str),
                Some("lanyard")
            );
            assert!(
                edited.starts_with(text.trim_end_matches(['}', '\n'])),
                "{edited:?}"
            );
        }
    }
}
