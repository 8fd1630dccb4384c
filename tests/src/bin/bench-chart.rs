//! Draws scripts/bench's charts as SVG with plotters.
//!
//!   bench-chart INPUT.tsv OUTPUT_DIR
//!
//! INPUT has one point per line, tab-separated:
//!   chart  title  x-axis label  y-axis label  series  x  y
//! Every distinct `chart` becomes OUTPUT_DIR/<chart>.svg: one line per series, x on a
//! base-2 log axis (CPU counts), y linear from 0. Lines starting with `#` are skipped.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use plotters::prelude::*;
use std::collections::BTreeMap;
use std::process::ExitCode;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 420;
const PALETTE: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
];

#[derive(Default)]
struct Chart {
    title: String,
    x_label: String,
    y_label: String,
    /// series name -> (x, y) points, in input order of first appearance.
    series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Parses the points; an error names the line and what is wrong with it.
fn parse(text: &str) -> Result<BTreeMap<String, Chart>, String> {
    let mut charts: BTreeMap<String, Chart> = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [chart, title, x_label, y_label, series, x, y] = fields[..] else {
            return Err(format!(
                "line {}: expected 7 tab-separated fields, found {}",
                number + 1,
                fields.len()
            ));
        };
        let number_at = |what: &str, text: &str| {
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("line {}: {what} '{text}' is not a number", number + 1))
        };
        let point = (number_at("x", x)?, number_at("y", y)?);
        let entry = charts.entry(chart.to_string()).or_default();
        entry.title = title.to_string();
        entry.x_label = x_label.to_string();
        entry.y_label = y_label.to_string();
        match entry.series.iter_mut().find(|(name, _)| name == series) {
            Some((_, points)) => points.push(point),
            None => entry.series.push((series.to_string(), vec![point])),
        }
    }
    Ok(charts)
}

fn draw(chart: &Chart, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let points = chart.series.iter().flat_map(|(_, p)| p.iter());
    let (x_min, x_max, y_max) = points.fold((f64::MAX, f64::MIN, 0f64), |(a, b, c), &(x, y)| {
        (a.min(x), b.max(x), c.max(y))
    });
    let x_range = x_min.max(1.0) / 1.5..(x_max.max(1.0) * 1.5);
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut plot = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            x_range.log_scale().base(2.0),
            0f64..(y_max * 1.15).max(1e-9),
        )?;
    plot.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for (index, (name, points)) in chart.series.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let mut sorted = points.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        plot.draw_series(LineSeries::new(
            sorted.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        plot.draw_series(sorted.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    plot.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, out_dir] = &args[..] else {
        eprintln!("usage: bench-chart INPUT.tsv OUTPUT_DIR");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(input) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("bench-chart: {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let charts = match parse(&text) {
        Ok(charts) => charts,
        Err(e) => {
            eprintln!("bench-chart: {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, chart) in &charts {
        let path = std::path::Path::new(out_dir).join(format!("{name}.svg"));
        if let Err(e) = draw(chart, &path) {
            eprintln!("bench-chart: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_group_by_chart_and_series() {
        let charts = parse(
            "# comment\nwake\tT\tCPUs\tus\tmailbox\t2\t5\nwake\tT\tCPUs\tus\tmailbox\t4\t6\n\
             wake\tT\tCPUs\tus\twake-all\t4\t9\ncycle\tC\tCPUs\ts\tparked\t4\t1.5\n",
        )
        .unwrap();
        assert_eq!(charts.len(), 2);
        let wake = &charts["wake"];
        assert_eq!(wake.series.len(), 2);
        assert_eq!(wake.series[0].0, "mailbox");
        assert_eq!(wake.series[0].1, vec![(2.0, 5.0), (4.0, 6.0)]);
        assert_eq!(charts["cycle"].series[0].1, vec![(4.0, 1.5)]);
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse("a\tb\tc").err().unwrap(),
            "line 1: expected 7 tab-separated fields, found 3"
        );
        assert_eq!(
            parse("w\tT\tx\ty\ts\t4\tfast").err().unwrap(),
            "line 1: y 'fast' is not a number"
        );
    }

    #[test]
    fn draws_an_svg_with_every_series() {
        let charts =
            parse("w\tWake\tCPUs\tus\tmailbox\t2\t5\nw\tWake\tCPUs\tus\tall\t8\t7\n").unwrap();
        let dir = std::env::temp_dir().join(format!("bench-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.svg");
        draw(&charts["w"], &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(
            svg.contains("mailbox") && svg.contains("Wake"),
            "labels missing"
        );
    }
}
