//! The NATS text protocol as a client sees it: parsing server frames and building client frames.

use serde::Deserialize;

/// The longest control line accepted from a server (nats-server's own limit is 4096; INFO with
/// many `connect_urls` can be longer, so allow more).
pub(crate) const MAX_CONTROL_LINE: usize = 64 * 1024;

/// A message delivered to a subscription (`MSG` or `HMSG`), borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub subject: &'a str,
    pub sid: u64,
    pub reply: Option<&'a str>,
    /// The raw header block of an `HMSG` (`NATS/1.0 ...\r\n...\r\n\r\n`), `None` for `MSG`.
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// The part of a server's INFO this client uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Info {
    #[serde(default)]
    pub(crate) max_payload: usize,
    #[serde(default)]
    pub(crate) tls_required: bool,
    #[serde(default)]
    pub(crate) connect_urls: Vec<String>,
    #[serde(default)]
    pub(crate) ldm: bool,
}

/// One frame from the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Info(&'a [u8]),
    Msg(Message<'a>),
    Ping,
    Pong,
    Ok,
    Err(&'a str),
}

/// The server sent something that is not the NATS protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

fn bad(what: &str, line: &[u8]) -> ProtocolError {
    let shown: String = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    ProtocolError(format!("{what}: {shown:?}"))
}

/// Parses one frame at the start of `buf`: `Ok(None)` when the frame is not complete yet,
/// else the frame and how many bytes it used.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_CONTROL_LINE {
            return Err(bad("control line too long", buf));
        }
        return Ok(None);
    };
    let line_end = nl + 1;
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (op, rest) = match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &line[line.len()..]),
    };
    let frame = if op.eq_ignore_ascii_case(b"MSG") {
        return parse_msg(buf, line_end, rest, false);
    } else if op.eq_ignore_ascii_case(b"HMSG") {
        return parse_msg(buf, line_end, rest, true);
    } else if op.eq_ignore_ascii_case(b"PING") {
        Frame::Ping
    } else if op.eq_ignore_ascii_case(b"PONG") {
        Frame::Pong
    } else if op.eq_ignore_ascii_case(b"+OK") {
        Frame::Ok
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        let text = std::str::from_utf8(rest).map_err(|_| bad("-ERR is not UTF-8", line))?;
        Frame::Err(text.trim_matches('\''))
    } else if op.eq_ignore_ascii_case(b"INFO") {
        Frame::Info(rest)
    } else {
        return Err(bad("unknown operation", line));
    };
    Ok(Some((frame, line_end)))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

fn parse_msg<'a>(
    buf: &'a [u8],
    line_end: usize,
    args: &'a [u8],
    with_headers: bool,
) -> Result<Option<(Frame<'a>, usize)>, ProtocolError> {
    let args_str = std::str::from_utf8(args).map_err(|_| bad("MSG is not UTF-8", args))?;
    let mut words = [""; 5];
    let mut n = 0;
    for w in args_str.split_ascii_whitespace() {
        if n == words.len() {
            return Err(bad("too many MSG arguments", args));
        }
        words[n] = w;
        n += 1;
    }
    let (subject, sid, reply, hdr, total) = match (with_headers, n) {
        (false, 3) => (words[0], words[1], None, None, words[2]),
        (false, 4) => (words[0], words[1], Some(words[2]), None, words[3]),
        (true, 4) => (words[0], words[1], None, Some(words[2]), words[3]),
        (true, 5) => (words[0], words[1], Some(words[2]), Some(words[3]), words[4]),
        _ => return Err(bad("wrong number of MSG arguments", args)),
    };
    let number = |s: &str| -> Result<usize, ProtocolError> {
        s.parse::<usize>()
            .map_err(|_| bad("not a number in MSG", args))
    };
    let sid = sid
        .parse::<u64>()
        .map_err(|_| bad("not a subscription id in MSG", args))?;
    let total = number(total)?;
    let hdr = hdr.map(number).transpose()?;
    if hdr.is_some_and(|h| h > total) {
        return Err(bad("header size larger than message", args));
    }
    let end = line_end
        .checked_add(total)
        .and_then(|e| e.checked_add(2))
        .ok_or_else(|| bad("message size overflows", args))?;
    if buf.len() < end {
        return Ok(None);
    }
    let body = &buf[line_end..line_end + total];
    if &buf[line_end + total..end] != b"\r\n" {
        return Err(bad("message not followed by CRLF", args));
    }
    let (headers, payload) = match hdr {
        Some(h) => (Some(&body[..h]), &body[h..]),
        None => (None, body),
    };
    Ok(Some((
        Frame::Msg(Message {
            subject,
            sid,
            reply,
            headers,
            payload,
        }),
        end,
    )))
}

