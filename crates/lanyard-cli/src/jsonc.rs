//! A small parser for JSON and JSON-with-comments that keeps the byte span of every value.
//!
//! It exists so client wiring can edit a config file *textually*: find a map, then insert, replace
//! or remove only Lanyard's members, leaving every other byte alone. It understands `//` and
//! `/* */` comments and trailing commas only when asked to (JSONC); strict JSON files are parsed
//! strictly, so we never write into a file the client itself would reject. It does no I/O and
//! never re-serialises a document.

use std::fmt;

/// How lenient the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 8259 JSON: no comments, no trailing commas.
    Json,
    /// JSON with `//` and `/* */` comments and trailing commas (VS Code's settings dialect).
    Jsonc,
}

/// A parsed value with its byte span `[start, end)` in the source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub start: usize,
    pub end: usize,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Object(Vec<Member>),
    Array(Vec<Node>),
    String(String),
    /// Numbers, `true`, `false`, `null`: kept as their source text.
    Literal,
}

/// One `"key": value` of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub key: String,
    /// Where the key's opening quote is.
    pub key_start: usize,
    pub value: Node,
    /// Where the comma that follows this member is, if one does.
    pub comma: Option<usize>,
}

impl Node {
    pub fn members(&self) -> Option<&[Member]> {
        match &self.kind {
            NodeKind::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.members()?
            .iter()
            .find(|m| m.key == key)
            .map(|m| &m.value)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Why a document could not be parsed, with a 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Nesting deeper than this is refused rather than risking the stack on a hostile file.
const MAX_DEPTH: usize = 256;

/// Parses a whole document: exactly one value, surrounded only by whitespace (and comments in
/// JSONC). A leading byte-order mark is skipped.
pub fn parse(text: &str, dialect: Dialect) -> Result<Node, ParseError> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        dialect,
    };
    if text.starts_with('\u{feff}') {
        parser.pos = '\u{feff}'.len_utf8();
    }
    parser.skip_trivia()?;
    let value = parser.value(0)?;
    parser.skip_trivia()?;
    if parser.pos < parser.bytes.len() {
        return Err(parser.error_at(parser.pos, "unexpected text after the end of the document"));
    }
    Ok(value)
}

/// Whether `text` holds nothing but whitespace (and, in JSONC, comments): such a file is treated
/// as an empty document rather than as malformed.
pub fn is_blank(text: &str, dialect: Dialect) -> bool {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        dialect,
    };
    if text.starts_with('\u{feff}') {
        parser.pos = '\u{feff}'.len_utf8();
    }
    parser.skip_trivia().is_ok() && parser.pos == text.len()
}

/// Converts a byte offset into a 1-based (line, column in characters).
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    dialect: Dialect,
}

