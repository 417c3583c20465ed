//! `federation-bench`: how many messages per second one federation broker forwards (two private
//! nats-servers, one broker, publishers and a sink). Build with `--release`.

use std::process::ExitCode;

use clap::Parser;
use federation::bench::{self, BenchOptions};

/// Measures the messages per second one federation broker forwards.
#[derive(Debug, Parser)]
#[command(name = "federation-bench", version, about, long_about = None)]
struct Cli {
    /// Requests to publish.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Publishing connections.
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Broker workers.
    #[arg(long, default_value_t = 10)]
    workers: usize,
    /// Most requests in flight (published, not yet forwarded).
    #[arg(long, default_value_t = 20_000)]
    window: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = BenchOptions {
        messages: cli.messages,
        publishers: cli.publishers,
        workers: cli.workers,
        window: cli.window,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("federation-bench: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::run(&options)) {
        Ok(report) => {
            println!(
                "forwarded {} of {} federated requests ({} bytes each) in {:.3} s: {:.0} messages/s; workers {}, publishers {}, broker received {}, slow consumers {:?}, rejected {}",
                report.forwarded,
                report.published,
                report.body_bytes,
                report.elapsed.as_secs_f64(),
                report.rate(),
                options.workers,
                options.publishers,
                report.counters.received,
                report.counters.slow_consumers,
                report.counters.rejected_total(),
            );
            if report.complete() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "federation-bench: error: {} messages were not forwarded",
                    report.published - report.forwarded
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("federation-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
