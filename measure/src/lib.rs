//! Measuring a fleet: `emulator measure` and `emulator scrape`.
//!
//! - [`run`] (`emulator measure`): connect → discover → requests (closed or open loop) →
//!   [`account`] every reply of every request → [`results`] (CSV, JSON, HTML) → summary and
//!   exit code.
//! - [`scrape`] (`emulator scrape`): `/debug/vars` and nats-server monitoring sampled into a
//!   time series and a page.
//! - [`report`]: the self-contained HTML pages and SVG plots both write.
//!
//! The library is used by the `emulator` binary's `measure` and `scrape` subcommands.

pub mod account;
mod progress;
pub mod report;
pub mod results;
pub mod run;
pub mod scrape;

pub use results::Summary;
pub use run::{MeasureArgs, run as measure};
pub use scrape::{ScrapeArgs, run as scrape};
