//! The burst figure's SVG plot.

use std::fmt::Write as _;

use super::burst::BurstResult;
use super::{BURST_EVENTS_PER_REQUEST, BURST_MAX_CONNECTIONS};

// ---------------------------------------------------------------------------------------------
// The plot

/// One panel of the plot: a title, and per system the points to draw.
pub(super) struct Panel<'a> {
    pub(super) title: &'a str,
    pub(super) series: Vec<Vec<(f64, f64)>>,
    pub(super) limit: Option<f64>,
    /// The panel's own time span, when it zooms in.
    pub(super) zoom: Option<f64>,
}

pub(super) fn burst_svg(pair: &[BurstResult]) -> String {
    let (w, ph, left, top) = (860.0, 170.0, 70.0, 40.0);
    let pw = w - left - 30.0;
    let colors = ["#1f77b4", "#d62728"];
    // The baseline is over in seconds; a zoomed copy of the connections panel shows its spike.
    let zoom = pair
        .iter()
        .map(|b| b.all_answered_s)
        .fold(0.0f64, f64::max)
        .min(
            pair.iter()
                .map(|b| b.all_answered_s)
                .fold(f64::MAX, f64::min)
                * 2.0
                + 1.0,
        );
    let zoom_title = format!("the same, first {zoom:.0} s");
    let connections = |b: &BurstResult| -> Vec<(f64, f64)> {
        b.samples
            .iter()
            .map(|s| (s.t, s.connections as f64))
            .collect()
    };
    let panels = [
        Panel {
            title: "PostgreSQL client connections (pg_stat_activity)",
            series: pair
                .iter()
                .map(|b| {
                    b.samples
                        .iter()
                        .map(|s| (s.t, s.connections as f64))
                        .collect()
                })
                .collect(),
            limit: Some(f64::from(BURST_MAX_CONNECTIONS)),
            zoom: None,
        },
        Panel {
            title: &zoom_title,
            series: pair
                .iter()
                .map(|b| {
                    connections(b)
                        .into_iter()
                        .filter(|(t, _)| *t <= zoom)
                        .collect()
                })
                .collect(),
            limit: Some(f64::from(BURST_MAX_CONNECTIONS)),
            zoom: Some(zoom),
        },
        Panel {
            title: "SQS queue depth, messages (visible + in flight)",
            series: pair
                .iter()
                .map(|b| b.queue.iter().map(|(t, d)| (*t, *d as f64)).collect())
                .collect(),
            limit: None,
            zoom: None,
        },
        Panel {
            title: "rows in PostgreSQL, % of events sent",
            series: pair
                .iter()
                .map(|b| {
                    b.samples
                        .iter()
                        .map(|s| (s.t, 100.0 * s.rows as f64 / b.events_sent.max(1) as f64))
                        .collect()
                })
                .collect(),
            limit: Some(100.0),
            zoom: None,
        },
    ];
    let t_max = panels
        .iter()
        .flat_map(|p| p.series.iter().flatten().map(|(t, _)| *t))
        .fold(1.0f64, f64::max);
    let h = top + panels.len() as f64 * (ph + 55.0) + 40.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="20" font-size="15">Burst: {} clients at once, {} request(s) of {} events each; seconds since the start (cargo xtask bench)</text>"#,
        pair.first().map(|b| b.clients).unwrap_or(0),
        pair.first()
            .map(|b| b.requests / b.clients.max(1))
            .unwrap_or(0),
        BURST_EVENTS_PER_REQUEST
    );
    for (i, panel) in panels.iter().enumerate() {
        let y0 = top + i as f64 * (ph + 55.0) + 20.0;
        let y_max = panel
            .series
            .iter()
            .flatten()
            .map(|(_, v)| *v)
            .chain(panel.limit)
            .fold(0.0f64, f64::max);
        let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
        let span = panel.zoom.unwrap_or(t_max).max(0.1);
        let x = |t: f64| left + pw * t / span;
        let y = |v: f64| y0 + ph - ph * v / y_max;
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
            y0 - 6.0,
            panel.title
        );
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
            let tv = span * f64::from(k) / 4.0;
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
        for (points, color) in panel.series.iter().zip(colors) {
            if points.is_empty() {
                continue;
            }
            let pts: Vec<String> = points
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
    for (k, (b, color)) in pair.iter().zip(colors).enumerate() {
        let yy = h - 30.0 + 16.0 * k as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{left}" y="{}" width="14" height="4" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            yy - 4.0,
            left + 20.0,
            yy + 1.0,
            xml_escape(&b.name)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" fill="#555" text-anchor="end">dashed: max_connections = {BURST_MAX_CONNECTIONS}; 100% of events sent</text>"##,
        left + pw,
        h - 14.0
    );
    svg.push_str("</svg>\n");
    svg
}

pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
