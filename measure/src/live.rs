//! The live fleet page: one self-contained HTML file (inline CSS, JavaScript and SVG; nothing
//! fetched from elsewhere) that the emulator serves at `/`, beside the `/debug/vars` it reads.
//!
//! Stages (in the browser): poll `debug/vars` every second → counters and per-server
//! connections shown → requests and replies per second from the difference between samples →
//! a two-minute moving plot. The page lives here with the other pages so that the emulator
//! crate holds no HTML; the emulator only serves [`PAGE`].

/// The page, as served.
pub const PAGE: &str = include_str!("live.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_reads_debug_vars() {
        assert!(PAGE.starts_with("<!DOCTYPE html>"));
        assert!(PAGE.contains("fetch(\"debug/vars\""));
        for external in ["http://", "https://", "src=", "<link", "@import"] {
            let hits: Vec<&str> = PAGE
                .lines()
                .filter(|l| l.contains(external) && !l.contains("http://www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{external}: {hits:?}");
        }
    }
}
