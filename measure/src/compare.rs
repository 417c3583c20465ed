//! `emulator measure compare RUN_A RUN_B`: two runs' summaries side by side, so that a
//! regression shows (and fails a CI pipeline).
//!
//! Stages: read each run's summary.json (a results directory or the file itself) → the
//! compared figures ([`figures`]: latency percentiles, throughput, lost and failed replies, the
//! accounting) → each figure's delta and whether it is worse beyond `--threshold` percent (and,
//! for latencies, beyond `--latency-floor-ms`) → printed table, compare.json and compare.html in
//! `--out` → exit 1 on a regression, 0 without, 2 when a run cannot be read.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Serialize;
use serde_json::Value;

use crate::error::MeasureError;
use crate::report;

/// Compares two runs of `emulator measure`.
#[derive(Debug, Clone, Parser)]
#[command(about = "Deltas between two runs' summaries; exits 1 on a regression")]
pub struct CompareArgs {
    /// The baseline run: its results directory (--out of measure) or its summary.json.
    pub run_a: PathBuf,
    /// The run compared against the baseline.
    pub run_b: PathBuf,
    /// Percent by which a figure may get worse before it counts as a regression.
    #[arg(long, default_value_t = 10.0)]
    pub threshold: f64,
    /// Latency changes smaller than this many milliseconds never count as regressions (a
    /// small fleet's 1 ms to 2 ms is noise, not a doubling).
    #[arg(long, default_value_t = 5.0)]
    pub latency_floor_ms: f64,
    /// Directory for compare.json and compare.html (default: RUN_B's directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print compare.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Which way a figure gets better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

/// How a figure's change is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judged {
    /// Worse by more than the threshold percent (latencies: and the floor) is a regression.
    Threshold,
    /// Any rise from the baseline's share beyond the threshold, or from none to some, is a
    /// regression (lost and failed replies).
    Share,
    /// A true that became false is a regression (the accounting closes).
    Flag,
    /// Shown, never a regression (wall time, discovery time, extreme percentiles).
    Info,
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: String,
    pub a: f64,
    pub b: f64,
    pub delta: f64,
    /// `delta` as percent of `a` (absent when `a` is 0).
    pub delta_percent: Option<f64>,
    pub better: Better,
    pub judged: Judged,
    pub regression: bool,
}

/// The whole comparison, as written to compare.json.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub run_a: String,
    pub run_b: String,
    pub threshold_percent: f64,
    pub latency_floor_ms: f64,
    pub figures: Vec<Figure>,
    pub regressions: Vec<String>,
}

fn summary_path(run: &Path) -> PathBuf {
    if run.is_dir() {
        run.join("summary.json")
    } else {
        run.to_owned()
    }
}

