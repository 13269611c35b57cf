//! `report.md`: the comparison as GitHub-flavoured Markdown — the transfer table, the per-image
//! scores, the four pictures, the robustness probes (mean fraction kept), the ensembles (members, weights, held-out scores), the photo starts
//! (ε, L∞, L2, start and final scores), each run's settings, the scoring models and every warning.

use super::{
    budget_in_steps, ensemble_weights, in_steps, relative, Comparison, Scored, ScoringModel,
};
use std::fmt::Write;

/// Escapes what would break a table cell or start markup.
fn cell(text: &str) -> String {
    let mut out = String::new();
    for c in clip_core::clip::excerpt::visible(text, true).chars() {
        match c {
            '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A link target: spaces and parentheses percent-encoded so the link survives Markdown.
fn link(path: &str) -> String {
    path.replace('%', "%25").replace(' ', "%20").replace('(', "%28").replace(')', "%29")
}

/// Characters of a prompt shown in a table; the CSV has every prompt whole.
const PROMPT_CHARS: usize = 200;

/// A prompt as a table shows it: cut after [`PROMPT_CHARS`] characters, saying how long it was.
fn prompt(text: &str) -> String {
    match text.char_indices().nth(PROMPT_CHARS) {
        None => cell(text),
        Some((cut, _)) => {
            format!("{}… ({} characters)", cell(&text[..cut]), text.chars().count())
        }
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("–".to_string(), |v| v.to_string())
}

fn fmt4(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.4}"))
}

/// A score in a table: bold when the image was optimised against the model (an ensemble's
/// members also marked `*`, as the text above the table says).
fn score(v: f64, own: bool, member: bool) -> String {
    match (own, member) {
        (_, true) => format!("**{v:.4}**\\*"),
        (true, false) => format!("**{v:.4}**"),
        (false, false) => format!("{v:.4}"),
    }
}

/// The image's file name, for a table.
fn image_name(s: &Scored) -> String {
    s.image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A path's file name (the whole path when it has none).
fn file_part(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |f| f.to_string_lossy().into_owned())
}

pub fn markdown(c: &Comparison) -> String {
    let mut md = String::new();
    let scoring: Vec<&ScoringModel> = c.scoring_models().collect();
    intro(&mut md, c, &scoring);
    transfer(&mut md, c);
    images(&mut md, c, &scoring);
    robustness(&mut md, c, &scoring);
    zero_shot(&mut md, c, &scoring);
    ensembles(&mut md, c, &scoring);
    photo_starts(&mut md, c, &scoring);
    negatives(&mut md, c);
    histories(&mut md, c);
    runs(&mut md, c);
    scoring_models(&mut md, c);
    md
}

/// The title, what was scored, the findings and the warnings.
fn intro(md: &mut String, c: &Comparison, scoring: &[&ScoringModel]) {
    let n_real = c.images.iter().filter(|s| s.origin.is_real()).count();
    let _ = writeln!(md, "# CLIP transfer report\n");
    let _ = writeln!(
        md,
        "{} result image(s) and {n_real} real photo(s), each scored against its prompt by {} model(s): \
         {}. The score is the seed's: the PNG through CLIP's preprocessing, normalised image and text \
         embeddings, cosine similarity. Made by `clip compare`.\n",
        c.images.len() - n_real,
        scoring.len(),
        scoring.iter().map(|m| format!("`{}`", m.name)).collect::<Vec<_>>().join(", ")
    );
    let findings = super::findings::findings(c);
    if !findings.is_empty() {
        let _ = writeln!(md, "## Findings\n");
        let _ = writeln!(
            md,
            "Computed from the tables below (means over the images that have the score; n as \
             said).\n"
        );
        for f in &findings {
            let _ = writeln!(md, "- {}", cell(f));
        }
        md.push('\n');
    }
    if !c.warnings.is_empty() {
        let _ = writeln!(md, "## Warnings\n");
        for w in &c.warnings {
            let _ = writeln!(md, "- {}", cell(w));
        }
        md.push('\n');
    }
}

/// `## Transfer: mean similarity`: rows = generating model × mode, columns = scoring model.
fn transfer(md: &mut String, c: &Comparison) {
    let _ = writeln!(md, "## Transfer: mean similarity\n");
    let _ = writeln!(
        md,
        "Rows: the model that generated the images and the mode; columns: the model that scores \
         them. The diagonal (a model scoring its own images, in bold) is what each run optimised.\n"
    );
    let groups = c.groups();
    if groups.iter().any(|g| c.is_ensemble(g)) {
        let _ = writeln!(
            md,
            "An ensemble's row (its members' names joined by `+`) was optimised against the mean \
             of its members' similarities: the columns of its members are in bold and marked \\*; \
             the others are held out, and say whether the images transfer to a model the run \
             never saw.\n"
        );
    }
    let mut header = String::from("| generated by · mode |");
    let mut rule = String::from("|---|");
    for m in &c.models {
        let status = if m.unavailable.is_some() { " (not available)" } else { "" };
        let _ = write!(header, " {}{status} |", cell(&m.name));
        rule.push_str("---:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for g in groups {
        let _ = write!(md, "| {} |", cell(&g.to_string()));
        let ensemble = c.is_ensemble(&g);
        for m in &c.models {
            match c.mean(&g, &m.name) {
                Some((v, _)) => {
                    let member = ensemble && c.optimised_against(&g, &m.name);
                    let _ = write!(md, " {} |", score(v, m.name == g.model(), member));
                }
                None => md.push_str(" n/a |"),
            }
        }
        md.push('\n');
    }
    let _ = writeln!(md, "\n![Transfer heat-map](transfer.png)\n");
}

/// `## Images`: each image's scores under every scoring model.
fn images(md: &mut String, c: &Comparison, scoring: &[&ScoringModel]) {
    let _ = writeln!(md, "## Images\n");
    let _ = writeln!(
        md,
        "Each image is labelled with the score under the model that made it (\"own\"; from the run's \
         record when that model did not score here), then the other models' scores.\n"
    );
    let _ = writeln!(md, "![Contact sheet](contact_sheet.png)\n");
    let mut header = String::from("| image | prompt | generated by | mode |");
    let mut rule = String::from("|---|---|---|---|");
    for m in scoring {
        let _ = write!(header, " {} |", cell(&m.name));
        rule.push_str("---:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for s in &c.images {
        let path = relative(&c.results_dir, &s.image);
        let name =
            s.image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = write!(
            md,
            "| [{}]({}) | {} | {} | {} |",
            cell(&name),
            link(&path),
            prompt(&s.prompt),
            cell(s.generated_by()),
            cell(s.mode())
        );
        for m in scoring {
            match s.scores.get(&m.name) {
                Some(v) => {
                    let member = s.members().is_some() && s.optimised_against(&m.name);
                    let _ = write!(md, " {} |", score(*v, m.name == s.generated_by(), member));
                }
                None => md.push_str(" n/a |"),
            }
        }
        md.push('\n');
    }
}

/// `## Similarity over the steps`: the curves and what is said about the histories.
fn histories(md: &mut String, c: &Comparison) {
    let _ = writeln!(md, "\n## Similarity over the steps\n");
    let _ = writeln!(
        md,
        "From each run's CSV. A constrained run logs the similarity of the augmented view each step \
         saw; an unconstrained run, of the image itself.\n"
    );
    let _ = writeln!(md, "![Similarity curves](curves.png)\n");
    let mut histories = Vec::new();
    for s in c.images.iter().filter(|s| s.run.is_some()) {
        let frozen = s.run.as_ref().and_then(|r| r.frozen_at_step);
        let problem = match (&s.history, &s.curve) {
            (Some(_), Some(curve)) => curve.problem(),
            (Some(_), None) => Some("its CSV could not be read: not drawn".to_string()),
            (None, _) => None,
        };
        let said = match (frozen, problem) {
            (Some(step), Some(p)) => format!("the run froze at step {step} (its record); {p}"),
            (Some(step), None) => format!("the run froze at step {step} (its record)"),
            (None, Some(p)) => p,
            (None, None) => continue,
        };
        let name =
            s.image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        histories.push(format!("- {}: {}", cell(&name), cell(&said)));
    }
    if !histories.is_empty() {
        let _ = writeln!(md, "About the histories:\n\n{}\n", histories.join("\n"));
    }
    if c.images.iter().any(|s| s.curve.as_ref().is_some_and(|h| h.thinned())) {
        let _ = writeln!(
            md,
            "Histories of {} steps or more are drawn thinned: every k-th step (k a power of two) \
             and the last.\n",
            2 * super::history::MAX_POINTS
        );
    }
}

/// `## Runs`: each run's settings and outcome, from its record.
fn runs(md: &mut String, c: &Comparison) {
    let _ = writeln!(md, "## Runs\n");
    let _ = writeln!(
        md,
        "| image | model | mode | steps | learning rate | TV weight | seed | device | weights (SHA-256) \
         | initial | final | best step | steps/s | wall s |"
    );
    let _ = writeln!(md, "|---|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|");
    for s in &c.images {
        let Some(r) = &s.run else { continue };
        let name = image_name(s);
        let weights_cell = |weights: &Option<String>, sha: &Option<String>| {
            let file = weights.as_deref().map_or("–".to_string(), file_part);
            let sha = sha.as_deref().map(|h| h.get(..12).unwrap_or(h));
            format!("{} ({}…)", cell(&file), cell(sha.unwrap_or("–")))
        };
        // An ensemble's weights are its members'.
        let weights = match s.members() {
            Some(members) => members
                .iter()
                .map(|m| weights_cell(&m.weights, &m.weights_sha256))
                .collect::<Vec<_>>()
                .join("; "),
            None => weights_cell(&r.weights, &r.weights_sha256),
        };
        let fmt4 = |v: &Option<f64>| fmt4(*v);
        let fmt2 = |v: &Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&name),
            cell(&r.model),
            cell(&r.mode),
            opt(&r.steps),
            opt(&r.learning_rate),
            opt(&r.tv_weight),
            opt(&r.seed),
            cell(&opt(&r.device)),
            weights,
            fmt4(&r.initial_similarity),
            fmt4(&r.final_similarity),
            opt(&r.best_step),
            fmt2(&r.steps_per_second),
            fmt2(&r.wall_seconds),
        );
    }
}

/// `## Scoring models` and the ignored files.
fn scoring_models(md: &mut String, c: &Comparison) {
    let _ = writeln!(md, "\n## Scoring models\n");
    let _ = writeln!(md, "| model | weights | status |\n|---|---|---|");
    for m in &c.models {
        let weights = m.weights.as_ref().map_or("–".to_string(), |w| w.display().to_string());
        let status =
            m.unavailable.as_deref().map_or("scored".to_string(), |r| format!("left out: {r}"));
        let _ = writeln!(md, "| {} | {} | {} |", cell(&m.name), cell(&weights), cell(&status));
    }
    if !c.notes.is_empty() {
        let _ = writeln!(md, "\n## Ignored files\n");
        for n in &c.notes {
            let _ = writeln!(md, "- {}", cell(n));
        }
    }
}

/// `## Robustness`: per scoring model, the mean fraction of similarity kept per row of the
/// transfer table × probe, with how many images each averages and leaves out; and the picture.
fn robustness(md: &mut String, c: &Comparison, scoring: &[&ScoringModel]) {
    let _ = writeln!(md, "\n## Robustness\n");
    let probes = c.probe_names();
    if probes.is_empty() {
        let _ = writeln!(md, "No probes were applied (`--probes none`).");
        return;
    }
    let _ = writeln!(
        md,
        "Each image was scored again after each probe ({}), on the 8-bit image as read, then \
         CLIP's preprocessing. A cell is the mean over the row's images of the fraction of its \
         similarity the image keeps: probe similarity / plain similarity, under the panel's model \
         (1: unchanged; the similarities themselves are in `robustness.csv`). An image whose \
         plain similarity under the model is below {} is left out of the mean (a ratio to a \
         similarity near 0 or below it says nothing); the cell says how many. `rotate:DEG` is the \
         mean of +DEG and −DEG; `jpeg` uses the `image` crate's codec, not libjpeg.\n",
        probes.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "),
        super::KEPT_MIN_BASELINE
    );
    let groups = c.groups();
    for m in scoring {
        let _ = writeln!(md, "Scored by {}:\n", cell(&m.name));
        let mut header = String::from("| generated by · mode |");
        let mut rule = String::from("|---|");
        for p in &probes {
            let _ = write!(header, " {} |", cell(p));
            rule.push_str("---:|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for g in &groups {
            let _ = write!(md, "| {} |", cell(&g.to_string()));
            for p in &probes {
                let shown = match c.mean_kept(g, &m.name, p) {
                    None => "n/a".to_string(),
                    Some(k) => {
                        let mean = k.mean.map_or("–".to_string(), |v| format!("{v:.3}"));
                        match k.left_out {
                            0 => mean,
                            n => format!("{mean} ({n} of {} left out)", n + k.images),
                        }
                    }
                };
                let _ = write!(md, " {shown} |");
            }
            md.push('\n');
        }
        md.push('\n');
    }
    let _ = writeln!(md, "![Robustness](robustness.png)");
}

/// `## Ensembles`: per ensemble result, its members with their weights and recorded final
/// similarities, its own score, and the held-out models' scores.
fn ensembles(md: &mut String, c: &Comparison, scoring: &[&ScoringModel]) {
    let results: Vec<&Scored> = c.images.iter().filter(|s| s.members().is_some()).collect();
    if results.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Ensembles\n");
    let _ = writeln!(
        md,
        "An ensemble run maximises the weighted mean of its members' similarities. \"own\" is that \
         mean under the member models scored here (\"recorded\": the run's own `final_similarity`, \
         when a member did not score here); \"held out\" are the scoring models that are not \
         members, and their mean: does what fools the members fool them?\n"
    );
    let _ = writeln!(
        md,
        "| image | prompt | members: weight, final similarity (recorded → here) | own | held out | held-out mean |"
    );
    let _ = writeln!(md, "|---|---|---|---:|---|---:|");
    for s in results {
        let Some(members) = s.members() else { continue };
        let weights = ensemble_weights(members);
        let listed: Vec<String> = members
            .iter()
            .zip(&weights)
            .map(|(m, w)| {
                let here = s.scores.iter().find(|(name, _)| m.is(name)).map(|(_, v)| *v);
                format!("{} ×{w}: {} → {}", m.model, fmt4(m.final_similarity), fmt4(here))
            })
            .collect();
        let own = match s.own_score() {
            Some((v, true)) => format!("{v:.4}"),
            Some((v, false)) => format!("{v:.4} (recorded)"),
            None => "–".to_string(),
        };
        let held: Vec<(&str, f64)> = scoring
            .iter()
            .filter(|m| !s.optimised_against(&m.name))
            .filter_map(|m| Some((m.name.as_str(), *s.scores.get(&m.name)?)))
            .collect();
        let held_list = if held.is_empty() {
            "none scored here".to_string()
        } else {
            held.iter().map(|(m, v)| format!("{m} {v:.4}")).collect::<Vec<_>>().join(", ")
        };
        let held_mean = (!held.is_empty())
            .then(|| held.iter().map(|(_, v)| v).sum::<f64>() / held.len() as f64);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {own} | {} | {} |",
            cell(&image_name(s)),
            prompt(&s.prompt),
            cell(&listed.join("; ")),
            cell(&held_list),
            fmt4(held_mean)
        );
    }
}

/// `## Photo starts`: per result that began from a photo, the photo, the budget and the distances,
/// and its similarity before (the start image) and after under every scoring model.
fn photo_starts(md: &mut String, c: &Comparison, scoring: &[&ScoringModel]) {
    let results: Vec<&Scored> = c.images.iter().filter(|s| s.photo_start().is_some()).collect();
    if results.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Photo starts\n");
    let _ = writeln!(
        md,
        "Runs that began from a photo (resized and centre-cropped to the canvas: the start image, \
         `<stem>.start.png`, shown left of its edit in the contact sheet). ε is the L∞ budget, L∞ \
         and L2 the saved image's distance from its start, in 8-bit steps (x/255) and in [0, 1] \
         pixel units over all pixels and channels; \"start\" is the run's own measure of the start \
         image. Each model's column: the start image's similarity → the result's.\n"
    );
    let mut header = String::from("| image | prompt | photo | ε | L∞ | L2 | start (run) |");
    let mut rule = String::from("|---|---|---|---:|---:|---:|---:|");
    for m in scoring {
        let _ = write!(header, " {} |", cell(&m.name));
        rule.push_str("---:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for s in results {
        let Some(init) = s.photo_start() else { continue };
        let mut photo = init.photo.as_deref().map_or("–".to_string(), file_part);
        if s.start.is_none() {
            photo.push_str(" (start image missing)");
        }
        let linf = match init.linf {
            Some(v) if super::beyond_budget(init) => format!("{} (beyond ε)", in_steps(v)),
            Some(v) => in_steps(v),
            None => "–".to_string(),
        };
        let eps = init.epsilon.map_or("none".to_string(), budget_in_steps);
        let _ = write!(
            md,
            "| {} | {} | {} | {eps} | {linf} | {} | {} |",
            cell(&image_name(s)),
            prompt(&s.prompt),
            cell(&photo),
            init.l2.map_or("–".to_string(), |v| format!("{v:.2}")),
            fmt4(init.start_similarity)
        );
        for m in scoring {
            let before = s.start_scores.get(&m.name).copied();
            match (before, s.scores.get(&m.name)) {
                (None, None) => md.push_str(" n/a |"),
                (before, after) => {
                    let _ = write!(md, " {} → {} |", fmt4(before), fmt4(after.copied()));
                }
            }
        }
        md.push('\n');
    }
}

/// `## Negative prompts`: what the runs with negative prompts pushed away from, and how far.
fn negatives(md: &mut String, c: &Comparison) {
    let results: Vec<(&Scored, &super::RunInfo)> = c
        .images
        .iter()
        .filter_map(|s| Some((s, s.run.as_ref()?)))
        .filter(|(_, r)| !r.negatives.is_empty())
        .collect();
    if results.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Negative prompts\n");
    let _ = writeln!(
        md,
        "Prompts the runs pushed away from, with their similarity before and after, as the runs \
         measured it (not scored here).\n"
    );
    let _ = writeln!(md, "| image | negative weight | negative prompt | initial | final |");
    let _ = writeln!(md, "|---|---:|---|---:|---:|");
    for (s, r) in results {
        for n in &r.negatives {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                cell(&image_name(s)),
                opt(&r.negative_weight),
                prompt(&n.prompt),
                fmt4(n.initial_similarity),
                fmt4(n.final_similarity)
            );
        }
    }
}

/// `## Zero-shot`: each image's top-1 class and probability under each model that gave verdicts
/// (the top 5 are in `zeroshot.csv`), whether it is the prompt's subject, and the models left
/// without verdicts and why.
fn zero_shot(md: &mut String, c: &Comparison, scoring: &[&ScoringModel]) {
    let labels = c.zero_shot_labels.as_ref();
    if labels.is_none() && c.zero_shot_skipped.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Zero-shot\n");
    if let Some(labels) = labels {
        let _ = writeln!(
            md,
            "Each image classified among the {} classes of `{}` with OpenAI's 80 templates, as in \
             the CLIP paper (`clip classify`): the most probable class and its probability under \
             each model; the top 5 are in `zeroshot.csv`. A class in bold is the prompt's subject \
             (the longest class name found in the prompt).\n",
            labels.len(),
            cell(&labels.source)
        );
        let models: Vec<&&ScoringModel> = scoring
            .iter()
            .filter(|m| c.images.iter().any(|s| s.zeroshot.contains_key(&m.name)))
            .collect();
        let mut header = String::from("| image | prompt | generated by | mode |");
        let mut rule = String::from("|---|---|---|---|");
        for m in &models {
            let _ = write!(header, " {} |", cell(&m.name));
            rule.push_str("---|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for s in &c.images {
            let subject = super::zeroshot::subject(&s.prompt, labels);
            let _ = write!(
                md,
                "| {} | {} | {} | {} |",
                cell(&image_name(s)),
                prompt(&s.prompt),
                cell(s.generated_by()),
                cell(s.mode())
            );
            for m in &models {
                match s.zeroshot.get(&m.name).and_then(|t| t.first()) {
                    Some(p) if Some(p.index) == subject => {
                        let _ =
                            write!(md, " **{}** {:.1} % |", cell(&p.label), 100.0 * p.probability);
                    }
                    Some(p) => {
                        let _ = write!(md, " {} {:.1} % |", cell(&p.label), 100.0 * p.probability);
                    }
                    None => md.push_str(" – |"),
                }
            }
            md.push('\n');
        }
    }
    for (model, reason) in &c.zero_shot_skipped {
        let _ = writeln!(md, "\n- No verdicts from {}: {}", cell(model), cell(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_escapes_markup_and_shows_control_characters() {
        assert_eq!(cell("a | b *c*"), "a \\| b \\*c\\*");
        assert_eq!(cell("line\nbreak"), "line break");
        // A record's NUL or a terminal's ESC does not reach the Markdown.
        assert_eq!(cell("a\0b\x1b[2J"), "a\u{2400}b\u{241b}\\[2J");
    }
}
