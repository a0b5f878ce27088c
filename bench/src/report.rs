//! The benchmark report: reads what `bench/run.sh` measured (a `facts.txt` of `key=value`
//! lines and the load generator's JSON summaries), checks the targets as ratios of numbers
//! measured in the same run, and writes `BENCHMARKS.md` and its chart.
//!
//! Owns the targets and the presentation. Must never measure anything itself, and never
//! present a number that does not come from the run it describes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::load::Summary;

/// The deployment profiles measured, by file prefix and display name.
pub const PROFILES: [(&str, &str); 3] = [
    ("sqlite", "embedded SQLite"),
    ("postgres", "PostgreSQL"),
    ("postgres-redis", "PostgreSQL + Redis"),
];

/// The targets of issue 9, as ratios measured in one run.
pub const PG_VS_PGBENCH_MIN: f64 = 1.0;
pub const P99_AT_HALF_MAX_MS: f64 = 10.0;
pub const E2E_VS_ACCEPT_MIN: f64 = 0.8;
pub const SQLITE_VS_PG_MIN: f64 = 0.5;
pub const PEAK_RSS_MAX_MB: f64 = 100.0;

/// One profile's numbers.
#[derive(Debug, Clone)]
pub struct Profile {
    pub key: &'static str,
    pub name: &'static str,
    /// Closed loop at full concurrency: the maximum accept rate.
    pub max: Summary,
    /// Open loop at half the maximum rate: the latency figures.
    pub half: Summary,
    /// Received → completed (one `log` step) while accepting at full concurrency.
    pub e2e_rps: f64,
    /// Workers alone emptying a backlog of pending events.
    pub drain_rps: f64,
    pub rss_idle_mb: f64,
    pub rss_peak_mb: f64,
}

impl Profile {
    /// The accept rate: 2xx answers per second at full concurrency.
    pub fn accept_rps(&self) -> f64 {
        self.max.ok_rps
    }
}

/// pgbench alone at a fixed rate (the PostgreSQL profile's latency-run rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgbenchAtRate {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone)]
pub struct Results {
    pub facts: BTreeMap<String, String>,
    pub pgbench_tps: f64,
    /// The database's own latency at the rate hookd's PostgreSQL latency was measured at.
    pub pgbench_at_rate: Option<PgbenchAtRate>,
    pub profiles: Vec<Profile>,
}

