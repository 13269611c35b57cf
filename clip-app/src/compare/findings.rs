//! The report's "Findings": sentences computed from the comparison's tables, each with its numbers
//! — nothing that does not depend on the data.
//!
//! What is computed, from the same scores `transfer.csv` holds (each mean is over the images that
//! have the score; n is said):
//! - per generating model and mode, the mean similarity under its own model (an ensemble's:
//!   under each member, weighted as the run weighted them);
//! - the seed's first claim, per model with both modes: unconstrained images score higher under
//!   their own model than constrained ones — said to hold or, when the numbers say otherwise, to be
//!   contradicted;
//! - the transfer gap per row: the mean under the models it was optimised against minus the mean
//!   under the held-out scoring models;
//! - the real photos' mean similarity per model, as the scale the generated images are read on;
//! - robustness: per mode, the mean fraction of similarity an image keeps under its own model
//!   after each probe (`robustness.csv`; images whose plain similarity is below the probes'
//!   baseline are left out, as in the Robustness table), the real photos' under every model, and
//!   the seed's second claim — constrained images, with more visual structure, survive the probes
//!   better than unconstrained ones — said to hold or to be contradicted, probe by probe;
//! - zero-shot (`zeroshot.csv`): per row and for the real photos, how many images whose prompt
//!   names a class are classified as that class (top-1) under their own model (real photos: under
//!   each model).
//!
//! Numbers are printed with 3 decimals (similarities) or as whole percentages; each sentence names
//! the images it averages.

use super::{Comparison, Origin, Scored};

/// A group of the transfer table: (generating model, mode).
type Group = Origin;

/// The mean of some values and how many there were.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mean {
    pub value: f64,
    pub n: usize,
}

impl Mean {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        (!values.is_empty()).then(|| Self {
            value: values.iter().sum::<f64>() / values.len() as f64,
            n: values.len(),
        })
    }
}

fn images<'a>(c: &'a Comparison, group: &'a Group) -> impl Iterator<Item = &'a Scored> {
    c.images.iter().filter(move |s| s.origin == *group)
}

/// The group's mean similarity under the models its images were optimised against (its own
/// model; an ensemble's members, each image's weighted mean), only where those scored here.
pub fn own_mean(c: &Comparison, group: &Group) -> Option<Mean> {
    Mean::of(
        images(c, group).filter_map(|s| s.own_score().filter(|(_, here)| *here).map(|(v, _)| v)),
    )
}