fn read_summary(run: &Path) -> Result<Value, MeasureError> {
    let path = summary_path(run);
    let text = std::fs::read_to_string(&path).map_err(|source| MeasureError::ReadInput {
        flag: "compare",
        path: path.clone(),
        source,
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| MeasureError::BadInput {
        flag: "compare",
        path: path.clone(),
        reason: format!("not JSON: {e}"),
    })?;
    if !v["expected"].is_u64() || !v["latency_ms"].is_object() {
        return Err(MeasureError::BadInput {
            flag: "compare",
            path,
            reason: "not a summary.json of emulator measure (no expected, latency_ms)".to_owned(),
        });
    }
    Ok(v)
}

fn share(v: &Value, key: &str) -> f64 {
    let expected = v["expected"].as_f64().unwrap_or(0.0);
    if expected == 0.0 {
        0.0
    } else {
        v[key].as_f64().unwrap_or(0.0) / expected * 100.0
    }
}

/// The compared figures of runs `a` and `b`, judged with `args`' threshold and floor.
pub fn figures(a: &Value, b: &Value, threshold: f64, latency_floor_ms: f64) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut add = |name: &str, va: f64, vb: f64, better: Better, judged: Judged, floor: f64| {
        let delta = vb - va;
        let delta_percent = (va != 0.0).then(|| delta / va * 100.0);
        let worse = match better {
            Better::Lower => delta,
            Better::Higher => -delta,
        };
        let regression = match judged {
            Judged::Threshold => worse > floor && delta_percent.is_none_or(|p| p.abs() > threshold),
            Judged::Share => worse > 0.0 && (va == 0.0 || worse / va * 100.0 > threshold),
            Judged::Flag => va > 0.0 && vb == 0.0,
            Judged::Info => false,
        };
        out.push(Figure {
            name: name.to_owned(),
            a: va,
            b: vb,
            delta,
            delta_percent,
            better,
            judged,
            regression,
        });
    };
    for (p, judged) in [
        ("p50", Judged::Threshold),
        ("p90", Judged::Threshold),
        ("p99", Judged::Threshold),
        ("p99.9", Judged::Info),
        ("max", Judged::Info),
    ] {
        let get = |v: &Value| v["latency_ms"][p].as_f64().unwrap_or(0.0);
        add(
            &format!("latency {p} ms"),
            get(a),
            get(b),
            Better::Lower,
            judged,
            latency_floor_ms,
        );
    }
    let num = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    add(
        "replies per second",
        num(a, "replies_per_second"),
        num(b, "replies_per_second"),
        Better::Higher,
        Judged::Threshold,
        0.0,
    );
    add(
        "missing replies %",
        share(a, "missing"),
        share(b, "missing"),
        Better::Lower,
        Judged::Share,
        0.0,
    );
    add(
        "failed replies %",
        share(a, "failed"),
        share(b, "failed"),
        Better::Lower,
        Judged::Share,
        0.0,
    );
    add(
        "late replies %",
        share(a, "late"),
        share(b, "late"),
        Better::Lower,
        Judged::Share,
        0.0,
    );
    let closes = |v: &Value| f64::from(u8::from(v["accounting_closes"] == true));
    add(
        "accounting closes",
        closes(a),
        closes(b),
        Better::Higher,
        Judged::Flag,
        0.0,
    );
    for (k, name) in [
        ("expected", "expected replies"),
        ("requests", "requests"),
        ("discovered", "discovered"),
        ("wall_seconds", "wall seconds"),
        ("discovery_seconds", "discovery seconds"),
    ] {
        let better = if k.ends_with("seconds") {
            Better::Lower
        } else {
            Better::Higher
        };
        add(name, num(a, k), num(b, k), better, Judged::Info, 0.0);
    }
    out
}

/// The comparison of `args`' two runs.
pub fn compare(args: &CompareArgs) -> Result<Comparison, MeasureError> {
    let a = read_summary(&args.run_a)?;
    let b = read_summary(&args.run_b)?;
    let figures = figures(&a, &b, args.threshold, args.latency_floor_ms);
    Ok(Comparison {
        run_a: args.run_a.display().to_string(),
        run_b: args.run_b.display().to_string(),
        threshold_percent: args.threshold,
        latency_floor_ms: args.latency_floor_ms,
        regressions: figures
            .iter()
            .filter(|f| f.regression)
            .map(|f| f.name.clone())
            .collect(),
        figures,
    })
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn percent(f: &Figure) -> String {
    f.delta_percent
        .map_or_else(|| "-".to_owned(), |p| format!("{p:+.1}%"))
}

fn verdict(f: &Figure) -> &'static str {
    match (f.regression, f.judged) {
        (true, _) => "REGRESSION",
        (false, Judged::Info) => "info",
        (false, Judged::Threshold | Judged::Share | Judged::Flag) => "ok",
    }
}

/// The terminal table.
pub fn table(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A: {}\nB: {}", c.run_a, c.run_b);
    let _ = writeln!(
        out,
        "  {:<22} {:>12} {:>12} {:>12} {:>9}  verdict",
        "figure", "A", "B", "delta", "delta %"
    );
    for f in &c.figures {
        let _ = writeln!(
            out,
            "  {:<22} {:>12} {:>12} {:>12} {:>9}  {}",
            f.name,
            number(f.a),
            number(f.b),
            number(f.delta),
            percent(f),
            verdict(f)
        );
    }
    let _ = writeln!(out, "{}", verdict_line(c));
    out
}

fn verdict_line(c: &Comparison) -> String {
    if c.regressions.is_empty() {
        format!(
            "no regression beyond {}% (latencies: and {} ms)",
            c.threshold_percent, c.latency_floor_ms
        )
    } else {
        format!(
            "REGRESSION beyond {}%: {}",
            c.threshold_percent,
            c.regressions.join(", ")
        )
    }
}