/// `key=value` lines; blank lines and `#` comments are skipped.
pub fn parse_facts(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn number(facts: &BTreeMap<String, String>, key: &str) -> Result<f64, String> {
    let v = facts
        .get(key)
        .ok_or_else(|| format!("facts.txt has no {key}"))?;
    v.parse()
        .map_err(|_| format!("facts.txt: {key}={v:?} is not a number"))
}

fn summary(dir: &Path, name: &str) -> Result<Summary, String> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl Results {
    /// Read a run's output directory.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let facts_path = dir.join("facts.txt");
        let facts = parse_facts(
            &std::fs::read_to_string(&facts_path)
                .map_err(|e| format!("cannot read {}: {e}", facts_path.display()))?,
        );
        let mb = |key: String| number(&facts, &key).map(|b| b / (1024.0 * 1024.0));
        // A run may measure some profiles only (BENCH_PROFILES).
        let profiles = PROFILES
            .iter()
            .filter(|(key, _)| dir.join(format!("{key}-max.json")).exists())
            .map(|&(key, name)| {
                Ok(Profile {
                    key,
                    name,
                    max: summary(dir, &format!("{key}-max.json"))?,
                    half: summary(dir, &format!("{key}-half.json"))?,
                    e2e_rps: number(&facts, &format!("{key}.e2e_rps"))?,
                    drain_rps: number(&facts, &format!("{key}.drain_rps"))?,
                    rss_idle_mb: mb(format!("{key}.rss_idle_bytes"))?,
                    rss_peak_mb: mb(format!("{key}.rss_peak_bytes"))?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let pgbench_at_rate = match facts.get("pgbench.rate_tps") {
            None => None,
            Some(_) => Some(PgbenchAtRate {
                rate: number(&facts, "pgbench.rate_tps")?,
                p50_ms: number(&facts, "pgbench.rate_p50_ms")?,
                p99_ms: number(&facts, "pgbench.rate_p99_ms")?,
            }),
        };
        Ok(Self {
            pgbench_tps: number(&facts, "pgbench.tps")?,
            pgbench_at_rate,
            facts,
            profiles,
        })
    }

    fn profile(&self, key: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.key == key)
    }

    fn fact(&self, key: &str) -> &str {
        self.facts.get(key).map_or("?", String::as_str)
    }
}

/// One target and how the run did against it.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub pass: bool,
    /// How far off a missed target is, in percent of the target.
    pub miss_pct: Option<f64>,
}

pub fn at_least(target: String, value: f64, min: f64, shown: String) -> Check {
    let pass = value >= min;
    Check {
        target,
        measured: shown,
        pass,
        miss_pct: (!pass).then(|| (min - value) / min * 100.0),
    }
}

pub fn at_most(target: String, value: f64, max: f64, shown: String) -> Check {
    let pass = value <= max;
    Check {
        target,
        measured: shown,
        pass,
        miss_pct: (!pass).then(|| (value - max) / max * 100.0),
    }
}

/// Every target, checked.
pub fn checks(r: &Results) -> Vec<Check> {
    let mut out = Vec::new();
    for key in ["postgres", "postgres-redis"] {
        if let Some(p) = r.profile(key) {
            let ratio = p.accept_rps() / r.pgbench_tps;
            out.push(at_least(
                format!(
                    "{} accept ≥ {PG_VS_PGBENCH_MIN:.1}× pgbench ceiling",
                    p.name
                ),
                ratio,
                PG_VS_PGBENCH_MIN,
                format!("{ratio:.2}×"),
            ));
        }
    }
    for p in &r.profiles {
        let context = match (p.key, r.pgbench_at_rate) {
            ("postgres", Some(pg)) => {
                format!(" (pgbench alone at that rate: p99 {:.2} ms)", pg.p99_ms)
            }
            _ => String::new(),
        };
        out.push(at_most(
            format!(
                "{}: p99 ≤ {P99_AT_HALF_MAX_MS:.0} ms at 50% of max rate{context}",
                p.name
            ),
            p.half.latency_ms.p99,
            P99_AT_HALF_MAX_MS,
            format!("{:.2} ms", p.half.latency_ms.p99),
        ));
    }
    for p in &r.profiles {
        let ratio = p.e2e_rps / p.accept_rps();
        out.push(at_least(
            format!("{}: end-to-end ≥ {E2E_VS_ACCEPT_MIN:.1}× accept", p.name),
            ratio,
            E2E_VS_ACCEPT_MIN,
            format!("{ratio:.2}×"),
        ));
    }
    if let (Some(s), Some(pg)) = (r.profile("sqlite"), r.profile("postgres")) {
        let ratio = s.accept_rps() / pg.accept_rps();
        out.push(at_least(
            format!("embedded SQLite accept ≥ {SQLITE_VS_PG_MIN:.1}× PostgreSQL"),
            ratio,
            SQLITE_VS_PG_MIN,
            format!("{ratio:.2}×"),
        ));
    }
    for p in &r.profiles {
        out.push(at_most(
            format!("{}: peak RSS ≤ {PEAK_RSS_MAX_MB:.0} MB", p.name),
            p.rss_peak_mb,
            PEAK_RSS_MAX_MB,
            format!("{:.1} MB", p.rss_peak_mb),
        ));
    }
    out
}

/// The text of `BENCHMARKS.md`. `chart` is the chart's path relative to the file.
pub fn markdown(r: &Results, chart: &str) -> String {
    let mut md = String::new();
    let f = |k: &str| r.fact(k);
    let _ = writeln!(
        md,
        "# Benchmarks\n\n\
         <!-- Generated by bench/run.sh from one run; edit the script or bench/src/report.rs, not this file. -->\n\n\
         Every number below comes from **one run on one machine**, with the PostgreSQL ceiling\n\
         measured by `pgbench` against the same server minutes apart. Shared 2-core machines are\n\
         noisy, so the targets are **ratios** between numbers of the same run, never absolute\n\
         figures. Where the time goes, and why a target is missed: [docs/performance.md](docs/performance.md).\n\n\
         Reproduce (PostgreSQL and Redis are started if they are not running; takes a few minutes):\n\n\
         ```sh\n{}\n```\n",
        f("run.command")
    );
    let _ = writeln!(md, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in r.facts.iter().filter(|(k, _)| k.starts_with("machine.")) {
        let _ = writeln!(
            md,
            "| {} | {} |",
            &k["machine.".len()..],
            v.replace('|', "/")
        );
    }
    let _ = writeln!(md, "| run | {} (hookd {}) |\n", f("run.date"), f("run.git"));

    let _ = writeln!(
        md,
        "## Results\n\n\
         Load: {} Stripe `payment_intent.succeeded` events of about {} bytes, each signed \
         (`Stripe-Signature`, HMAC-SHA256), {:.0}% of requests redeliveries of an earlier event \
         (answered 200 `duplicate`). `pgbench`: single-row `INSERT` of the same shape \
         (unique key, {} bytes of JSON), {} clients, prepared statements.\n",
        r.profiles
            .first()
            .map_or(0, |p| p.max.unique_events + p.half.unique_events),
        r.profiles.first().map_or(0, |p| p.max.body_bytes),
        r.profiles
            .first()
            .map_or(0.0, |p| p.max.duplicate_share * 100.0),
        f("pgbench.body_bytes"),
        f("pgbench.clients"),
    );
    let _ = writeln!(
        md,
        "| | accept, req/s (2xx, closed loop) | ÷ pgbench | p50 / p99 at 50% of max, ms | end-to-end, events/s | ÷ accept | backlog drain, events/s | RSS idle / peak, MB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let pg_latency = r.pgbench_at_rate.map_or(String::new(), |p| {
        format!(
            "{:.2} / {:.2} (at {:.0} tps, PostgreSQL's 50%)",
            p.p50_ms, p.p99_ms, p.rate
        )
    });
    let _ = writeln!(
        md,
        "| `pgbench` single-row insert ceiling | {:.0} | 1.00× | {pg_latency} | | | | |",
        r.pgbench_tps
    );
    for p in &r.profiles {
        let _ = writeln!(
            md,
            "| hookd, {} | {:.0} | {:.2}× | {:.2} / {:.2} | {:.0} | {:.2}× | {:.0} | {:.1} / {:.1} |",
            p.name,
            p.accept_rps(),
            p.accept_rps() / r.pgbench_tps,
            p.half.latency_ms.p50,
            p.half.latency_ms.p99,
            p.e2e_rps,
            p.e2e_rps / p.accept_rps(),
            p.drain_rps,
            p.rss_idle_mb,
            p.rss_peak_mb,
        );
    }
    let _ = writeln!(md, "\n![throughput and latency]({chart})\n");

    let _ = writeln!(md, "## Targets\n\n| target | measured | |\n|---|---:|---|");
    for c in checks(r) {
        let verdict = match c.miss_pct {
            None => "met".to_owned(),
            Some(pct) => format!("**missed by {pct:.0}%**"),
        };
        let _ = writeln!(md, "| {} | {} | {} |", c.target, c.measured, verdict);
    }

    let _ = writeln!(
        md,
        "\n## Details\n\n\
         Latency and throughput of every load-generator run (closed loop: {} connections; open \
         loop: latency from the time each request was *due*, so queueing inside hookd is counted).\n\n\
         | profile | run | req/s | p50 | p90 | p99 | p99.9 | max | statuses | errors |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|---|",
        r.profiles.first().map_or(0, |p| p.max.connections)
    );
    for p in &r.profiles {
        for (label, s) in [("max (closed)", &p.max), ("50% (open)", &p.half)] {
            let l = &s.latency_ms;
            let join = |m: &BTreeMap<String, u64>| {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                md,
                "| {} | {label} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
                p.name,
                s.throughput_rps,
                l.p50,
                l.p90,
                l.p99,
                l.p99_9,
                l.max,
                join(&s.status),
                if s.errors.is_empty() {
                    "none".into()
                } else {
                    join(&s.errors)
                },
            );
        }
    }
    let _ = writeln!(md, "\nSettings of this run: {}.", f("run.settings"));
    let runs = crate::processing::runs(&r.facts).unwrap_or_default();
    if !runs.is_empty() {
        md.push('\n');
        md.push_str(&crate::processing::markdown(&runs, f("run.processing")));
    }
    md
}

/// Find a TrueType font: the one asked for, else DejaVu Sans (Debian's `fonts-dejavu-core`),
/// else any `.ttf` under `/usr/share/fonts`.
pub fn find_font(asked: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = asked {
        return Ok(p.to_owned());
    }
    for p in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ] {
        if Path::new(p).exists() {
            return Ok(p.into());
        }
    }
    fn walk(dir: &Path) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let p = entry.path();
            if p.is_dir() {
                if let Some(f) = walk(&p) {
                    return Some(f);
                }
            } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")) {
                return Some(p);
            }
        }
        None
    }
    walk(Path::new("/usr/share/fonts")).ok_or_else(|| {
        "no TrueType font found for the chart: install fonts-dejavu-core or pass --font".into()
    })
}

