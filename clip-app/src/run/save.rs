//! Saving: per prompt the PNG (its settings in text chunks), the start image of a photo edit, the
//! PNG re-scored through CLIP's preprocessing (the seed's "Final Similarity"), the JSON record
//! and the CSV of the steps; the summary line.

use super::*;
use crate::interrupt;
use crate::output::{self, NegativeRecord, RunRecord};
use anyhow::Context;
use clip_core::clip::excerpt::excerpt;
use clip_core::clip::score;
use clip_core::clip::weights::download;
use clip_core::engine::optimize::{similarity, similarity_matrix, Outcome};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The weighted mean of per-member values.
pub(super) fn weighted(values: &[f64], weights: &[f64]) -> f64 {
    if values.len() == 1 {
        return values[0];
    }
    values.iter().zip(weights).map(|(v, w)| v * w).sum()
}

/// Per member: the initial and unquantised final similarity of every image with its prompt, and
/// (with negatives) of every image with every negative.
pub(super) struct Scores {
    pub(super) initial: Vec<Vec<f64>>,
    pub(super) unquantized: Vec<Vec<f64>>,
    pub(super) negatives_initial: Vec<Vec<Vec<f64>>>,
}

pub(super) fn float_scores(loaded: &Loaded, outcome: &Outcome) -> anyhow::Result<Scores> {
    let mut scores =
        Scores { initial: Vec::new(), unquantized: Vec::new(), negatives_initial: Vec::new() };
    for m in &loaded.members {
        let model = &m.model.model;
        scores.initial.push(similarity(model, &outcome.initial, &m.text)?);
        scores.unquantized.push(similarity(model, &outcome.images, &m.text)?);
        if let Some(negatives) = &m.negatives {
            scores.negatives_initial.push(similarity_matrix(model, &outcome.initial, negatives)?);
        }
    }
    Ok(scores)
}

/// Per prompt: the PNG (with its record's settings), the JSON record and the CSV of the steps.
pub(super) fn save(
    spec: &RunRequest,
    resolved: &Resolved,
    loaded: &Loaded,
    prepared: &Prepared,
    optimised: &Optimised,
    started: Instant,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<Vec<PromptResult>> {
    let Optimised { outcome, history } = optimised;
    let scores = float_scores(loaded, outcome)?;
    // Again: the directory may have gone during the run.
    output::ensure_writable_dir(&prepared.dir)?;
    let start_photo = match &spec.init {
        Some(photo) => Some((
            photo.clone(),
            download::sha256_file_with(photo, &interrupt::requested)
                .with_context(|| format!("hashing the start photo {}", photo.display()))?,
        )),
        None => None,
    };
    let saving =
        Saving { spec, resolved, loaded, prepared, outcome, history, scores, start_photo, started };
    let mut results = Vec::new();
    for i in 0..resolved.prompts.len() {
        let result = saving.prompt(i)?;
        reporter.saved(&result);
        results.push(result);
    }
    Ok(results)
}

/// What the prompts' results share while they are saved.
pub(super) struct Saving<'a> {
    pub(super) spec: &'a RunRequest,
    pub(super) resolved: &'a Resolved,
    pub(super) loaded: &'a Loaded,
    pub(super) prepared: &'a Prepared,
    pub(super) outcome: &'a Outcome,
    pub(super) history: &'a crate::progress::History,
    pub(super) scores: Scores,
    /// The start photo and its SHA-256.
    pub(super) start_photo: Option<(PathBuf, String)>,
    pub(super) started: Instant,
}

