//! Training curves from `metrics.jsonl`, drawn to a PNG.
//!
//! [`plot_metrics`] draws three panels side by side: the training loss against the
//! optimizer step, the accuracy against the step, and the learning rate. The first
//! two take the `Log` records as lines and the `Epoch` records as markers at the
//! step where the epoch ended; the third is the rate each `Log` record carries.
//!
//! Text is rendered by `plotters`' pure-Rust `ab_glyph` backend from a font compiled
//! into the binary, so drawing needs no system fonts and no fontconfig/freetype. The
//! font is Noto Sans Regular from the `ttf-noto-sans` crate (crate MIT/Apache-2.0;
//! the font itself is under the Apache License 2.0, whose text the crate ships):
//! it is the smallest crates.io crate found that ships a complete, open text font as
//! bytes (about 200 KB embedded, a 0.5 MB download, no dependencies), where the
//! `dejavu` crate would download 5.5 MB of font files for the one face used here.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, ensure, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use super::log::Record;

/// Size of the image, in pixels.
pub const SIZE: (u32, u32) = (1650, 500);

/// The family the embedded font is registered under; `plotters` asks for it by
/// default (`FontFamily::SansSerif`).
const FONT_FAMILY: &str = "sans-serif";

const LINE_COLOR: RGBColor = RGBColor(31, 119, 180); // blue
const TRAIN_MARK_COLOR: RGBColor = RGBColor(255, 127, 14); // orange
const TEST_MARK_COLOR: RGBColor = RGBColor(214, 39, 40); // red

/// Draws the loss and accuracy curves of `records` to the PNG file `png`, under
/// `title`.
///
/// Left panel: loss of each `Log` record against its step (a line), and each
/// epoch's mean training loss at the epoch's last step (markers). Right panel:
/// training accuracy of each `Log` record (a line), and each epoch's training and
/// test accuracy (markers), in percent. Third panel: the learning rate of each
/// `Log` record (a line; empty for files from before it was recorded). Values
/// that are NaN or infinite are left
/// out. A file that holds several runs one after another (the step goes back) is
/// drawn as separate line pieces rather than one line that jumps back.
///
/// Errors when there are no records, when `png` does not end in `.png`, or when
/// the file cannot be written.
pub fn plot_metrics(records: &[Record], png: &Path, title: &str) -> Result<()> {
    ensure!(
        !records.is_empty(),
        "no metrics records to plot (is the metrics file empty?)"
    );
    let is_png = png
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    ensure!(
        is_png,
        "{}: the plot is written as PNG, so its name must end in .png",
        png.display()
    );
    register_embedded_font()?;

    let curves = Curves::from_records(records);
    let write_err = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", png.display());

    let mut pixels = blank(SIZE);
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| write_err(&e))?;
        let root = root
            .titled(title, (FONT_FAMILY, 26))
            .map_err(|e| write_err(&e))?;
        let (left, rest) = root.split_horizontally(SIZE.0 / 3);
        let (middle, right) = rest.split_horizontally(SIZE.0 / 3);

        let steps = step_range(&curves);
        draw_panel(
            &left,
            "Training loss",
            "loss",
            steps.clone(),
            value_range(curves.loss_values(), false),
            SeriesLabelPosition::UpperRight,
            &[
                Series::Line("train loss (running mean)", &curves.log_loss),
                Series::Dots(
                    "train loss (epoch mean)",
                    &curves.epoch_loss,
                    TRAIN_MARK_COLOR,
                ),
            ],
        )
        .map_err(|e| write_err(&e))?;
        draw_panel(
            &middle,
            "Accuracy",
            "accuracy (%)",
            steps,
            value_range(curves.accuracy_values(), true),
            SeriesLabelPosition::LowerRight,
            &[
                Series::Line("train accuracy (running mean)", &curves.log_accuracy),
                Series::Dots(
                    "train accuracy (epoch)",
                    &curves.epoch_train_accuracy,
                    TRAIN_MARK_COLOR,
                ),
                Series::Triangles("test accuracy (epoch)", &curves.epoch_test_accuracy),
            ],
        )
        .map_err(|e| write_err(&e))?;
        let lr_values = curves.lr.iter().flatten().map(|&(_, y)| y);
        draw_panel(
            &right,
            "Learning rate",
            "learning rate",
            step_range(&curves),
            value_range(lr_values, false),
            SeriesLabelPosition::UpperRight,
            &[Series::Line("learning rate", &curves.lr)],
        )
        .map_err(|e| write_err(&e))?;

        root.present()
            .with_context(|| format!("cannot draw {}", png.display()))?;
    }
    write_png(png, SIZE, pixels)
}