impl Parser<'_> {
    fn error_at(&self, offset: usize, message: &str) -> ParseError {
        let (line, column) = line_column(self.text, offset);
        ParseError {
            line,
            column,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips whitespace and, in JSONC, comments.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                Some(b'/') if self.dialect == Dialect::Jsonc => {
                    let start = self.pos;
                    match self.bytes.get(self.pos + 1) {
                        Some(b'/') => {
                            while let Some(b) = self.peek() {
                                if b == b'\n' {
                                    break;
                                }
                                self.pos += 1;
                            }
                        }
                        Some(b'*') => {
                            self.pos += 2;
                            loop {
                                match self.peek() {
                                    None => {
                                        return Err(self.error_at(start, "unterminated /* comment"))
                                    }
                                    Some(b'*') if self.bytes.get(self.pos + 1) == Some(&b'/') => {
                                        self.pos += 2;
                                        break;
                                    }
                                    Some(_) => self.pos += 1,
                                }
                            }
                        }
                        _ => return Err(self.error_at(start, "unexpected character '/'")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error_at(self.pos, "nested too deeply"));
        }
        let start = self.pos;
        match self.peek() {
            None => Err(self.error_at(start, "unexpected end of the document, expected a value")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let value = self.string()?;
                Ok(Node {
                    start,
                    end: self.pos,
                    kind: NodeKind::String(value),
                })
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.keyword("true"),
            Some(b'f') => self.keyword("false"),
            Some(b'n') => self.keyword("null"),
            Some(_) => Err(self.unexpected("a value")),
        }
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        match self.text[self.pos..].chars().next() {
            None => self.error_at(
                self.pos,
                &format!("unexpected end of the document, expected {expected}"),
            ),
            Some(c) => self.error_at(
                self.pos,
                &format!("unexpected character {c:?}, expected {expected}"),
            ),
        }
    }

    fn keyword(&mut self, word: &str) -> Result<Node, ParseError> {
        let start = self.pos;
        if self.text[start..].starts_with(word) {
            self.pos += word.len();
            Ok(Node {
                start,
                end: self.pos,
                kind: NodeKind::Literal,
            })
        } else {
            Err(self.unexpected("a value"))
        }
    }

    fn number(&mut self) -> Result<Node, ParseError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos > from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else if !digits(self) {
            return Err(self.unexpected("a digit"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.unexpected("a digit"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.unexpected("a digit"));
            }
        }
        Ok(Node {
            start,
            end: self.pos,
            kind: NodeKind::Literal,
        })
    }

    /// Reads a string literal starting at its opening quote and returns its decoded value.
    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match self.peek() {
                None => return Err(self.error_at(start, "unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escape = self.peek();
                    self.pos += 1;
                    match escape {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => out.push(self.unicode_escape()?),
                        _ => return Err(self.error_at(self.pos - 2, "invalid escape in string")),
                    }
                }
                Some(_) => return Err(self.error_at(self.pos, "control character in string")),
            }
        }
    }

    /// Reads the `XXXX` of a `\uXXXX` escape (and a following low surrogate when needed).
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let escape_start = self.pos - 2;
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.text[self.pos..].starts_with("\\u") {
                return Err(self.error_at(escape_start, "unpaired surrogate in string"));
            }
            self.pos += 2;
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.error_at(escape_start, "unpaired surrogate in string"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code)
            .ok_or_else(|| self.error_at(escape_start, "invalid \\u escape in string"))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
        match digits.and_then(|d| u32::from_str_radix(d, 16).ok()) {
            Some(value) => {
                self.pos += 4;
                Ok(value)
            }
            None => Err(self.error_at(self.pos, "expected four hex digits after \\u")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut members: Vec<Member> = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some(b'}') => {
                    let trailing_comma = members.last().is_some_and(|m| m.comma.is_some());
                    if trailing_comma && self.dialect == Dialect::Json {
                        return Err(self.error_at(self.pos, "trailing comma before '}'"));
                    }
                    self.pos += 1;
                    return Ok(Node {
                        start,
                        end: self.pos,
                        kind: NodeKind::Object(members),
                    });
                }
                Some(b'"') => {
                    if members.last().is_some_and(|m| m.comma.is_none()) {
                        return Err(self.unexpected("',' or '}'"));
                    }
                    let key_start = self.pos;
                    let key = self.string()?;
                    self.skip_trivia()?;
                    if self.peek() != Some(b':') {
                        return Err(self.unexpected("':'"));
                    }
                    self.pos += 1;
                    self.skip_trivia()?;
                    let value = self.value(depth + 1)?;
                    self.skip_trivia()?;
                    let comma = if self.peek() == Some(b',') {
                        self.pos += 1;
                        Some(self.pos - 1)
                    } else {
                        None
                    };
                    members.push(Member {
                        key,
                        key_start,
                        value,
                        comma,
                    });
                }
                _ => {
                    let expected = if members.last().is_some_and(|m| m.comma.is_none()) {
                        "',' or '}'"
                    } else {
                        "a quoted key or '}'"
                    };
                    return Err(self.unexpected(expected));
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        let mut after_comma = false;
        loop {
            self.skip_trivia()?;
            if self.peek() == Some(b']') {
                if after_comma && self.dialect == Dialect::Json {
                    return Err(self.error_at(self.pos, "trailing comma before ']'"));
                }
                self.pos += 1;
                return Ok(Node {
                    start,
                    end: self.pos,
                    kind: NodeKind::Array(items),
                });
            }
            if !items.is_empty() && !after_comma {
                return Err(self.unexpected("',' or ']'"));
            }
            items.push(self.value(depth + 1)?);
            self.skip_trivia()?;
            after_comma = self.peek() == Some(b',');
            if after_comma {
                self.pos += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_exactly_each_value() {
        let text = "{ \"a\" : [1, \"x\\n\"], \"b\": {\"c\": null} }";
        let root = parse(text, Dialect::Json).expect("valid");
        let members = root.members().expect("object");
        assert_eq!(members[0].key, "a");
        assert_eq!(
            &text[members[0].value.start..members[0].value.end],
            "[1, \"x\\n\"]"
        );
        assert_eq!(
            members[0].value.as_array().expect("array")[1].as_str(),
            Some("x\n")
        );
        assert_eq!(members[0].comma, text.find("],").map(|i| i + 1));
        assert_eq!(
            &text[members[1].value.start..members[1].value.end],
            "{\"c\": null}"
        );
        assert_eq!(members[1].comma, None);
    }

    #[test]
    fn comments_and_trailing_commas_only_in_jsonc() {
        let text = "// head\n{\n  \"a\": 1, /* mid */\n  \"b\": [2,],\n}\n";
        assert!(parse(text, Dialect::Jsonc).is_ok());
        let err = parse(text, Dialect::Json).expect_err("comments are not JSON");
        assert_eq!((err.line, err.column), (1, 1));
        let err = parse("{\"a\": 1,}", Dialect::Json).expect_err("trailing comma");
        assert_eq!((err.line, err.column), (1, 9));
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err = parse("{\n  \"a\": 1\n  \"b\": 2\n}", Dialect::Json).expect_err("missing comma");
        assert_eq!((err.line, err.column), (3, 3), "{err}");
        assert!(err.message.contains("expected ',' or '}'"), "{err}");
        let err = parse("{\"a\": tru}", Dialect::Json).expect_err("bad keyword");
        assert_eq!((err.line, err.column), (1, 7));
        let err = parse("{\"a\": \"open", Dialect::Json).expect_err("unterminated");
        assert_eq!((err.line, err.column), (1, 7));
        let err = parse("{} x", Dialect::Json).expect_err("trailing text");
        assert_eq!((err.line, err.column), (1, 4));
        let err = parse("/* never closed", Dialect::Jsonc).expect_err("open comment");
        assert_eq!((err.line, err.column), (1, 1));
    }

    #[test]
    fn unicode_escapes_decode_including_surrogate_pairs() {
        let root = parse(r#"["\u00e9\ud83d\ude00", "é"]"#, Dialect::Json).expect("valid");
        let items = root.as_array().expect("array");
        assert_eq!(items[0].as_str(), Some("é😀"));
        assert_eq!(items[1].as_str(), Some("é"));
        assert!(parse(r#"["\ud83d"]"#, Dialect::Json).is_err());
    }

    #[test]
    fn blank_documents_are_recognised() {
        assert!(is_blank(" \n\t", Dialect::Json));
        assert!(is_blank("// nothing yet\n", Dialect::Jsonc));
        assert!(!is_blank("// nothing yet\n", Dialect::Json));
        assert!(!is_blank("{}", Dialect::Jsonc));
    }

    #[test]
    fn absurd_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(100_000);
        let err = parse(&text, Dialect::Json).expect_err("too deep");
        assert!(err.message.contains("deeply"));
    }
}