const ACCEPT: RGBColor = RGBColor(31, 119, 180);
const E2E: RGBColor = RGBColor(255, 127, 14);
const DRAIN: RGBColor = RGBColor(44, 160, 44);
const CEILING: RGBColor = RGBColor(127, 127, 127);
const TARGET: RGBColor = RGBColor(214, 39, 40);

/// Draw the chart: throughput per profile beside the pgbench ceiling, and latency at 50% of
/// the maximum rate against the 10 ms target.
pub fn chart(r: &Results, path: &Path, font: &Path) -> Result<(), String> {
    let bytes = std::fs::read(font).map_err(|e| format!("cannot read {}: {e}", font.display()))?;
    // plotters keeps registered fonts for the life of the process.
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
        .map_err(|_| format!("{} is not a usable TrueType font", font.display()))?;
    draw(r, path).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(r: &Results, path: &Path) -> DrawResult {
    let root = BitMapBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(860);
    throughput_panel(r, &left)?;
    latency_panel(r, &right)?;
    root.present()?;
    Ok(())
}

/// A bar series: legend label, colour, value of a profile, slot within its category.
type Series = (&'static str, RGBColor, fn(&Profile) -> f64, u32);

/// Slots per category on the x axis: bars, then a gap.
const SLOTS: u32 = 4;

fn label_of(names: &[String], v: &SegmentValue<u32>) -> String {
    match v {
        SegmentValue::CenterOf(s) if s % SLOTS == 1 => {
            names.get((s / SLOTS) as usize).cloned().unwrap_or_default()
        }
        _ => String::new(),
    }
}

fn throughput_panel(
    r: &Results,
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
) -> DrawResult {
    let mut names = vec!["pgbench ceiling".to_owned()];
    names.extend(
        r.profiles
            .iter()
            .map(|p| p.name.replace("PostgreSQL", "PG")),
    );
    let ymax = r
        .profiles
        .iter()
        .flat_map(|p| [p.accept_rps(), p.e2e_rps, p.drain_rps])
        .fold(r.pgbench_tps, f64::max)
        * 1.18;
    let slots = names.len() as u32 * SLOTS;
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput (events/s)", ("sans-serif", 26))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0u32..slots).into_segmented(), 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(slots as usize)
        .x_label_formatter(&|v| label_of(&names, v))
        .x_label_style(("sans-serif", 16))
        .y_label_style(("sans-serif", 14))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    let bar = |slot: u32, value: f64, color: RGBColor| {
        let mut rect = Rectangle::new(
            [
                (SegmentValue::Exact(slot), 0.0),
                (SegmentValue::Exact(slot + 1), value),
            ],
            color.filled(),
        );
        rect.set_margin(0, 0, 3, 3);
        rect
    };
    let value_label = |slot: u32, value: f64| {
        Text::new(
            format!("{value:.0}"),
            (SegmentValue::CenterOf(slot), value + ymax * 0.01),
            TextStyle::from(("sans-serif", 13)).pos(Pos::new(HPos::Center, VPos::Bottom)),
        )
    };
    chart
        .draw_series([bar(1, r.pgbench_tps, CEILING)])?
        .label("pgbench single-row inserts")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], CEILING.filled()));
    chart.draw_series([value_label(1, r.pgbench_tps)])?;
    let series: [Series; 3] = [
        ("accept (max, closed loop)", ACCEPT, Profile::accept_rps, 0),
        ("end-to-end (log step)", E2E, |p| p.e2e_rps, 1),
        ("backlog drain", DRAIN, |p| p.drain_rps, 2),
    ];
    for (label, color, value, offset) in series {
        let bars: Vec<_> = r
            .profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (SLOTS * (i as u32 + 1) + offset, value(p)))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(s, v)| bar(s, v, color)))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
        chart.draw_series(bars.iter().map(|&(s, v)| value_label(s, v)))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

