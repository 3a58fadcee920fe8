//! One SVG plot per scenario of figure 6: the three designs' database connections, rows stored
//! and Spillway's queue depth over time, all from the run whose table the plot illustrates.

use std::fmt::Write as _;

use super::burst::RunResult;
use super::experiment::ScenarioResult;
use super::BURST_MAX_CONNECTIONS;

const COLORS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];

/// One panel: a title, per design the line segments to draw (a failed sample breaks the line),
/// and an optional dashed limit.
struct Panel {
    title: String,
    series: Vec<Vec<Vec<(f64, f64)>>>,
    limit: Option<f64>,
}

/// A series over time; `None` where a sample is missing.
type Points = Vec<(f64, Option<f64>)>;

/// Splits `points` into segments at the missing values.
fn segments(points: Points) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (t, v) in points {
        match v {
            Some(v) => out.last_mut().map(|s| s.push((t, v))).unwrap_or_default(),
            None => {
                if out.last().is_some_and(|s| !s.is_empty()) {
                    out.push(Vec::new());
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

pub(super) fn scenario_svg(sc: &ScenarioResult) -> String {
    let runs = &sc.runs;
    let panel = |title: &str, limit, points: &dyn Fn(&RunResult) -> Points| {
        let series = runs.iter().map(|r| segments(points(r))).collect();
        let title = title.to_owned();
        Panel {
            title,
            series,
            limit,
        }
    };
    let panels = [
        panel(
            "PostgreSQL client connections (pg_stat_activity; gaps: no sample)",
            Some(f64::from(BURST_MAX_CONNECTIONS)),
            &|r| {
                let samples = r.samples.iter();
                samples
                    .map(|s| (s.t, s.connections.map(|c| c as f64)))
                    .collect()
            },
        ),
        panel("rows in PostgreSQL, % of events sent", Some(100.0), &|r| {
            let sent = r.events_sent.max(1) as f64;
            let samples = r.samples.iter();
            samples
                .map(|s| (s.t, s.rows.map(|n| 100.0 * n as f64 / sent)))
                .collect()
        }),
        panel(
            "Spillway's SQS queue, messages (visible + in flight)",
            None,
            &|r| r.queue.iter().map(|&(t, d)| (t, Some(d as f64))).collect(),
        ),
    ];
    let (w, ph, left, top) = (860.0, 170.0, 70.0, 40.0);
    let pw = w - left - 30.0;
    let t_max = panels
        .iter()
        .flat_map(|p| p.series.iter().flatten().flatten().map(|(t, _)| *t))
        .fold(1.0f64, f64::max);
    let h = top + panels.len() as f64 * (ph + 55.0) + 30.0 + 16.0 * runs.len() as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="20" font-size="14">{}; seconds since the start (cargo xtask bench)</text>"#,
        xml_escape(&sc.scenario.title())
    );
    let outage = runs.iter().find_map(|r| r.outage);
    for (i, panel) in panels.iter().enumerate() {
        let y0 = top + i as f64 * (ph + 55.0) + 20.0;
        let y_max = panel
            .series
            .iter()
            .flatten()
            .flatten()
            .map(|(_, v)| *v)
            .chain(panel.limit)
            .fold(0.0f64, f64::max);
        let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
        let x = |t: f64| left + pw * t / t_max;
        let y = |v: f64| y0 + ph - ph * v / y_max;
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
            y0 - 6.0,
            xml_escape(&panel.title)
        );
        if let Some((a, b)) = outage {
            let _ = writeln!(
                svg,
                r##"<rect x="{:.1}" y="{y0}" width="{:.1}" height="{ph}" fill="#eee"/>"##,
                x(a),
                (x(b) - x(a)).max(0.0)
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        for k in 0..=4 {
            let v = y_max * f64::from(k) / 4.0;
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{v:.0}</text>"##,
                left - 6.0,
                y(v) + 4.0
            );
            let tv = t_max * f64::from(k) / 4.0;
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">{tv:.1} s</text>"##,
                x(tv),
                y0 + ph + 15.0
            );
        }
        if let Some(l) = panel.limit {
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{}" y1="{yl}" y2="{yl}" stroke="#888" stroke-dasharray="5,4"/>"##,
                left + pw,
                yl = y(l)
            );
        }
        for (segs, color) in panel.series.iter().zip(COLORS) {
            for seg in segs {
                let pts: Vec<String> = seg
                    .iter()
                    .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                    .collect();
                let _ = writeln!(
                    svg,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                    pts.join(" ")
                );
            }
        }
    }
    for (k, (r, color)) in runs.iter().zip(COLORS).enumerate() {
        let yy = h - 22.0 - 16.0 * (runs.len() - 1 - k) as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{left}" y="{}" width="14" height="4" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            yy - 4.0,
            left + 20.0,
            yy + 1.0,
            xml_escape(&r.design)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" fill="#555" text-anchor="end">dashed: max_connections = {BURST_MAX_CONNECTIONS}; 100% of events sent{}</text>"##,
        left + pw,
        h - 6.0,
        if outage.is_some() {
            "; grey: PostgreSQL stopped"
        } else {
            ""
        }
    );
    svg.push_str("</svg>\n");
    svg
}

pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_sample_breaks_the_line() {
        let s = segments(vec![
            (0.0, Some(1.0)),
            (1.0, None),
            (2.0, Some(3.0)),
            (3.0, Some(4.0)),
        ]);
        assert_eq!(s, vec![vec![(0.0, 1.0)], vec![(2.0, 3.0), (3.0, 4.0)]]);
        assert!(segments(vec![(0.0, None)]).is_empty());
    }
}
