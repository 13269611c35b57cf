//! A run's step history (`<stem>.csv`, `step,similarity,tv`) as `curves.png` draws it: read
//! streaming, a line at a time, and thinned to a bounded number of points, so a CSV of millions of
//! rows costs one pass and a few kilobytes; and cut at the first value that cannot be plotted.
//!
//! The step and similarity are found by their names in the header, so that columns added later
//! (an ensemble's `similarity_<token>` per member, `negative_similarity`) are read past; without
//! a header naming them, they are the first two columns.
//!
//! A prompt whose loss became NaN (frozen, fp16 overflow) logs NaN or ±inf from that step on, and a
//! hand-made file may hold anything. Such a value must never reach an axis range — plotters' search
//! for tick marks never ends on an infinite range — so the curve stops at the last point before it
//! (the last finite point of a frozen run), and the report says where and why.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Points kept per curve: the panel is 760 pixels wide, so more would not show. A history is kept
/// at between this and twice this many points (plus its last one).
pub const MAX_POINTS: usize = 1000;

/// The largest step or similarity drawn. A similarity is a cosine, within [-1, 1]; anything far
/// beyond is not one, and a bound keeps every axis range and its tick marks finite and distinct
/// (plotters steps through ticks in f64, which must still resolve 0.001 at the bound).
pub const PLOT_LIMIT: f64 = 1e9;

/// Bytes of a line read at most; a longer line is skipped as garbage without being kept.
const MAX_LINE: u64 = 4096;

/// Where a history stops being drawable.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// Line number in the file (1 = the header).
    pub line: u64,
    /// The step and similarity as written there.
    pub step: String,
    pub similarity: String,
}

/// A history as drawn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// (step, similarity) in file order, each finite and within ±[`PLOT_LIMIT`]; thinned to every
    /// k-th row (k a power of two) plus the last row drawn.
    pub points: Vec<(f64, f64)>,
    /// Rows read that hold a step and a similarity, up to the cut.
    pub rows: u64,
    /// Rows that do not (too few fields, not numbers, too long, not UTF-8): skipped.
    pub garbage: u64,
    /// The first row that cannot be plotted; the curve ends at the row before it.
    pub cut: Option<Cut>,
    /// Rows after the cut, not drawn.
    pub after_cut: u64,
}

impl History {
    /// Whether fewer points are drawn than there were rows.
    pub fn thinned(&self) -> bool {
        (self.points.len() as u64) < self.rows
    }

