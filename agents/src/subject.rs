//! NATS subject naming of Choria v1.

use md5::{Digest, Md5};

/// Name of collective number `i`: `mcollective` first, then `collective1`, `collective2`, ...
pub fn collective_name(i: usize) -> String {
    if i == 0 {
        "mcollective".to_owned()
    } else {
        format!("collective{i}")
    }
}

/// `<collective>.node.<identity>`: requests addressed to one node.
pub fn node(collective: &str, identity: &str) -> String {
    format!("{collective}.node.{identity}")
}

/// `<collective>.broadcast.agent.<agent>`: requests to every node with an agent.
pub fn broadcast(collective: &str, agent: &str) -> String {
    format!("{collective}.broadcast.agent.{agent}")
}

/// `<collective>.reply.<md5(callerid)>.<requestid>`: where a Go client collects replies.
pub fn reply(collective: &str, callerid: &str, requestid: &str) -> String {
    let digest = Md5::digest(callerid.as_bytes());
    let mut hex = String::with_capacity(32);
    for b in digest {
        hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    format!("{collective}.reply.{hex}.{requestid}")
}

/// `choria.federation.<network>.federation`: where a federated client publishes requests for
/// the Federation Member `network` (on the federation network).
pub fn federation(network: &str) -> String {
    format!("choria.federation.{network}.federation")
}

/// nats-server's default `max_control_line`: the longest protocol line (`PUB <subject> ...`)
/// a server accepts before it closes the connection.
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;

/// Room a `PUB`/`HPUB` line needs beside its subject (verb, sizes, spaces, CRLF).
const CONTROL_LINE_OVERHEAD: usize = 64;

/// Whether `subject` may be published to: not empty, tokens separated by single dots, no
/// whitespace, control characters or wildcards, and short enough that the publish line fits
/// nats-server's `max_control_line` (publishing a longer one makes the server close the
/// connection).
pub fn is_publishable(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() + CONTROL_LINE_OVERHEAD <= DEFAULT_MAX_CONTROL_LINE
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && token
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishable_subjects() {
        assert!(is_publishable("mcollective.reply.abc.123"));
        assert!(is_publishable("_INBOX.x-y_z"));
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "a b",
            "a.*",
            "a.>",
            "a\tb",
            "a\r\nPUB x 1",
        ] {
            assert!(!is_publishable(bad), "{bad:?}");
        }
        let long = format!("x.{}", "x".repeat(5000));
        assert!(!is_publishable(&long));
        assert!(is_publishable(&format!("x.{}", "x".repeat(3000))));
    }

    #[test]
    fn names_follow_choria() {
        assert_eq!(collective_name(0), "mcollective");
        assert_eq!(collective_name(3), "collective3");
        assert_eq!(node("mcollective", "emu1-0"), "mcollective.node.emu1-0");
        assert_eq!(
            broadcast("collective1", "discovery"),
            "collective1.broadcast.agent.discovery"
        );
        assert_eq!(
            reply(
                "mcollective",
                "choria=rip.mcollective",
                "4b1e7c0f9a2d4e6b8c3a5f7d9e1b2c4d"
            ),
            "mcollective.reply.37bdf08389145a56c13096c178802d3b.4b1e7c0f9a2d4e6b8c3a5f7d9e1b2c4d"
        );
    }
}
