//! The evaluation as people read it: `report.md` with a chart (`lengths.png`: reply lengths,
//! real against each variant), and the same figures in `report.json`.

use super::Evaluation;
use plotters::prelude::*;
use std::path::Path;

/// A font inside the binary, so the chart draws the same on any machine (DejaVu Sans Mono,
/// Bitstream Vera licence: `assets/fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

pub fn write_report(evaluation: &Evaluation, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    crate::files::write_atomically(&dir.join("report.json"), &serde_json::to_vec_pretty(evaluation)?)?;
    chart(evaluation, &dir.join("lengths.png"))?;
    crate::files::write_atomically(&dir.join("report.md"), markdown(evaluation).as_bytes())?;
    Ok(())
}

fn markdown(e: &Evaluation) -> String {
    let mut out = format!(
        "# How close the bot sounds to the server\n\n{} held-out replies (the newest of each channel, never trained on). \
         Real replies: {:.1} words on average, distinct-2 {:.3}.\n\n",
        e.examples, e.real_mean_length, e.real_distinct_2
    );
    out.push_str("| | ");
    out.push_str(&e.variants.iter().map(|v| v.label.as_str()).collect::<Vec<_>>().join(" | "));
    out.push_str(" |\n|---|");
    out.push_str(&"---|".repeat(e.variants.len()));
    out.push('\n');
    type Row = (&'static str, fn(&super::Figures) -> String);
    let rows: [Row; 9] = [
        ("perplexity of the real replies (lower: closer)", |f| format!("{:.2}", f.perplexity)),
        ("style similarity, mean cosine to the real reply (higher)", |f| format!("{:.3}", f.style_similarity)),
        ("mean length, words", |f| format!("{:.1}", f.mean_length)),
        ("length distance, Wasserstein (lower)", |f| format!("{:.2}", f.length_wasserstein)),
        ("length distance, Kolmogorov-Smirnov (lower)", |f| format!("{:.3}", f.length_ks)),
        ("top-500 words, Jaccard with the real (higher)", |f| format!("{:.3}", f.top500_jaccard)),
        ("distinct-2", |f| format!("{:.3}", f.distinct_2)),
        ("detectability, classifier AUC (0.5: indistinguishable)", |f| format!("{:.3}", f.detectability_auc)),
        ("held-out pairs, log-prob margin of the reacted-to reply (higher)", |f| {
            f.preference_margin.map_or_else(|| "no pairs".into(), |m| format!("{m:.3}"))
        }),
    ];
    for (name, cell) in rows {
        out.push_str(&format!("| {name} | {} |\n", e.variants.iter().map(cell).collect::<Vec<_>>().join(" | ")));
    }
    out.push_str("\n![reply lengths, real against each model](lengths.png)\n\n## Samples\n\n");
    for v in &e.variants {
        out.push_str(&format!("**{}**\n\n", v.label));
        for (real, generated) in &v.samples {
            out.push_str(&format!("- real: {}\n  - {}: {}\n", one_line(real), v.label, one_line(generated)));
        }
        out.push('\n');
    }
    out
}

fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(160).collect()
}

/// Histograms of reply length (words, in bins of 2), as lines: real, then each variant.
fn chart(e: &Evaluation, path: &Path) -> anyhow::Result<()> {
    // Registering twice is harmless; every chart uses this face.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    const BIN: f64 = 2.0;
    let max_len = e.variants.iter().flat_map(|v| v.lengths.iter()).chain(&e.real_lengths).fold(0.0f64, |m, x| m.max(*x)).min(60.0);
    let bins = (max_len / BIN).ceil() as usize + 1;
    let histogram = |lengths: &[f64]| -> Vec<(f64, f64)> {
        let mut counts = vec![0f64; bins];
        for l in lengths {
            counts[((l.min(max_len)) / BIN) as usize] += 1.0;
        }
        let n = lengths.len().max(1) as f64;
        counts.iter().enumerate().map(|(i, c)| (i as f64 * BIN, c / n)).collect()
    };
    let mut series = vec![("real".to_string(), histogram(&e.real_lengths))];
    series.extend(e.variants.iter().map(|v| (v.label.clone(), histogram(&v.lengths))));
    let top = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).fold(0.0f64, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Reply length: real vs generated", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..max_len + BIN, 0f64..top.max(0.01))?;
    chart.configure_mesh().x_desc("words per reply").y_desc("share of replies").label_style(("sans-serif", 14)).draw()?;
    let colors = [BLACK, RED, BLUE, GREEN, MAGENTA, CYAN];
    for (i, (label, points)) in series.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(if i == 0 { 3 } else { 2 })))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 14)).draw()?;
    root.present()?;
    Ok(())
}