    /// What the report should say about this history, if anything (`None`: drawn whole).
    pub fn problem(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(cut) = &self.cut {
            let what = if cut.similarity.is_empty() {
                format!("its step is {} at line {}", shown(&cut.step), cut.line)
            } else {
                format!(
                    "its similarity is {} at line {} (step {})",
                    shown(&cut.similarity),
                    cut.line,
                    shown(&cut.step)
                )
            };
            parts.push(match self.points.last() {
                Some((step, _)) => format!(
                    "{what}, not a finite number within ±{PLOT_LIMIT:e} (a prompt that froze logs \
                     NaN): the curve ends at step {step}, its last finite point{}",
                    later(self.after_cut)
                ),
                None => {
                    format!("{what}, before any finite point: not drawn{}", later(self.after_cut))
                }
            });
        } else if self.points.is_empty() {
            parts.push("its CSV holds no steps: not drawn".to_string());
        }
        if self.garbage > 0 {
            parts
                .push(format!("{} line(s) that are not `step,similarity,…` skipped", self.garbage));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

fn later(n: u64) -> String {
    if n > 0 {
        format!(" ({n} later row(s) not drawn)")
    } else {
        String::new()
    }
}

/// A field as written, cut to a readable length.
fn shown(text: &str) -> String {
    clip_core::clip::excerpt::excerpt_to(text.trim(), 24)
}

/// Keeps every k-th point (k doubling whenever twice [`MAX_POINTS`] are held) and the last one.
#[derive(Default)]
struct Thinner {
    points: Vec<(f64, f64)>,
    stride: u64,
    seen: u64,
    last: Option<(f64, f64)>,
}

impl Thinner {
    fn push(&mut self, point: (f64, f64)) {
        let stride = self.stride.max(1);
        if self.seen.is_multiple_of(stride) {
            self.points.push(point);
            if self.points.len() >= 2 * MAX_POINTS {
                // Points at even positions are the rows at multiples of 2k.
                let mut i = 0;
                self.points.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride = stride * 2;
            }
        }
        self.seen += 1;
        self.last = Some(point);
    }

    fn finish(mut self) -> Vec<(f64, f64)> {
        if let Some(last) = self.last {
            if self.points.last() != Some(&last) {
                self.points.push(last);
            }
        }
        self.points
    }
}

/// A number that can be drawn.
fn plottable(v: f64) -> bool {
    v.is_finite() && v.abs() <= PLOT_LIMIT
}

/// Reads a history from `path`; `None` when the file cannot be opened or read.
pub fn read(path: &Path) -> Option<History> {
    let file = clip_core::clip::files::open_regular(path).ok()?;
    read_from(BufReader::new(file)).ok()
}

/// The columns of the step and the similarity: named `step` and `similarity` in the header, else
/// the first two.
fn columns(header: &str) -> (usize, usize) {
    let names: Vec<&str> =
        header.trim_end_matches(['\n', '\r']).split(',').map(str::trim).collect();
    let find =
        |name: &str, default: usize| names.iter().position(|n| *n == name).unwrap_or(default);
    (find("step", 0), find("similarity", 1))
}

/// [`read`] on any reader.
pub fn read_from(mut reader: impl BufRead) -> std::io::Result<History> {
    let mut history = History::default();
    let mut thinner = Thinner::default();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let (mut step_col, mut sim_col) = (0usize, 1usize);
    loop {
        buf.clear();
        let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let complete = buf.last() == Some(&b'\n') || (buf.len() as u64) < MAX_LINE;
        if !complete {
            // Too long to be a row: skip the rest of it without keeping it.
            reader.skip_until(b'\n')?;
        }
        let text = complete.then(|| std::str::from_utf8(&buf).ok()).flatten();
        if line_no == 1 {
            if let Some(header) = text {
                (step_col, sim_col) = columns(header);
            }
        }
        let parsed = text.and_then(|line| {
            let line = line.trim_end_matches(['\n', '\r']);
            let step = line.split(',').nth(step_col)?.trim();
            let sim = line.split(',').nth(sim_col)?.trim();
            Some((step.to_string(), sim.to_string(), step.parse::<f64>(), sim.parse::<f64>()))
        });
        let Some((step_text, sim_text, Ok(step), Ok(sim))) = parsed else {
            // The header (a first line that is not numbers) is not garbage.
            if line_no > 1 {
                history.garbage += 1;
            }
            continue;
        };
        if history.cut.is_some() {
            history.after_cut += 1;
            continue;
        }
        if !(plottable(step) && plottable(sim)) {
            let similarity = if plottable(sim) { String::new() } else { sim_text };
            history.cut = Some(Cut { line: line_no, step: step_text, similarity });
            continue;
        }
        history.rows += 1;
        thinner.push((step, sim));
    }
    history.points = thinner.finish();
    Ok(history)
}

/// A padded, finite, non-empty axis range covering `lo..hi` (points within ±[`PLOT_LIMIT`]);
/// `min_span` keeps a flat curve off the axes.
pub fn axis_range(lo: f64, hi: f64, min_span: f64) -> (f64, f64) {
    let (lo, hi) = if plottable(lo) && plottable(hi) && lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let span = (hi - lo).max(min_span);
    (lo, lo + span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> History {
        read_from(text.as_bytes()).expect("in memory")
    }

    #[test]
    fn a_plain_history() {
        let h = parse("step,similarity,tv\n1,0.1,0\n2,0.2,0\n3,0.25,0\n");
        assert_eq!(h.points, vec![(1.0, 0.1), (2.0, 0.2), (3.0, 0.25)]);
        assert_eq!((h.rows, h.garbage, h.cut.clone()), (3, 0, None));
        assert_eq!(h.problem(), None);
    }

    #[test]
    fn columns_are_found_by_name() {
        // An ensemble's history: the weighted mean, then one column per member.
        let h = parse(
            "step,similarity,tv,similarity_RN50,similarity_ViT-B,negative_similarity\n\
             1,0.1,0,0.3,0.5,0.2\n2,0.2,0,0.4,0.6,0.1\n",
        );
        assert_eq!(h.points, vec![(1.0, 0.1), (2.0, 0.2)]);
        // Columns in another order are found by their names.
        let h = parse("tv,similarity_RN50,similarity,step\n0,0.9,0.25,7\n");
        assert_eq!((h.points.clone(), h.garbage), (vec![(7.0, 0.25)], 0));
        // No header: the first two columns.
        let h = parse("1,0.1,0\n2,0.2,0\n");
        assert_eq!(h.points, vec![(1.0, 0.1), (2.0, 0.2)]);
    }

    #[test]
    fn non_finite_values_cut_the_curve() {
        for bad in ["NaN", "nan", "inf", "-inf", "1e308", "-1e308", "1e999"] {
            let h = parse(&format!("step,similarity,tv\n1,0.1,0\n2,{bad},0\n3,0.3,0\n"));
            assert_eq!(h.points, vec![(1.0, 0.1)], "{bad}");
            assert_eq!(h.cut.as_ref().map(|c| c.line), Some(3), "{bad}");
            assert_eq!(h.after_cut, 1);
            let problem = h.problem().expect("said");
            assert!(problem.contains(bad) && problem.contains("ends at step 1"), "{problem}");
        }
        let h = parse("step,similarity,tv\n1,NaN,0\n");
        assert!(h.points.is_empty());
        assert!(h.problem().expect("said").contains("before any finite point"));
        let h = parse("step,similarity,tv\ninf,0.5,0\n");
        assert!(h.points.is_empty() && h.cut.is_some());
    }

    #[test]
    fn garbage_and_empty_files() {
        let h = parse("step,similarity,tv\nx,y\n\n1\n1,0.5,0\n");
        assert_eq!(h.points, vec![(1.0, 0.5)]);
        assert_eq!(h.garbage, 3);
        assert!(h.problem().expect("said").contains("3 line(s)"));
        for empty in ["", "step,similarity,tv\n", "step,similarity,tv"] {
            let h = parse(empty);
            assert!(h.points.is_empty());
            assert!(h.problem().expect("said").contains("no steps"), "{empty:?}");
        }
        let long = format!("step,similarity,tv\n{}\n1,0.5,0\n", "9".repeat(100_000));
        let h = parse(&long);
        assert_eq!((h.points.clone(), h.garbage), (vec![(1.0, 0.5)], 1));
        // Not UTF-8.
        let h = read_from(&b"step,similarity\n\xff\xfe,1\n2,0.5\n"[..]).expect("in memory");
        assert_eq!((h.points, h.garbage), (vec![(2.0, 0.5)], 1));
    }

    #[test]
    fn long_histories_are_thinned_and_keep_their_ends() {
        let mut text = String::from("step,similarity,tv\n");
        for i in 1..=1_000_003u64 {
            text.push_str(&format!("{i},{},0\n", i as f64 * 1e-6));
        }
        let h = parse(&text);
        assert_eq!(h.rows, 1_000_003);
        assert!((MAX_POINTS..=2 * MAX_POINTS + 1).contains(&h.points.len()), "{}", h.points.len());
        assert_eq!(h.points.first().map(|p| p.0), Some(1.0));
        assert_eq!(h.points.last().map(|p| p.0), Some(1_000_003.0));
        assert!(h.points.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(h.thinned());
    }

    #[test]
    fn axis_ranges_are_finite() {
        assert_eq!(axis_range(0.2, 0.2, 0.01), (0.2, 0.2 + 0.01));
        assert_eq!(axis_range(f64::INFINITY, 1.0, 0.01), (0.0, 1.0));
        assert_eq!(axis_range(f64::NAN, f64::NAN, 0.01), (0.0, 1.0));
        assert_eq!(axis_range(-1e9, 1e9, 0.01), (-1e9, 1e9));
    }
}