/// A subject this client may send: non-empty, no whitespace or control characters (they would
/// break the framing). Everything else is left to the server, which answers `-ERR`.
pub(crate) fn framing_safe(subject: &str) -> bool {
    !subject.is_empty()
        && !subject
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
}

pub(crate) fn pub_frame(subject: &str, reply: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(subject.len() + payload.len() + 32);
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    if let Some(r) = reply {
        out.extend_from_slice(r.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

pub(crate) fn sub_frame(out: &mut Vec<u8>, subject: &str, queue: Option<&str>, sid: u64) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    if let Some(q) = queue {
        out.extend_from_slice(q.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(sid.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn unsub_frame(out: &mut Vec<u8>, sid: u64) {
    out.extend_from_slice(b"UNSUB ");
    out.extend_from_slice(sid.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// CONNECT, then `subs` (SUB frames), then PING: the PONG (or `-ERR`) tells whether the server
/// accepted the connection and, since it processes in order, that it holds the subscriptions.
pub(crate) fn connect_frame(
    name: &str,
    user: Option<(&str, &str)>,
    tls: bool,
    echo: bool,
    subs: &[u8],
) -> Vec<u8> {
    let mut o = serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "echo": echo,
        "tls_required": tls,
        "name": name,
        "lang": "rust-natsclient",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1,
        "headers": true,
        "no_responders": false,
    });
    if let Some((u, p)) = user {
        o["user"] = u.into();
        o["pass"] = p.into();
    }
    let mut out = b"CONNECT ".to_vec();
    out.extend_from_slice(o.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(subs);
    out.extend_from_slice(b"PING\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames() {
        assert_eq!(parse(b"PING\r\n").unwrap(), Some((Frame::Ping, 6)));
        assert_eq!(parse(b"pong\r\nPING").unwrap(), Some((Frame::Pong, 6)));
        assert_eq!(parse(b"+OK\r\n").unwrap(), Some((Frame::Ok, 5)));
        assert_eq!(
            parse(b"-ERR 'Invalid Subject'\r\n").unwrap(),
            Some((Frame::Err("Invalid Subject"), 24))
        );
        assert_eq!(parse(b"PIN").unwrap(), None);
        assert!(parse(b"HELLO\r\n").is_err());
    }

    #[test]
    fn msg_split_and_whole() {
        let frame = b"MSG a.b 7 _INBOX.x 5\r\nhello\r\n";
        for cut in 0..frame.len() {
            assert_eq!(parse(&frame[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (f, n) = parse(frame).unwrap().unwrap();
        assert_eq!(n, frame.len());
        assert_eq!(
            f,
            Frame::Msg(Message {
                subject: "a.b",
                sid: 7,
                reply: Some("_INBOX.x"),
                headers: None,
                payload: b"hello",
            })
        );
    }

    #[test]
    fn hmsg_splits_headers_from_payload() {
        let frame = b"HMSG s 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        let (f, _) = parse(frame).unwrap().unwrap();
        let Frame::Msg(m) = f else { panic!("{f:?}") };
        assert_eq!(m.headers, Some(&b"NATS/1.0\r\n\r\n"[..]));
        assert_eq!(m.payload, b"hi");
        assert_eq!(m.reply, None);
    }

    #[test]
    fn bad_msg_is_an_error_not_a_panic() {
        assert!(parse(b"MSG a b 5\r\nhello\r\n").is_err());
        assert!(parse(b"MSG a 1 x\r\n").is_err());
        assert!(parse(b"MSG a 1 2\r\nhello\r\n").is_err());
        assert!(parse(b"HMSG a 1 9 5\r\nhello\r\n").is_err());
        assert!(parse(b"MSG a 1 18446744073709551615\r\n").is_err());
        assert!(parse(&vec![b'x'; MAX_CONTROL_LINE + 1]).is_err());
    }
}
