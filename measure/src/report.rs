//! Self-contained HTML pages with SVG plots (drawn with plotters), for `measure` and `scrape`.

use plotters::prelude::*;

/// One named line of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Text made safe for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The drawn SVG, or the reason it could not be drawn as a visible error paragraph.
fn finish(title: &str, svg: String, drawn: Result<(), Box<dyn std::error::Error>>) -> String {
    match drawn {
        Ok(()) => svg,
        Err(e) => format!(
            "<p class=\"error\">{}: {}</p>",
            escape(title),
            escape(&e.to_string())
        ),
    }
}

/// A line chart as an SVG string; an error message in a `<p>` when nothing can be drawn.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    line_chart_upto(title, x_label, y_label, series, 0.0)
}

/// A line chart whose x axis spans at least `0..x_span`, so that charts of one run share an
/// axis.
pub fn line_chart_upto(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x_span: f64,
) -> String {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_max) = (x_span.max(0.0) / 1.05, 0.0f64);
    for (x, y) in points {
        x_max = x_max.max(*x);
        y_max = y_max.max(*y);
    }
    if series.iter().all(|s| s.points.is_empty()) {
        return format!("<p class=\"empty\">{}: no data</p>", escape(title));
    }
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..(x_max * 1.05).max(1e-9), 0.0..(y_max * 1.1).max(1.0))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour.stroke_width(2),
                ))?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        if series.len() > 1 && series.len() <= 12 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    })();
    finish(title, svg, drawn)
}

/// A histogram (bars of `counts`, each `width` wide on the x axis) as an SVG string.
pub fn histogram(title: &str, x_label: &str, width: f64, counts: &[usize]) -> String {
    if counts.iter().all(|c| *c == 0) {
        return format!("<p class=\"empty\">{}: no data</p>", escape(title));
    }
    let y_max = counts.iter().copied().max().unwrap_or(1) as f64;
    let x_max = counts.len() as f64 * width;
    let mut svg = String::new();
    let drawn =
        (|| -> Result<(), Box<dyn std::error::Error>> {
            let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..x_max.max(1e-9), 0.0..(y_max * 1.1).max(1.0))?;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc("replies")
                .draw()?;
            chart.draw_series(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(
                |(i, c)| {
                    let x0 = i as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, *c as f64)], BLUE.mix(0.6).filled())
                },
            ))?;
            root.present()?;
            Ok(())
        })();
    finish(title, svg, drawn)
}

/// A table with a heading (`id` on the table), or `empty` in its one row when there are no
/// rows.
pub fn table(id: &str, title: &str, headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    let mut out = format!(
        "<h2>{}</h2>\n<table id=\"{}\"><tr>",
        escape(title),
        escape(id)
    );
    for h in headers {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr>\n");
    if rows.is_empty() {
        out.push_str(&format!(
            "<tr><td class=\"none\" colspan=\"{}\">{}</td></tr>\n",
            headers.len(),
            escape(empty)
        ));
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>");
    out
}

/// A whole page: a title, a key/value table and the charts.
pub fn page(title: &str, facts: &[(String, String)], charts: &[String]) -> String {
    let mut rows = String::new();
    for (k, v) in facts {
        rows.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>\n",
            escape(k),
            escape(v)
        ));
    }
    let mut body = String::new();
    for chart in charts {
        body.push_str("<figure>");
        body.push_str(chart);
        body.push_str("</figure>\n");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin-bottom:1.5em}}th,td{{border:1px solid #ccc;padding:4px 10px;text-align:left}}figure{{margin:1em 0}}</style></head>\n<body><h1>{t}</h1>\n<table>\n{rows}</table>\n{body}</body></html>\n",
        t = escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_shapes() {
        let svg = line_chart(
            "t",
            "x",
            "y",
            &[Series {
                name: "a".into(),
                points: vec![(0.0, 0.0), (1.0, 2.0)],
            }],
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<polyline") || svg.contains("<path"), "{svg}");
        let h = histogram("h", "ms", 10.0, &[1, 0, 3]);
        assert!(h.contains("<rect"), "{h}");
        assert!(histogram("h", "ms", 10.0, &[]).contains("no data"));
        let p = page("R<1>", &[("k".into(), "v".into())], &[svg]);
        assert!(p.contains("<title>R&lt;1&gt;</title>"));
    }
}
