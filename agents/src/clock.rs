//! The one wall clock of the Choria protocol: whole seconds since the Unix epoch, as requests
//! and replies carry them.

/// Seconds since the Unix epoch; 0 if the system clock is before it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_after_2020() {
        assert!(super::unix_now() > 1_577_836_800);
    }
}
