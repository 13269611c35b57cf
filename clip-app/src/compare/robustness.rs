//! The robustness probes' numbers: `robustness.csv`, and the fraction of its similarity an image
//! keeps under a probe, per image and per row of the transfer table (what `robustness.png` and
//! report.md's "Robustness" show, and what later analyses read).
//!
//! The fraction kept is `probe similarity / plain similarity`, per image and scoring model (1:
//! the probe changed nothing; 0.5: half the similarity is gone; above 1: the probe raised it).
//! A ratio means nothing when the plain similarity is near 0 or negative (a random model, an
//! image that never matched its prompt): an image whose plain similarity under the model is
//! below [`KEPT_MIN_BASELINE`] has no fraction kept and is left out of the means, which say how
//! many were left out. Its similarities are still in `robustness.csv` and `transfer.csv`.

use super::{csv_field, relative, Comparison, Origin, Scored};

/// The header of `robustness.csv`.
pub const ROBUSTNESS_CSV_HEADER: &str = "image,prompt,generated_by,mode,scored_by,probe,similarity";

/// The smallest plain similarity a fraction kept is computed from. CLIP's similarities of an
/// image and a fitting caption are about 0.2–0.35 (ViT-B/32), of unrelated ones about 0.1; below
/// 0.05 the ratio would mostly measure noise (and change sign or explode near 0).
pub const KEPT_MIN_BASELINE: f64 = 0.05;

/// The mean fraction kept over the images of a group, under one model and one probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kept {
    /// The mean of the images' fractions kept; `None` when every image was left out.
    pub mean: Option<f64>,
    /// The images averaged.
    pub images: usize,
    /// The images with both similarities but a plain similarity below [`KEPT_MIN_BASELINE`].
    pub left_out: usize,
}

impl Scored {
    /// The similarity under `model` after `probe` (named as [`super::Probe`] prints it, e.g.
    /// `blur:1`), when scored.
    pub fn probe_score(&self, model: &str, probe: &str) -> Option<f64> {
        self.probes.get(&(model.to_string(), probe.to_string())).copied()
    }

    /// The fraction of its similarity under `model` the image keeps after `probe`: the probe's
    /// similarity over the plain one. `None` when either was not scored, or when the plain
    /// similarity is below [`KEPT_MIN_BASELINE`].
    pub fn kept(&self, model: &str, probe: &str) -> Option<f64> {
        let plain = *self.scores.get(model)?;
        let probed = self.probe_score(model, probe)?;
        (plain >= KEPT_MIN_BASELINE).then(|| probed / plain)
    }
}

impl Comparison {
    /// The probes' names, in column order.
    pub fn probe_names(&self) -> Vec<String> {
        self.probes.iter().map(|p| p.to_string()).collect()
    }

    /// The mean fraction kept ([`Scored::kept`]) of a row's images (a row of the transfer table:
    /// [`Comparison::groups`]) under `model` after `probe`. `None` when no image of the row has
    /// both its plain and its probe similarity under `model`.
    pub fn mean_kept(&self, group: &Origin, model: &str, probe: &str) -> Option<Kept> {
        let (mut sum, mut images, mut left_out) = (0.0, 0usize, 0usize);
        let in_group = self.images.iter().filter(|s| s.origin == *group);
        for s in in_group {
            if s.scores.contains_key(model) && s.probe_score(model, probe).is_some() {
                match s.kept(model, probe) {
                    Some(k) => {
                        sum += k;
                        images += 1;
                    }
                    None => left_out += 1,
                }
            }
        }
        (images + left_out > 0).then(|| Kept {
            mean: (images > 0).then(|| sum / images as f64),
            images,
            left_out,
        })
    }
}