/// The RGB buffer of a `size` picture, for plotters to draw into (it fills it first).
fn blank(size: (u32, u32)) -> Vec<u8> {
    vec![0; size.0 as usize * size.1 as usize * 3]
}

/// Writes the RGB `pixels` of a `size` picture to `png`, encoded by the image crate
/// (which decodes the data sets' images too: plotters' own PNG writer would build a
/// second, older image crate).
fn write_png(png: &Path, size: (u32, u32), pixels: Vec<u8>) -> Result<()> {
    let picture =
        image::RgbImage::from_raw(size.0, size.1, pixels).context("a picture of the wrong size")?;
    picture
        .save_with_format(png, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", png.display()))
}

/// Registers the embedded font with `plotters` once per process.
fn register_embedded_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(FONT_FAMILY, FontStyle::Normal, ttf_noto_sans::REGULAR).is_ok()
    });
    if !ok {
        bail!("the embedded Noto Sans font did not parse");
    }
    Ok(())
}

/// A line drawn as several pieces: a new piece starts where the step goes back.
type Pieces = Vec<Vec<(u64, f64)>>;

/// The finite points of each curve.
#[derive(Default)]
struct Curves {
    log_loss: Pieces,
    log_accuracy: Pieces,
    lr: Pieces,
    epoch_loss: Vec<(u64, f64)>,
    epoch_train_accuracy: Vec<(u64, f64)>,
    epoch_test_accuracy: Vec<(u64, f64)>,
}

impl Curves {
    fn from_records(records: &[Record]) -> Curves {
        let mut curves = Curves::default();
        let mut last_log_step = None;
        for record in records {
            match *record {
                Record::Log {
                    step,
                    loss,
                    accuracy,
                    lr,
                    ..
                } => {
                    let restart = last_log_step.is_none_or(|last| step < last);
                    last_log_step = Some(step);
                    if restart {
                        curves.log_loss.push(Vec::new());
                        curves.log_accuracy.push(Vec::new());
                        curves.lr.push(Vec::new());
                    }
                    if let Some(lr) = lr {
                        push_finite(curves.lr.last_mut().unwrap(), step, lr);
                    }
                    push_finite(curves.log_loss.last_mut().unwrap(), step, loss);
                    let accuracy = 100.0 * accuracy;
                    push_finite(curves.log_accuracy.last_mut().unwrap(), step, accuracy);
                }
                Record::Epoch {
                    step,
                    train_loss,
                    train_accuracy,
                    test_accuracy,
                    ..
                } => {
                    push_finite(&mut curves.epoch_loss, step, train_loss);
                    push_finite(
                        &mut curves.epoch_train_accuracy,
                        step,
                        100.0 * train_accuracy,
                    );
                    push_finite(&mut curves.epoch_test_accuracy, step, 100.0 * test_accuracy);
                }
            }
        }
        curves
    }

    fn loss_values(&self) -> impl Iterator<Item = f64> + '_ {
        self.log_loss
            .iter()
            .flatten()
            .chain(&self.epoch_loss)
            .map(|&(_, y)| y)
    }

    fn accuracy_values(&self) -> impl Iterator<Item = f64> + '_ {
        self.log_accuracy
            .iter()
            .flatten()
            .chain(&self.epoch_train_accuracy)
            .chain(&self.epoch_test_accuracy)
            .map(|&(_, y)| y)
    }

    fn steps(&self) -> impl Iterator<Item = u64> + '_ {
        self.log_loss
            .iter()
            .chain(&self.log_accuracy)
            .flatten()
            .chain(&self.epoch_loss)
            .chain(&self.epoch_train_accuracy)
            .chain(&self.epoch_test_accuracy)
            .map(|&(x, _)| x)
    }
}

fn push_finite(points: &mut Vec<(u64, f64)>, x: u64, y: f64) {
    if y.is_finite() {
        points.push((x, y));
    }
}

