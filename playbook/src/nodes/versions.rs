//! Puppet-style SemVer ranges for `uses:` (`~1.0.0`, `^1.2`, `>= 1.2`, `1.x`, `1.2.3`,
//! space-separated AND, `||` OR). Two-component versions are padded (`1.1` → `1.1.0`);
//! pre-release suffixes are ignored.

/// A version `major.minor.patch`.
pub(crate) type Version = (u64, u64, u64);

/// Parses a version, padding missing components with zero.
pub(crate) fn parse_version(text: &str) -> Option<Version> {
    let core = text.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or(core);
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Ge(Version),
    Gt(Version),
    Le(Version),
    Lt(Version),
}

impl Cmp {
    fn holds(self, v: Version) -> bool {
        match self {
            Self::Ge(x) => v >= x,
            Self::Gt(x) => v > x,
            Self::Le(x) => v <= x,
            Self::Lt(x) => v < x,
        }
    }
}

/// A parsed range: any alternative whose comparators all hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Range(Vec<Vec<Cmp>>);

impl Range {
    /// Parses a range; the error says why.
    pub(crate) fn parse(text: &str) -> Result<Range, String> {
        let mut alternatives = Vec::new();
        for alt in text.split("||") {
            let mut words: Vec<String> = Vec::new();
            for w in alt.split_whitespace() {
                match words.last_mut() {
                    Some(last)
                        if matches!(last.as_str(), ">" | ">=" | "<" | "<=" | "=" | "~" | "^") =>
                    {
                        last.push_str(w)
                    }
                    _ => words.push(w.to_string()),
                }
            }
            let mut cmps = Vec::new();
            for w in &words {
                cmps.extend(
                    comparator(w).ok_or_else(|| format!("invalid version range {text:?}"))?,
                );
            }
            if cmps.is_empty() {
                return Err(format!("invalid version range {text:?}"));
            }
            alternatives.push(cmps);
        }
        Ok(Range(alternatives))
    }

    /// Whether `v` satisfies the range.
    pub(crate) fn matches(&self, v: Version) -> bool {
        self.0.iter().any(|alt| alt.iter().all(|c| c.holds(v)))
    }
}

fn comparator(w: &str) -> Option<Vec<Cmp>> {
    for (prefix, make) in [
        (">=", Cmp::Ge as fn(Version) -> Cmp),
        ("<=", Cmp::Le),
        (">", Cmp::Gt),
        ("<", Cmp::Lt),
    ] {
        if let Some(rest) = w.strip_prefix(prefix) {
            return Some(vec![make(parse_version(rest)?)]);
        }
    }
    if let Some(rest) = w.strip_prefix('~') {
        let v = parse_version(rest)?;
        let components = rest.split('.').count();
        let upper = if components >= 2 {
            (v.0, v.1 + 1, 0)
        } else {
            (v.0 + 1, 0, 0)
        };
        return Some(vec![Cmp::Ge(v), Cmp::Lt(upper)]);
    }
    if let Some(rest) = w.strip_prefix('^') {
        let v = parse_version(rest)?;
        let upper = if v.0 > 0 {
            (v.0 + 1, 0, 0)
        } else {
            (0, v.1 + 1, 0)
        };
        return Some(vec![Cmp::Ge(v), Cmp::Lt(upper)]);
    }
    let exact = w.strip_prefix('=').unwrap_or(w);
    let parts: Vec<&str> = exact.split('.').collect();
    let wild = |p: &str| p == "x" || p == "X" || p == "*";
    let wild_tail = parts.len() > 1 && parts[1..].iter().all(|p| wild(p));
    if parts.len() == 1 && wild(parts[0]) {
        return Some(vec![Cmp::Ge((0, 0, 0))]);
    }
    if parts.len() == 1 || wild_tail {
        let major: u64 = parts[0].parse().ok()?;
        return Some(vec![Cmp::Ge((major, 0, 0)), Cmp::Lt((major + 1, 0, 0))]);
    }
    if parts.len() == 3 && wild(parts[2]) {
        let (major, minor): (u64, u64) = (parts[0].parse().ok()?, parts[1].parse().ok()?);
        return Some(vec![
            Cmp::Ge((major, minor, 0)),
            Cmp::Lt((major, minor + 1, 0)),
        ]);
    }
    let v = parse_version(exact)?;
    Some(vec![Cmp::Ge(v), Cmp::Le(v)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(range: &str, v: &str) -> bool {
        Range::parse(range)
            .expect("range")
            .matches(parse_version(v).expect("version"))
    }

    #[test]
    fn ranges() {
        assert!(ok("~1.0.0", "1.0.9"));
        assert!(!ok("~1.0.0", "1.1.0"));
        assert!(ok(">= 0.0.1", "1.2"));
        assert!(ok(">=1.0 <2", "1.5.0"));
        assert!(!ok(">=1.0 <2", "2.0.0"));
        assert!(ok("1.x", "1.9.9"));
        assert!(!ok("1.x", "2.0.0"));
        assert!(ok("1.2.x", "1.2.7"));
        assert!(ok("^1.2.3", "1.9.0"));
        assert!(ok("1.0.0 || 2.x", "2.1.0"));
        assert!(ok("1.1", "1.1.0"));
        assert!(!ok("1.1.0", "1.1.1"));
        assert!(Range::parse("latest").is_err());
        assert!(Range::parse("").is_err());
    }
}
