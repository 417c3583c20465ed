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

#[cfg(test)]
mod tests {
    use super::*;

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