/// From step 0 to a little past the last step plotted, so that markers there are
/// not cut in half by the edge.
fn step_range(curves: &Curves) -> Range<u64> {
    let last = curves.steps().max().unwrap_or(0);
    0..(last + (last / 50).max(1)).max(5)
}

/// The range of `values` with a margin; a fixed range when there are none, and a
/// padded one when they are all equal. Ranges of non-negative values do not go
/// below 0, and percentages do not go above 100.
fn value_range(values: impl Iterator<Item = f64>, percent: bool) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return if percent { 0.0..100.0 } else { 0.0..1.0 };
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        0.05 * span
    } else {
        // All equal: give the axis some height around the value.
        (0.1 * lo.abs()).max(if percent { 1.0 } else { 0.1 })
    };
    let mut range = (lo - pad)..(hi + pad);
    if lo >= 0.0 {
        range.start = range.start.max(0.0);
    }
    if percent && hi <= 100.0 {
        range.end = range.end.min(100.0);
    }
    range
}

/// One thing to draw in a panel, with its legend label.
enum Series<'a> {
    /// A line in the line colour (with a dot at a lone point, which a line cannot show).
    Line(&'a str, &'a Pieces),
    /// Filled circles.
    Dots(&'a str, &'a [(u64, f64)], RGBColor),
    /// Filled triangles in the test colour.
    Triangles(&'a str, &'a [(u64, f64)]),
}

