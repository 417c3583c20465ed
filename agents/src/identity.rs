//! The default identity of a Choria daemon or client: the host name, as Choria takes it.

/// The host name could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot determine the host name: no /proc/sys/kernel/hostname and no $HOSTNAME")]
pub struct NoHostname;

/// The host name: `/proc/sys/kernel/hostname`, else `$HOSTNAME`.
pub fn hostname() -> Result<String, NoHostname> {
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            return Ok(h.to_owned());
        }
    }
    std::env::var("HOSTNAME")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .ok_or(NoHostname)
}

/// `explicit` when given and not empty, else the host name.
pub fn identity_or_hostname(explicit: Option<&str>) -> Result<String, NoHostname> {
    match explicit {
        Some(n) if !n.trim().is_empty() => Ok(n.trim().to_owned()),
        _ => hostname(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_wins_and_hostname_is_not_empty() {
        assert_eq!(identity_or_hostname(Some(" web1 ")).unwrap(), "web1");
        let h = identity_or_hostname(Some("")).unwrap();
        assert!(!h.is_empty());
        assert_eq!(h, hostname().unwrap());
    }
}