fn latency_panel(
    r: &Results,
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
) -> DrawResult {
    let mut names: Vec<String> = r
        .profiles
        .iter()
        .map(|p| p.name.replace("PostgreSQL", "PG").replace("embedded ", ""))
        .collect();
    // (p50, p99) per category: the profiles, then pgbench alone at PostgreSQL's rate.
    let mut values: Vec<(f64, f64)> = r
        .profiles
        .iter()
        .map(|p| (p.half.latency_ms.p50, p.half.latency_ms.p99))
        .collect();
    if let Some(pg) = r.pgbench_at_rate {
        names.push("pgbench".into());
        values.push((pg.p50_ms, pg.p99_ms));
    }
    let ymax = values
        .iter()
        .map(|v| v.1)
        .fold(P99_AT_HALF_MAX_MS, f64::max)
        * 1.25;
    let slots = names.len() as u32 * SLOTS;
    let mut chart = ChartBuilder::on(area)
        .caption("Latency at 50% of max rate (ms)", ("sans-serif", 26))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0u32..slots).into_segmented(), 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(slots as usize)
        .x_label_formatter(&|v| label_of(&names, v))
        .x_label_style(("sans-serif", 16))
        .y_label_style(("sans-serif", 14))
        .draw()?;
    let series: [(&str, RGBColor, bool, u32); 2] =
        [("p50", ACCEPT, false, 0), ("p99", E2E, true, 1)];
    for (label, color, p99, offset) in series {
        let bars: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (SLOTS * i as u32 + offset + 1, if p99 { v.1 } else { v.0 }))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(s, v)| {
                let mut rect = Rectangle::new(
                    [
                        (SegmentValue::Exact(s), 0.0),
                        (SegmentValue::Exact(s + 1), v),
                    ],
                    color.filled(),
                );
                rect.set_margin(0, 0, 3, 3);
                rect
            }))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
        chart.draw_series(bars.iter().map(|&(s, v)| {
            Text::new(
                format!("{v:.1}"),
                (SegmentValue::CenterOf(s), v + ymax * 0.01),
                TextStyle::from(("sans-serif", 13)).pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))?;
    }
    chart
        .draw_series(LineSeries::new(
            [
                (SegmentValue::Exact(0), P99_AT_HALF_MAX_MS),
                (SegmentValue::Exact(slots), P99_AT_HALF_MAX_MS),
            ],
            TARGET.stroke_width(2),
        ))?
        .label("p99 target")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], TARGET.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Percentiles;

    fn summary(ok_rps: f64, p99: f64) -> Summary {
        Summary {
            mode: "closed".into(),
            connections: 64,
            rate: None,
            sent: 100,
            responses: 100,
            elapsed_s: 1.0,
            throughput_rps: ok_rps,
            ok_rps,
            latency_ms: Percentiles {
                p50: p99 / 3.0,
                p90: p99 / 2.0,
                p99,
                p99_9: p99 * 2.0,
                max: p99 * 3.0,
                mean: p99 / 3.0,
            },
            status: [("202".to_owned(), 90), ("200".to_owned(), 10)].into(),
            errors: BTreeMap::new(),
            unique_events: 90,
            duplicate_share: 0.1,
            body_bytes: 1500,
        }
    }

    fn results() -> Results {
        let profile = |key, name, accept, p99, e2e, peak| Profile {
            key,
            name,
            max: summary(accept, 20.0),
            half: summary(accept / 2.0, p99),
            e2e_rps: e2e,
            drain_rps: e2e * 1.2,
            rss_idle_mb: 10.0,
            rss_peak_mb: peak,
        };
        Results {
            pgbench_at_rate: Some(PgbenchAtRate {
                rate: 2500.0,
                p50_ms: 1.5,
                p99_ms: 30.0,
            }),
            facts: parse_facts(
                "# comment\nmachine.cpu = Xeon\nrun.command=bench/run.sh\npgbench.clients=32\n",
            ),
            pgbench_tps: 4000.0,
            profiles: vec![
                profile("sqlite", "embedded SQLite", 3000.0, 4.0, 2900.0, 30.0),
                profile("postgres", "PostgreSQL", 5000.0, 12.0, 3000.0, 40.0),
                profile(
                    "postgres-redis",
                    "PostgreSQL + Redis",
                    4800.0,
                    5.0,
                    4000.0,
                    120.0,
                ),
            ],
        }
    }

    #[test]
    fn facts_parse() {
        let f = parse_facts("a=1\n\n# x\nb = two words \nnot a fact\n");
        assert_eq!(f.len(), 2);
        assert_eq!(f["b"], "two words");
    }

    #[test]
    fn targets_are_ratios_with_the_size_of_a_miss() {
        let c = checks(&results());
        let find = |s: &str| c.iter().find(|c| c.target.contains(s)).unwrap().clone();
        let pg = find("PostgreSQL accept");
        assert!(pg.pass && pg.measured == "1.25×", "{pg:?}");
        let lat = find("PostgreSQL: p99");
        assert!(!lat.pass);
        assert!((lat.miss_pct.unwrap() - 20.0).abs() < 1e-9);
        let e2e = find("PostgreSQL: end-to-end");
        assert_eq!(e2e.measured, "0.60×");
        assert!((e2e.miss_pct.unwrap() - 25.0).abs() < 1e-9);
        assert!(find("SQLite accept").pass);
        assert!(!find("PostgreSQL + Redis: peak RSS").pass);
        assert!(find("embedded SQLite: peak RSS").pass);
    }

    #[test]
    fn markdown_has_the_table_and_the_verdicts() {
        let md = markdown(&results(), "bench/benchmarks.png");
        assert!(md.contains("| cpu | Xeon |"), "{md}");
        assert!(md.contains("| hookd, PostgreSQL | 5000 | 1.25× |"), "{md}");
        assert!(md.contains("**missed by 20%**"), "{md}");
        assert!(md.contains("1.50 / 30.00 (at 2500 tps"), "{md}");
        assert!(
            md.contains("pgbench alone at that rate: p99 30.00 ms"),
            "{md}"
        );
        assert!(md.contains("![throughput and latency](bench/benchmarks.png)"));
        assert!(md.contains("bench/run.sh"));
    }

    #[test]
    fn chart_is_a_png() {
        let font = find_font(None).expect("a TrueType font (apt-get install fonts-dejavu-core)");
        let dir = std::env::temp_dir().join(format!("hookd-bench-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.png");
        chart(&results(), &path, &font).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
