//! Reading `text/event-stream` bodies (the WHATWG event-stream rules), for the MCP client's replies
//! and the bridge's streams. The parser is pure: bytes in, events out; a reader of an endless
//! stream caps [`SseParser::pending_bytes`]. `CappedEventStream` feeds it one reply body,
//! capped as a whole.

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` field seen, if any.
    pub id: Option<String>,
}

/// An incremental `text/event-stream` parser (the WHATWG rules: `\n`, `\r\n` or `\r` line ends,
/// `:` comments, one optional space after the colon, multi-line data, dispatch on a blank line).
/// Feed it chunks as they arrive; it returns the events each chunk completes.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no line end (so a long line is scanned once).
    scanned: usize,
    event: Option<String>,
    data: Option<String>,
    last_id: Option<String>,
    /// The stream's `retry:` (reconnection time, milliseconds), when it sent one.
    retry_ms: Option<u64>,
    started: bool,
}

impl SseParser {
    /// The last event id the stream set: what a reconnection sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnection time the stream asked for (`retry:`), in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Bytes held for what is not dispatched yet: the unfinished line and the current event's
    /// data. A reader of an endless stream caps this, not the stream's length: one event that
    /// never ends must not take all memory.
    pub fn pending_bytes(&self) -> usize {
        self.buffer.len() + self.data.as_ref().map_or(0, String::len)
    }

    /// Adds `chunk` and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = self.scanned;
        while i < self.buffer.len() {
            match self.buffer[i] {
                b'\n' => {
                    let line = self.buffer[start..i].to_vec();
                    self.line(&line, &mut events);
                    i += 1;
                    start = i;
                }
                b'\r' => {
                    // A CR at the very end may be the first half of a CRLF: wait for more.
                    if i + 1 == self.buffer.len() {
                        break;
                    }
                    let line = self.buffer[start..i].to_vec();
                    self.line(&line, &mut events);
                    i += if self.buffer[i + 1] == b'\n' { 2 } else { 1 };
                    start = i;
                }
                _ => i += 1,
            }
        }
        self.buffer.drain(..start);
        self.scanned = i - start;
        events
    }

    /// The stream ended. An event missing only its final blank line is still dispatched
    /// (lenient: some servers close right after the last `data:` line).
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let rest = std::mem::take(&mut self.buffer);
        self.scanned = 0;
        let rest = rest.strip_suffix(b"\r").unwrap_or(&rest);
        if !rest.is_empty() {
            self.line(rest, &mut events);
        }
        self.line(b"", &mut events);
        events
    }

    fn line(&mut self, raw: &[u8], events: &mut Vec<SseEvent>) {
        let mut line = String::from_utf8_lossy(raw);
        if !self.started {
            self.started = true;
            // A UTF-8 byte order mark at the very start of the stream is ignored.
            if let Some(stripped) = line.strip_prefix('\u{feff}') {
                line = stripped.to_owned().into();
            }
        }
        if line.is_empty() {
            let event = self.event.take();
            if let Some(data) = self.data.take() {
                events.push(SseEvent {
                    event: event
                        .filter(|e| !e.is_empty())
                        .unwrap_or_else(|| "message".to_owned()),
                    data,
                    id: self.last_id.clone(),
                });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            // Only ASCII digits count (WHATWG); anything else is ignored.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry_ms = value.parse().ok();
            }
            _ => {}
        }
    }
}

/// One reply body read as an event stream, its total size capped: what the MCP client and the
/// bridge read when a POST is answered with `text/event-stream`.
pub(crate) struct CappedEventStream<'a> {
    response: &'a mut reqwest::Response,
    parser: SseParser,
    read: usize,
    limit: usize,
    shown: &'a str,
    ended: bool,
}

impl<'a> CappedEventStream<'a> {
    /// `shown` names the URL in errors, already redacted.
    pub(crate) fn new(response: &'a mut reqwest::Response, limit: usize, shown: &'a str) -> Self {
        Self {
            response,
            parser: SseParser::default(),
            read: 0,
            limit,
            shown,
            ended: false,
        }
    }

    /// The stream's parser (its last event id and `retry:`).
    pub(crate) fn parser(&self) -> &SseParser {
        &self.parser
    }

    /// The events the next chunk completes (possibly none), or `None` once the stream has
    /// ended and its last events were given. Past `limit` bytes in all, the body is refused.
    pub(crate) async fn next_events(
        &mut self,
    ) -> Result<Option<Vec<SseEvent>>, crate::oauth::WireError> {
        if self.ended {
            return Ok(None);
        }
        let chunk = self
            .response
            .chunk()
            .await
            .map_err(|e| crate::oauth::http::transport_error(self.shown, &e))?;
        Ok(Some(match chunk {
            Some(bytes) => {
                self.read += bytes.len();
                if self.read > self.limit {
                    return Err(crate::oauth::WireError::BodyTooLarge {
                        url: self.shown.to_owned(),
                        limit: self.limit,
                    });
                }
                self.parser.push(&bytes)
            }
            None => {
                self.ended = true;
                self.parser.finish()
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(parser.push(chunk));
        }
        events.extend(parser.finish());
        events
    }

    fn message(data: &str) -> SseEvent {
        SseEvent {
            event: "message".into(),
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn one_message_event() {
        let events =
            parse_all(&[b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"]);
        assert_eq!(events, [message(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)]);
    }

    #[test]
    fn several_events_split_across_chunks_with_every_line_ending() {
        let events = parse_all(&[
            b": keep-alive comment\r\nid: 7\r",
            b"\nevent: message\rdata: a\r\ndata:b\n",
            b"\n",
            b"event: ping\ndata: x\n\ndata: last",
        ]);
        assert_eq!(
            events,
            [
                SseEvent {
                    event: "message".into(),
                    data: "a\nb".into(),
                    id: Some("7".into())
                },
                SseEvent {
                    event: "ping".into(),
                    data: "x".into(),
                    id: Some("7".into())
                },
                SseEvent {
                    event: "message".into(),
                    data: "last".into(),
                    id: Some("7".into())
                },
            ]
        );
    }

    #[test]
    fn blank_events_and_bom_are_ignored() {
        let events = parse_all(&["\u{feff}event: message\n\n\ndata:  two spaces\n\n".as_bytes()]);
        assert_eq!(events, [message(" two spaces")]);
    }

    #[test]
    fn cr_split_from_lf_is_one_line_end() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"data: x\r").is_empty());
        assert!(parser.push(b"\n\r").is_empty());
        assert_eq!(parser.push(b"\n"), [message("x")]);
        assert!(parser.finish().is_empty());
    }

    #[test]
    fn the_last_id_and_a_digits_only_retry_are_kept_for_a_reconnection() {
        let mut parser = SseParser::default();
        let events = parser.push(b"id: e-1\nretry: 500\ndata: \n\nretry: soon\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "");
        assert_eq!(parser.last_event_id(), Some("e-1"));
        assert_eq!(
            parser.retry_ms(),
            Some(500),
            "a non-numeric retry is ignored"
        );
    }
}
