//! Plain SVG line charts of a result's timeline (latency and throughput per second).

use std::fmt::Write;

use super::result::BenchResult;

const W: f64 = 640.0;
const H: f64 = 240.0;
const PAD: f64 = 40.0;

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<f64>,
}

/// p50 and p99 latency per second, in milliseconds.
pub fn latency_svg(r: &BenchResult) -> String {
    let series = [
        Series { name: "p50", color: "#1f77b4", values: r.timeline.iter().map(|s| s.p50_ms).collect() },
        Series { name: "p99", color: "#d62728", values: r.timeline.iter().map(|s| s.p99_ms).collect() },
    ];
    chart("Latency per second", "ms", &series)
}

/// Answers per second, with errors per second underneath.
pub fn throughput_svg(r: &BenchResult) -> String {
    let series = [
        Series {
            name: "answers/s",
            color: "#2ca02c",
            values: r.timeline.iter().map(|s| s.throughput_per_sec).collect(),
        },
        Series {
            name: "errors/s",
            color: "#d62728",
            values: r
                .timeline
                .iter()
                .map(|s| if s.span_secs > 0.0 { s.errors as f64 / s.span_secs } else { 0.0 })
                .collect(),
        },
    ];
    chart("Throughput per second", "req/s", &series)
}

fn chart(title: &str, unit: &str, series: &[Series]) -> String {
    let points = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let top = series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (points.max(2) - 1) as f64;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * v / top;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(out, r#"<text x="{PAD}" y="20" font-size="13">{}</text>"#, escape(title));
    let _ = write!(
        out,
        r#"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="black"/>"#,
        b = H - PAD,
        r = W - PAD
    );
    let _ = write!(
        out,
        r#"<text x="4" y="{}">{:.1} {}</text><text x="4" y="{}">0</text><text x="{}" y="{}">{}s</text>"#,
        PAD,
        top,
        escape(unit),
        H - PAD,
        W - PAD - 20.0,
        H - PAD + 16.0,
        points
    );
    for (k, s) in series.iter().enumerate() {
        let coords: Vec<String> =
            s.values.iter().enumerate().map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v))).collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            s.color,
            coords.join(" ")
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="20" fill="{}">{}</text>"#,
            W - PAD - 150.0 + 80.0 * k as f64,
            s.color,
            escape(s.name)
        );
    }
    out.push_str("</svg>");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::result::bench_result;
    use crate::bench::stats::Interval;
    use crate::bench::timeline::sample;

    #[test]
    fn charts_are_svg_with_one_point_per_second() {
        let mut i = Interval::default();
        i.answered(200, 1500);
        let timeline = (0..3).map(|s| sample(s, 1.0, &i)).collect();
        let r = bench_result("closed", None, 3.0, &i, 0, timeline);
        for svg in [latency_svg(&r), throughput_svg(&r)] {
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
            assert_eq!(svg.matches("<polyline").count(), 2);
        }
        assert!(latency_svg(&r).contains("p99"));
        let empty = bench_result("closed", None, 0.0, &Interval::default(), 0, Vec::new());
        assert!(throughput_svg(&empty).ends_with("</svg>"));
    }
}
