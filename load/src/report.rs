//! The outcome of a run: a human table, one JSON line, and an optional SVG.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::metrics::{Timeline, UsageReport};

pub struct Outcome {
    pub scenario: &'static str,
    pub subscribers: usize,
    pub conversations: usize,
    pub rate: f64,
    pub messages: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Checked clients whose window did not match the store at the end (`--checked-clients`).
    pub mismatched_windows: u64,
    pub seconds: f64,
    pub latency: Histogram<u64>,
    pub usage: UsageReport,
    pub timeline: Timeline,
    /// Scenario-specific figures (connect rate, RSS per connection, ...).
    pub extra: Vec<(&'static str, Value)>,
}

impl Outcome {
    pub fn delivered_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.delivered as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn percentile_ms(&self, quantile: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn p99_ms(&self) -> f64 {
        self.percentile_ms(0.99)
    }

    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.out_of_order == 0 && self.mismatched_windows == 0
    }

    pub fn json(&self) -> Value {
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        let cpu_us =
            self.usage.server_cpu_s.filter(|_| self.delivered > 0).map(|cpu| round(cpu * 1e6 / self.delivered as f64));
        let peak = (self.timeline.peak_rss_bytes > 0).then_some(self.timeline.peak_rss_bytes);
        let mut value = json!({
            "scenario": self.scenario,
            "subscribers": self.subscribers,
            "conversations": self.conversations,
            "rate": round(self.rate),
            "messages": self.messages,
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "mismatched_windows": self.mismatched_windows,
            "delivered_per_s": round(self.delivered_per_s()),
            "p50_ms": round(self.percentile_ms(0.5)),
            "p90_ms": round(self.percentile_ms(0.9)),
            "p99_ms": round(self.percentile_ms(0.99)),
            "p999_ms": round(self.percentile_ms(0.999)),
            "max_ms": round(self.latency.max() as f64 / 1000.0),
            "server_cpu_s": self.usage.server_cpu_s.map(round),
            "cpu_us_per_delivery": cpu_us,
            "server_rss_mb": peak.or(self.usage.server_rss_after).map(|b| round(b as f64 / 1048576.0)),
            "server_rss_before_mb": self.usage.server_rss_before.map(|b| round(b as f64 / 1048576.0)),
            "server_rss_after_mb": self.usage.server_rss_after.map(|b| round(b as f64 / 1048576.0)),
            "harness_cpu_s": self.usage.harness_cpu_s.map(round),
            "seconds": round(self.seconds),
        });
        if let Some(nodes) = &self.usage.per_node_cpu_s {
            value["node_cpu_s"] = json!(nodes.iter().map(|&cpu| round(cpu)).collect::<Vec<_>>());
            if self.delivered > 0 {
                let per_delivery: Vec<f64> =
                    nodes.iter().map(|&cpu| round(cpu * 1e6 / self.delivered as f64)).collect();
                value["node_cpu_us_per_delivery"] = json!(per_delivery);
            }
        }
        for (key, extra) in &self.extra {
            value[*key] = extra.clone();
        }
        value
    }

    pub fn print(&self) {
        let json = self.json();
        println!();
        println!("  {:<24} {}", "scenario", self.scenario);
        for (key, value) in json.as_object().expect("an object") {
            if key != "scenario" && !value.is_null() {
                println!("  {key:<24} {value}");
            }
        }
        println!(
            "  {:<24} {}",
            "verdict",
            if self.is_clean() { "clean: nothing lost, duplicated or reordered" } else { "FAILED" }
        );
        println!("{json}");
    }

    /// Two charts: the latency distribution (percentile against latency) and deliveries per second over time.
    pub fn svg(&self) -> String {
        let (width, height, margin) = (640.0, 260.0, 48.0);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n",
            height * 2.0 + 20.0
        );
        let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        // Latency by percentile, on a log scale of 1/(1-q) like HdrHistogram plots.
        let quantiles: Vec<f64> = (0..=60).map(|i| 1.0 - 10f64.powf(-(i as f64) / 15.0)).filter(|q| *q < 1.0).collect();
        let points: Vec<(f64, f64)> = quantiles
            .iter()
            .map(|q| ((1.0 / (1.0 - q)).log10(), self.latency.value_at_quantile(*q) as f64 / 1000.0))
            .collect();
        chart(
            &mut svg,
            0.0,
            width,
            height,
            margin,
            &points,
            "percentile (log: 0, 90, 99, 99.9, 99.99)",
            "latency ms",
            &format!("{} latency", self.scenario),
        );
        chart(
            &mut svg,
            height + 20.0,
            width,
            height,
            margin,
            &self.timeline.throughput,
            "seconds",
            "deliveries/s",
            "throughput",
        );
        svg.push_str("</svg>\n");
        svg
    }
}

#[allow(clippy::too_many_arguments, reason = "a private drawing helper")]
fn chart(
    svg: &mut String,
    top: f64,
    width: f64,
    height: f64,
    margin: f64,
    points: &[(f64, f64)],
    x_label: &str,
    y_label: &str,
    title: &str,
) {
    let max_x = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let (plot_w, plot_h) = (width - 2.0 * margin, height - 2.0 * margin);
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", margin + x / max_x * plot_w, top + margin + plot_h - y / max_y * plot_h))
        .collect();
    let _ = writeln!(svg, "<text x=\"{margin}\" y=\"{}\" font-size=\"13\">{title}</text>", top + 20.0);
    let _ = writeln!(
        svg,
        "<rect x=\"{margin}\" y=\"{}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#999\"/>",
        top + margin
    );
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\" points=\"{}\"/>",
        path.join(" ")
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label} (max {max_x:.1})</text>",
        width / 2.0,
        top + height - 10.0
    );
    let _ = writeln!(svg, "<text x=\"4\" y=\"{}\">{y_label}</text>", top + margin - 6.0);
    let _ = writeln!(svg, "<text x=\"4\" y=\"{}\">{max_y:.1}</text>", top + margin + 10.0);
}