/// One row per image × scoring model × probe that was scored ([`ROBUSTNESS_CSV_HEADER`]), in the
/// order of `transfer.csv` and then of the probes; the image path relative to the results
/// directory where it lies inside it, text cells quoted as in `transfer.csv`.
pub fn robustness_csv(comparison: &Comparison) -> String {
    let mut text = format!("{ROBUSTNESS_CSV_HEADER}\n");
    let probes = comparison.probe_names();
    for s in &comparison.images {
        let image = relative(&comparison.results_dir, &s.image);
        for m in comparison.scoring_models() {
            let fields = [image.as_str(), &s.prompt, s.generated_by(), s.mode(), &m.name];
            let fields: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            for probe in &probes {
                if let Some(sim) = s.probe_score(&m.name, probe) {
                    text.push_str(&format!("{},{},{sim}\n", fields.join(","), csv_field(probe)));
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::{Probe, ScoringModel};
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn scored(image: &str, plain: f64, blurred: Option<f64>) -> Scored {
        let mut probes = BTreeMap::new();
        if let Some(v) = blurred {
            probes.insert(("m".to_string(), "blur:1".to_string()), v);
        }
        Scored {
            image: PathBuf::from(format!("/r/{image}")),
            prompt: "a, \"dog\"".to_string(),
            origin: Origin::Run { model: "m".to_string(), mode: "constrained".to_string() },
            run: None,
            history: None,
            curve: None,
            scores: BTreeMap::from([("m".to_string(), plain)]),
            start: None,
            start_scores: BTreeMap::new(),
            probes,
            zeroshot: BTreeMap::new(),
        }
    }

    fn comparison(images: Vec<Scored>) -> Comparison {
        Comparison {
            results_dir: PathBuf::from("/r"),
            models: vec![ScoringModel { name: "m".into(), weights: None, unavailable: None }],
            images,
            probes: vec![Probe::Blur { sigma: 1.0 }, Probe::Down { factor: 2 }],
            zero_shot_labels: None,
            zero_shot_skipped: Vec::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
            written: Vec::new(),
        }
    }

    #[test]
    fn fraction_kept_leaves_out_small_baselines() {
        let c = comparison(vec![
            scored("a.png", 0.2, Some(0.15)),
            scored("b.png", 0.3, Some(0.3)),
            scored("c.png", 0.01, Some(0.2)),
            scored("d.png", -0.1, Some(0.1)),
            scored("e.png", 0.3, None),
        ]);
        assert_eq!(c.images[0].kept("m", "blur:1"), Some(0.15 / 0.2));
        assert_eq!(c.images[2].kept("m", "blur:1"), None);
        assert_eq!(c.images[4].kept("m", "blur:1"), None);
        let group = Origin::Run { model: "m".to_string(), mode: "constrained".to_string() };
        let kept = c.mean_kept(&group, "m", "blur:1").expect("scored");
        assert_eq!(kept.images, 2);
        assert_eq!(kept.left_out, 2);
        assert!((kept.mean.expect("a mean") - (0.75 + 1.0) / 2.0).abs() < 1e-12);
        assert_eq!(c.mean_kept(&group, "m", "down:2"), None);
        assert_eq!(c.mean_kept(&group, "other", "blur:1"), None);
        let small = comparison(vec![scored("c.png", 0.01, Some(0.2))]);
        let kept = small.mean_kept(&group, "m", "blur:1");
        assert_eq!(kept, Some(Kept { mean: None, images: 0, left_out: 1 }));
    }

    #[test]
    fn csv_has_a_row_per_probe_scored() {
        let c = comparison(vec![scored("a.png", 0.2, Some(0.15)), scored("e.png", 0.3, None)]);
        let csv = robustness_csv(&c);
        assert_eq!(
            csv,
            format!(
                "{ROBUSTNESS_CSV_HEADER}\na.png,\"a, \"\"dog\"\"\",m,constrained,m,blur:1,0.15\n"
            )
        );
        assert_eq!(robustness_csv(&comparison(Vec::new())), format!("{ROBUSTNESS_CSV_HEADER}\n"));
    }
}