fn draw_panel<'a>(
    area: &DrawingArea<BitMapBackend<'a>, Shift>,
    caption: &str,
    y_desc: &str,
    x_range: Range<u64>,
    y_range: Range<f64>,
    legend: SeriesLabelPosition,
    series: &[Series],
) -> Result<(), DrawingAreaErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT_FAMILY, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(x_range, y_range.clone())?;
    let decimals = tick_decimals(y_range.end - y_range.start);
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc(y_desc)
        .axis_desc_style((FONT_FAMILY, 16))
        .label_style((FONT_FAMILY, 14))
        .y_label_formatter(&|y| format!("{y:.decimals$}"))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;

    let mut labelled_series = 0;
    for item in series {
        match *item {
            Series::Line(label, pieces) => {
                let style = LINE_COLOR.stroke_width(2);
                let mut labelled = false;
                for piece in pieces.iter().filter(|p| !p.is_empty()) {
                    let drawn = chart.draw_series(LineSeries::new(piece.iter().copied(), style))?;
                    if !labelled {
                        labelled_series += 1;
                        drawn.label(label).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], style)
                        });
                        labelled = true;
                    }
                    if piece.len() == 1 {
                        chart.draw_series(
                            piece
                                .iter()
                                .map(|&p| Circle::new(p, 3, LINE_COLOR.filled())),
                        )?;
                    }
                }
            }
            Series::Dots(label, points, color) => {
                if points.is_empty() {
                    continue;
                }
                labelled_series += 1;
                chart
                    .draw_series(PointSeries::of_element(
                        points.iter().copied(),
                        5,
                        color.filled(),
                        &|p, size, style| {
                            EmptyElement::at(p)
                                + Circle::new((0, 0), size, style)
                                + Circle::new((0, 0), size, BLACK.stroke_width(1))
                        },
                    ))?
                    .label(label)
                    .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
            }
            Series::Triangles(label, points) => {
                if points.is_empty() {
                    continue;
                }
                labelled_series += 1;
                let style = TEST_MARK_COLOR.filled();
                chart
                    .draw_series(points.iter().map(|&p| TriangleMarker::new(p, 7, style)))?
                    .label(label)
                    .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 7, style));
            }
        }
    }

    if labelled_series == 0 {
        // Every value was NaN or infinite (or there was none of this kind).
        let area = chart.plotting_area().strip_coord_spec();
        let (w, h) = area.dim_in_pixel();
        let grey = BLACK.mix(0.6);
        let style = TextStyle::from((FONT_FAMILY, 18))
            .color(&grey)
            .pos(Pos::new(HPos::Center, VPos::Center));
        return area.draw(&Text::new(
            "no finite values to plot",
            (w as i32 / 2, h as i32 / 2),
            style,
        ));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((FONT_FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
}

/// Decimals for tick labels on an axis spanning `span`: enough to tell ticks
/// apart (about ten of them), no more.
fn tick_decimals(span: f64) -> usize {
    if !(span.is_finite() && span > 0.0) {
        return 1;
    }
    (1.0 - span.log10()).ceil().clamp(0.0, 6.0) as usize
}

/// Size of the confusion-matrix image, in pixels.
pub const CONFUSION_SIZE: (u32, u32) = (850, 800);

/// Draws `confusion[true][predicted]` to the PNG file `png`: one cell per pair,
/// shaded by the share of its true class (row) that it holds, with the count
/// written in it (where a cell has room for it); rows and columns named by `classes`.
pub fn plot_confusion(
    confusion: &[impl AsRef<[u64]>],
    classes: &[impl AsRef<str>],
    png: &Path,
    title: &str,
) -> Result<()> {
    let n = classes.len();
    ensure!(
        n > 0 && confusion.len() == n && confusion.iter().all(|row| row.as_ref().len() == n),
        "a confusion matrix of {} rows, expected {n} rows of {n}",
        confusion.len()
    );
    let is_png = png
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    ensure!(
        is_png,
        "{}: the confusion matrix is written as PNG, so its name must end in .png",
        png.display()
    );
    register_embedded_font()?;
    let err = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", png.display());

    let mut pixels = blank(CONFUSION_SIZE);
    {
        let root = BitMapBackend::with_buffer(&mut pixels, CONFUSION_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let root = root.titled(title, (FONT_FAMILY, 24)).map_err(|e| err(&e))?;
        // Room for the row names on the left and the column names below: the classes
        // share 640 pixels (ten get cells of 64), a cell is at most 128.
        let (left, top) = (170i32, 20i32);
        let cell = (640 / n).min(128) as i32;
        let font = |size: i32| (size * cell / 64).clamp(7, size) as u32;
        let text = |size: u32, pos: Pos| TextStyle::from((FONT_FAMILY, size)).pos(pos);
        let centre = Pos::new(HPos::Center, VPos::Center);
        for (i, row) in confusion.iter().enumerate() {
            let row = row.as_ref();
            let total = row.iter().sum::<u64>().max(1) as f64;
            let y = top + i as i32 * cell;
            root.draw(&Text::new(
                classes[i].as_ref().to_string(),
                (left - 10, y + cell / 2),
                text(font(15), Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(|e| err(&e))?;
            for (j, &count) in row.iter().enumerate() {
                let share = count as f64 / total;
                let x = left + j as i32 * cell;
                // White to the line colour as the share grows.
                let mix = |c: u8| (255.0 - (255.0 - c as f64) * share).round() as u8;
                let fill = RGBColor(mix(LINE_COLOR.0), mix(LINE_COLOR.1), mix(LINE_COLOR.2));
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    fill.filled(),
                ))
                .map_err(|e| err(&e))?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    BLACK.mix(0.2),
                ))
                .map_err(|e| err(&e))?;
                if cell >= 24 {
                    let ink = if share > 0.5 { WHITE } else { BLACK };
                    root.draw(&Text::new(
                        count.to_string(),
                        (x + cell / 2, y + cell / 2),
                        text(font(15), centre).color(&ink),
                    ))
                    .map_err(|e| err(&e))?;
                }
            }
        }
        let bottom = top + n as i32 * cell;
        for (j, name) in classes.iter().enumerate() {
            let x = left + j as i32 * cell + cell / 2;
            // Long names alternate between two lines so they do not overlap.
            let y = bottom + 14 + (j as i32 % 2) * 18;
            root.draw(&Text::new(
                name.as_ref().to_string(),
                (x, y),
                text(font(14), centre),
            ))
            .map_err(|e| err(&e))?;
        }
        let middle = left + n as i32 * cell / 2;
        let labels = [
            ("predicted class", (middle, bottom + 62)),
            (
                "rows: true class; shade: share of the row",
                (middle, bottom + 86),
            ),
        ];
        for (words, at) in labels {
            root.draw(&Text::new(words, at, text(16, centre)))
                .map_err(|e| err(&e))?;
        }
        root.present()
            .with_context(|| format!("cannot draw {}", png.display()))?;
    }
    write_png(png, CONFUSION_SIZE, pixels)
}