/// compare.html: the verdict, the figures (regressions marked) and the latency percentiles of
/// both runs drawn side by side.
pub fn html(c: &Comparison) -> String {
    let facts = vec![
        ("run A (baseline)".to_owned(), c.run_a.clone()),
        ("run B".to_owned(), c.run_b.clone()),
        (
            "threshold".to_owned(),
            format!(
                "{}% (latencies also {} ms)",
                c.threshold_percent, c.latency_floor_ms
            ),
        ),
        ("verdict".to_owned(), verdict_line(c)),
    ];
    let rows: Vec<Vec<String>> = c
        .figures
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                number(f.a),
                number(f.b),
                number(f.delta),
                percent(f),
                verdict(f).to_owned(),
            ]
        })
        .collect();
    let table = report::table(
        "figures",
        "Figures",
        &["figure", "A", "B", "delta", "delta %", "verdict"],
        &rows,
        "no figures",
    )
    .replace(
        "<td>REGRESSION</td>",
        "<td class=\"regression\">REGRESSION</td>",
    );
    let latencies: Vec<&Figure> = c
        .figures
        .iter()
        .filter(|f| f.name.starts_with("latency "))
        .collect();
    let series = |name: &str, pick: fn(&Figure) -> f64| report::Series {
        name: name.to_owned(),
        points: latencies
            .iter()
            .enumerate()
            .map(|(i, f)| (i as f64, pick(f)))
            .collect(),
    };
    let chart = report::line_chart(
        "Latency percentiles: p50, p90, p99, p99.9, max (left to right)",
        "percentile",
        "milliseconds",
        &[series("A", |f| f.a), series("B", |f| f.b)],
    );
    report::page("Choria fleet run comparison", &facts, &[table, chart]).replace(
        "</style>",
        "td.regression{color:#b00;font-weight:bold}</style>",
    )
}

/// Runs the comparison; returns the exit code (1 on a regression).
pub fn run(args: &CompareArgs) -> Result<i32, MeasureError> {
    if !args.threshold.is_finite() || args.threshold < 0.0 {
        return Err(MeasureError::flag(
            "--threshold",
            "must be a non-negative percentage",
        ));
    }
    if !args.latency_floor_ms.is_finite() || args.latency_floor_ms < 0.0 {
        return Err(MeasureError::flag(
            "--latency-floor-ms",
            "must be a non-negative number of milliseconds",
        ));
    }
    let comparison = compare(args)?;
    let out = args.out.clone().unwrap_or_else(|| {
        summary_path(&args.run_b)
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default()
    });
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::create_dir_all(&out)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|source| MeasureError::Write { path, source })
    };
    let json = serde_json::to_string_pretty(&comparison)
        .map_err(|e| MeasureError::Task(format!("compare.json: {e}")))?;
    write("compare.json", json.clone())?;
    write("compare.html", html(&comparison))?;
    if args.json {
        println!("{json}");
    } else {
        print!("{}", table(&comparison));
        println!("written to {}", out.display());
    }
    Ok(i32::from(!comparison.regressions.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(p50: f64, rps: f64, missing: u64) -> Value {
        json!({
            "expected": 100, "missing": missing, "failed": 0, "late": 0,
            "replies_per_second": rps, "accounting_closes": true,
            "latency_ms": {"p50": p50, "p90": p50, "p99": p50, "p99.9": p50, "max": p50}
        })
    }

    fn regressions(a: &Value, b: &Value) -> Vec<String> {
        figures(a, b, 10.0, 5.0)
            .into_iter()
            .filter(|f| f.regression)
            .map(|f| f.name)
            .collect()
    }

    #[test]
    fn regressions_are_worse_beyond_the_threshold_and_floor() {
        let base = run(2.0, 1000.0, 0);
        assert!(regressions(&base, &run(3.9, 950.0, 0)).is_empty(), "noise");
        assert_eq!(
            regressions(&base, &run(300.0, 1000.0, 0)),
            ["latency p50 ms", "latency p90 ms", "latency p99 ms"]
        );
        assert_eq!(
            regressions(&base, &run(2.0, 800.0, 0)),
            ["replies per second"]
        );
        assert_eq!(
            regressions(&base, &run(2.0, 1000.0, 1)),
            ["missing replies %"]
        );
        assert!(regressions(&run(300.0, 5.0, 3), &base).is_empty(), "better");
        let mut broken = base.clone();
        broken["accounting_closes"] = json!(false);
        assert_eq!(regressions(&base, &broken), ["accounting closes"]);
        let f = &figures(&base, &run(3.0, 1000.0, 0), 10.0, 5.0)[0];
        assert_eq!((f.delta, f.delta_percent), (1.0, Some(50.0)));
    }
}
