//! Measuring a fleet: `emulator measure` and `emulator scrape`.
//!
//! - [`run`] (`emulator measure`): connect → discover → requests (closed or open loop) →
//!   [`account`] every reply of every request → [`results`] (CSV, JSON, HTML) → summary and
//!   exit code.
//! - [`scrape`] (`emulator scrape`): `/debug/vars` and nats-server monitoring sampled into a
//!   time series and a page.
//! - [`registration`] (`emulator measure --registration`): listen → decode → count every
//!   registration by sender, second and round → result files and exit code.
//! - [`report`]: the self-contained HTML pages and SVG plots both write.
//! - [`live`]: the live fleet page the emulator serves at `/`.
//! - [`story`] and [`monitor`]: report.html's slowest, missing and failing identities, and
//!   the broker's `/varz` sampled during the run on the replies' time axis.
//! - [`compare`] (`emulator measure compare`): two runs' summaries side by side, with
//!   regressions beyond a threshold.
//!
//! The library is used by the `emulator` binary's `measure` and `scrape` subcommands.

pub mod account;
pub mod args;
pub mod compare;
pub mod error;
pub mod live;
pub mod monitor;
mod progress;
pub mod registration;
pub mod report;
pub mod results;
pub mod run;
pub mod scrape;
pub mod signals;
pub mod story;

pub use error::MeasureError;
pub use results::Summary;
pub use run::MeasureArgs;
pub use scrape::ScrapeArgs;

/// `emulator measure`: [`run::run`] (or with `--registration`: [`registration::run`]; or
/// `compare`: [`compare::run`]), with usage errors printed and turned into exit code 2.
pub async fn measure(args: MeasureArgs) -> Result<i32, MeasureError> {
    if let Some(args::MeasureCommand::Compare(compare)) = &args.command {
        return error::usage_exits_2(compare::run(compare));
    }
    if args.registration {
        return error::usage_exits_2(registration::run(&args).await);
    }
    error::usage_exits_2(run::run(args).await)
}

/// `emulator scrape`: [`scrape::run`], with usage errors printed and turned into exit code 2.
pub async fn scrape(args: ScrapeArgs) -> Result<i32, MeasureError> {
    error::usage_exits_2(scrape::run(args).await)
}