/// The group's mean similarity under the scoring models it was not optimised against.
pub fn held_out_mean(c: &Comparison, group: &Group) -> Option<(Mean, Vec<String>)> {
    let held_out: Vec<String> = c
        .scoring_models()
        .map(|m| m.name.clone())
        .filter(|m| !c.optimised_against(group, m))
        .collect();
    let values = images(c, group)
        .flat_map(|s| held_out.iter().filter_map(|m| s.scores.get(m).copied()))
        .collect::<Vec<_>>();
    Mean::of(values).map(|m| (m, held_out))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The sentences, in order; empty when nothing was generated or scored.
pub fn findings(c: &Comparison) -> Vec<String> {
    let mut out = Vec::new();
    let groups: Vec<Group> = c.groups().into_iter().filter(|g| !g.is_real()).collect::<Vec<_>>();
    let mut models: Vec<&str> = Vec::new();
    for g in &groups {
        if !models.contains(&g.model()) {
            models.push(g.model());
        }
    }
    own_similarity(c, &groups, &models, &mut out);
    seeds_claim(c, &models, &mut out);
    transfer_gap(c, &groups, &mut out);
    robustness(c, &mut out);
    zero_shot(c, &groups, &mut out);
    real_photos(c, &mut out);
    out
}

/// Own-model similarity, per model and mode.
fn own_similarity(c: &Comparison, groups: &[Group], models: &[&str], out: &mut Vec<String>) {
    for model in models {
        let parts: Vec<String> = groups
            .iter()
            .filter(|g| g.model() == *model)
            .filter_map(|g| {
                own_mean(c, g).map(|m| {
                    format!("{} {:.3} ({})", g.mode(), m.value, plural(m.n, "image", "images"))
                })
            })
            .collect();
        if parts.is_empty() {
            continue;
        }
        let whose = if groups.iter().any(|g| g.model() == *model && c.is_ensemble(g)) {
            format!("the ensemble {model}'s images score, under its members (weighted)")
        } else {
            format!("{model}'s images score, under {model} itself")
        };
        out.push(format!("Mean similarity to their prompts: {whose}, {}.", parts.join("; ")));
    }
}

/// The seed's claim: unconstrained above constrained under the own model.
fn seeds_claim(c: &Comparison, models: &[&str], out: &mut Vec<String>) {
    for model in models {
        let mean = |mode: &str| {
            own_mean(c, &Origin::Run { model: model.to_string(), mode: mode.to_string() })
        };
        if let (Some(u), Some(k)) = (mean("unconstrained"), mean("constrained")) {
            let verdict = if (u.value - k.value).abs() < 0.0005 {
                "no difference at this precision: the seed's finding that unconstrained \
                 optimisation scores higher is not seen here"
            } else if u.value > k.value {
                "as the seed found: the augmentations and the TV penalty cost similarity"
            } else {
                "which contradicts the seed's finding that unconstrained optimisation scores \
                 higher"
            };
            out.push(format!(
                "Under {model}, its unconstrained images score {:.3} and its constrained ones \
                 {:.3} (difference {:+.3}), {verdict}.",
                u.value,
                k.value,
                u.value - k.value
            ));
        }
    }
}

/// The transfer gap: each row's own-model similarity against the held-out models'.
fn transfer_gap(c: &Comparison, groups: &[Group], out: &mut Vec<String>) {
    for g in groups {
        let (Some(own), Some((held, names))) = (own_mean(c, g), held_out_mean(c, g)) else {
            continue;
        };
        let against = if c.is_ensemble(g) { "its members" } else { "its own model" };
        // A share of a similarity that is not positive says nothing.
        let kept = if own.value > 1e-9 && held.value >= 0.0 {
            format!("; the held-out models give {:.0} % of it", 100.0 * held.value / own.value)
        } else {
            String::new()
        };
        out.push(format!(
            "Transfer, {} · {}: {:.3} under {against}, {:.3} under the held-out {} (gap {:+.3}{kept}).",
            g.model(),
            g.mode(),
            own.value,
            held.value,
            list(&names),
            own.value - held.value
        ));
    }
}

/// The real photos, for scale.
fn real_photos(c: &Comparison, out: &mut Vec<String>) {
    let real: Vec<&Scored> = c.images.iter().filter(|s| s.origin.is_real()).collect();
    if !real.is_empty() {
        let parts: Vec<String> = c
            .scoring_models()
            .filter_map(|m| {
                Mean::of(real.iter().filter_map(|s| s.scores.get(&m.name).copied()))
                    .map(|mean| format!("{:.3} under {}", mean.value, m.name))
            })
            .collect();
        if !parts.is_empty() {
            let (n, verb) = (real.len(), if real.len() == 1 { "scores" } else { "score" });
            out.push(format!(
                "For scale, {} {verb} {} on average.",
                plural(n, "real photo", "real photos"),
                parts.join(", ")
            ));
        }
    }
}

/// The mean fraction kept after `probe` by the images of `mode` under their own model (single
/// models' results; an ensemble has no one own model), or by the real photos under every model.
pub fn mode_kept(c: &Comparison, mode: &str, probe: &str) -> Option<Mean> {
    if mode == "real" {
        let models: Vec<String> = c.scoring_models().map(|m| m.name.clone()).collect();
        return Mean::of(
            c.images
                .iter()
                .filter(|s| s.origin.is_real())
                .flat_map(|s| models.iter().filter_map(|m| s.kept(m, probe)).collect::<Vec<_>>()),
        );
    }
    Mean::of(
        c.images
            .iter()
            .filter(|s| !s.origin.is_real() && s.mode() == mode && s.members().is_none())
            .filter_map(|s| s.kept(s.generated_by(), probe)),
    )
}

fn robustness(c: &Comparison, out: &mut Vec<String>) {
    let probes = c.probe_names();
    if probes.is_empty() {
        return;
    }
    let mut modes: Vec<String> = Vec::new();
    for s in c.images.iter().filter(|s| !s.origin.is_real() && s.members().is_none()) {
        if !modes.iter().any(|m| m == s.mode()) {
            modes.push(s.mode().to_string());
        }
    }
    modes.push("real".to_string());
    for mode in &modes {
        let parts: Vec<String> = probes
            .iter()
            .filter_map(|p| {
                mode_kept(c, mode, p).map(|m| {
                    let n = if mode == "real" {
                        plural(m.n, "score", "scores")
                    } else {
                        plural(m.n, "image", "images")
                    };
                    format!("{:.0} % after {p} (n = {n})", 100.0 * m.value)
                })
            })
            .collect();
        if parts.is_empty() {
            continue;
        }
        let who = if mode == "real" {
            "The real photos keep, under every model,".to_string()
        } else {
            format!("Under their own model, the {mode} images keep")
        };
        out.push(format!("{who} {} of their similarity.", parts.join(", ")));
    }
    let compared: Vec<(String, f64, f64)> = probes
        .iter()
        .filter_map(|p| {
            let k = mode_kept(c, "constrained", p)?;
            let u = mode_kept(c, "unconstrained", p)?;
            Some((p.clone(), k.value, u.value))
        })
        .collect();
    if compared.is_empty() {
        return;
    }
    out.push(robustness_sentence(&compared));
}

/// The sentence comparing the constrained images' kept similarity with the unconstrained ones' per
/// probe (`(probe, constrained, unconstrained)` fractions), compared as shown: in whole percents.
fn robustness_sentence(compared: &[(String, f64, f64)]) -> String {
    // Compared as shown: in whole percents.
    let percent = |x: f64| (100.0 * x).round() as i64;
    let more: Vec<&str> = compared
        .iter()
        .filter(|(_, k, u)| percent(*k) > percent(*u))
        .map(|(p, _, _)| p.as_str())
        .collect();
    let less: Vec<&str> = compared
        .iter()
        .filter(|(_, k, u)| percent(*k) <= percent(*u))
        .map(|(p, _, _)| p.as_str())
        .collect();
    let same = compared.iter().all(|(_, k, u)| percent(*k) == percent(*u));
    if same {
        format!(
            "Constrained and unconstrained images keep the same share of their similarity under \
             every probe ({}), in whole percents: no difference in robustness here.",
            less.join(", ")
        )
    } else if less.is_empty() {
        format!(
            "Constrained images keep more of their similarity than unconstrained ones under every \
             probe ({}), as the seed's claim implies: their similarity rests on more than the \
             pixel-level texture the probes destroy.",
            more.join(", ")
        )
    } else if more.is_empty() {
        format!(
            "Constrained images keep no more of their similarity than unconstrained ones under any \
             probe ({}), which contradicts the seed's claim that the constraints give the images \
             structure that survives such changes.",
            less.join(", ")
        )
    } else {
        format!(
            "Constrained images keep more of their similarity than unconstrained ones after {} but \
             not after {}: the seed's claim that the constraints make the images more robust \
             holds only in part here.",
            more.join(", "),
            less.join(", ")
        )
    }
}

fn zero_shot(c: &Comparison, groups: &[Group], out: &mut Vec<String>) {
    let Some(labels) = &c.zero_shot_labels else { return };
    for g in groups {
        let own = |s: &Scored| super::zeroshot::own_verdict(c, s).map(|(m, _)| m.to_string());
        let (hits, n) = super::zeroshot::subject_hits(labels, images(c, g), &own);
        if n == 0 {
            continue;
        }
        let verb = if n == 1 { "is" } else { "are" };
        out.push(format!(
            "Zero-shot, {} · {}: {hits} of {} whose prompt names a class {verb} classified as \
             that class (top-1 of {}) under their own model ({:.0} %).",
            g.model(),
            g.mode(),
            plural(n, "image", "images"),
            labels.len(),
            100.0 * hits as f64 / n as f64
        ));
    }
    for m in c.scoring_models() {
        let real = c.images.iter().filter(|s| s.origin.is_real());
        let (hits, n) = super::zeroshot::subject_hits(labels, real, &|_| Some(m.name.clone()));
        if n > 0 {
            out.push(format!(
                "Zero-shot, real photos under {}: {hits} of {n} classified as their prompt's \
                 subject ({:.0} %).",
                m.name,
                100.0 * hits as f64 / n as f64
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(rows: &[(&str, f64, f64)]) -> Vec<(String, f64, f64)> {
        rows.iter().map(|(p, k, u)| (p.to_string(), *k, *u)).collect()
    }

    #[test]
    fn robustness_is_compared_as_shown_in_whole_percents() {
        // 100 % against 99.996 %: both shown as 100 %, so no difference is claimed.
        let same = robustness_sentence(&probes(&[("jpeg:75", 1.0, 0.99996), ("blur:1", 0.5, 0.5)]));
        assert!(same.contains("the same share") && same.contains("jpeg:75, blur:1"), "{same}");
        let more = robustness_sentence(&probes(&[("jpeg:75", 0.9, 0.6), ("blur:1", 0.8, 0.7)]));
        assert!(more.contains("keep more") && more.contains("under every probe"), "{more}");
        let mixed = robustness_sentence(&probes(&[("jpeg:75", 0.9, 0.6), ("blur:1", 0.7, 0.7)]));
        assert!(mixed.contains("after jpeg:75 but not after blur:1"), "{mixed}");
        let none = robustness_sentence(&probes(&[("jpeg:75", 0.5, 0.6)]));
        assert!(none.contains("no more") && none.contains("contradicts"), "{none}");
    }
}