impl Saving<'_> {
    pub(super) fn ensemble(&self) -> bool {
        self.loaded.ensemble()
    }

    /// Per-member values by token, for an ensemble's record; else empty.
    pub(super) fn by_model(&self, values: &[f64]) -> std::collections::BTreeMap<String, f64> {
        if !self.ensemble() {
            return Default::default();
        }
        let tokens = self.loaded.members.iter().map(|m| m.token.clone());
        tokens.zip(values.iter().copied()).collect()
    }

    pub(super) fn weighted(&self, values: &[f64]) -> f64 {
        weighted(values, &self.resolved.weights)
    }

    /// Prompt `i`: its PNG (and start image), re-scored, its record and CSV.
    pub(super) fn prompt(&self, i: usize) -> anyhow::Result<PromptResult> {
        let stem = &self.prepared.stems[i];
        let path = |ext: &str| self.prepared.dir.join(format!("{stem}.{ext}"));
        let (png, json, csv) = (path("png"), path("json"), path("csv"));
        let image = self.outcome.images.get(i as i64);
        let (rgb, width, height) =
            output::to_rgb8(&image).context("converting the image to 8 bits")?;
        let mut record = self.record(i, stem);
        let png_bytes = output::png_bytes(&rgb, width, height, &record.png_text(), &png)?;
        record.image_sha256 = output::sha256_hex(&png_bytes);
        self.write_start_image(&mut record, &rgb)?;
        output::write_atomic(&png, &png_bytes)?;
        self.rescore(&mut record, i, &png)?;
        record.wall_seconds = self.started.elapsed().as_secs_f64();
        output::write_atomic(&json, &output::json_bytes(&record)?)?;
        let columns: Vec<String> = match self.ensemble() {
            true => self.loaded.members.iter().map(|m| m.token.clone()).collect(),
            false => Vec::new(),
        };
        output::write_atomic(&csv, &output::csv_bytes(self.history.rows(), i, &columns))?;
        Ok(PromptResult { image, png, json, csv, record })
    }

    /// A run from a photo: `<stem>.start.png` written, its hash and the result's distances from
    /// it (the 8-bit result `rgb`) in the record.
    pub(super) fn write_start_image(
        &self,
        record: &mut RunRecord,
        rgb: &[u8],
    ) -> anyhow::Result<()> {
        let (Some(start), Some(init)) = (&self.loaded.start, record.init.as_mut()) else {
            return Ok(());
        };
        let start = start.get(0);
        let (start_rgb, sw, sh) =
            output::to_rgb8(&start).context("converting the start image to 8 bits")?;
        let start_png = self.prepared.dir.join(&init.start_image);
        let bytes = output::png_bytes(&start_rgb, sw, sh, &[], &start_png)?;
        init.start_image_sha256 = output::sha256_hex(&bytes);
        output::write_atomic(&start_png, &bytes)?;
        let (linf, l2) = output::distances(rgb, &start)?;
        init.linf = linf;
        init.l2 = l2;
        Ok(())
    }

    /// The saved PNG re-read through each model's preprocessing and scored against prompt `i`
    /// and the negatives: the seed's "Final Similarity".
    pub(super) fn rescore(
        &self,
        record: &mut RunRecord,
        i: usize,
        png: &Path,
    ) -> anyhow::Result<()> {
        let device = self.resolved.device;
        let mut member_final = Vec::new();
        let mut negative_final: Vec<Vec<f64>> = Vec::new();
        for m in &self.loaded.members {
            let model = &m.model.model;
            let pixels = score::file_pixels(model, png)
                .with_context(|| format!("re-reading {}", png.display()))?;
            let features = score::image_features(model, &pixels.unsqueeze(0), device);
            member_final.push(score::matrix(&features, &m.text.narrow(0, i as i64, 1))?[0][0]);
            if let Some(negatives) = &m.negatives {
                negative_final.push(score::matrix(&features, negatives)?.remove(0));
            }
        }
        record.final_similarity = self.weighted(&member_final);
        for (member, value) in record.ensemble.iter_mut().zip(&member_final) {
            member.final_similarity = *value;
        }
        let negatives = self.spec.negatives.iter().enumerate();
        record.negatives = negatives
            .map(|(k, text)| {
                let initial: Vec<f64> =
                    self.scores.negatives_initial.iter().map(|per| per[i][k]).collect();
                let finals: Vec<f64> = negative_final.iter().map(|per| per[k]).collect();
                NegativeRecord {
                    prompt: text.clone(),
                    initial_similarity: self.weighted(&initial),
                    final_similarity: self.weighted(&finals),
                    final_similarity_by_model: self.by_model(&finals),
                }
            })
            .collect();
        Ok(())
    }
}

/// The seed's `Final Similarity: x` line, with an ensemble's members, the negatives and a photo
/// start's distances.
pub fn final_line(record: &RunRecord) -> String {
    let mut line = format!("Final Similarity: {:.4}", record.final_similarity);
    if !record.ensemble.is_empty() {
        let parts: Vec<String> = record
            .ensemble
            .iter()
            .map(|m| format!("{} {:.4}", m.model, m.final_similarity))
            .collect();
        line.push_str(&format!(" [{}]", parts.join(", ")));
    }
    for n in &record.negatives {
        line.push_str(&format!(" | not {}: {:.4}", excerpt(&n.prompt), n.final_similarity));
    }
    if let Some(init) = &record.init {
        line.push_str(&format!(
            " | from {:.4}, L∞ {:.1}/255, L2 {:.3}",
            init.start_similarity,
            init.linf * 255.0,
            init.l2
        ));
    }
    line
}
