//! Zero-shot verdicts in `clip compare`: each image's top-5 classes under each scoring model
//! (`zeroshot.csv`), its top-1 class under its own model in the contact sheet, and, in the
//! Findings, how often an image is classified as its prompt's subject.
//!
//! The classifier is `clip::zeroshot` (`clip classify`'s): class weights from the label list ×
//! OpenAI's 80 templates, cached per checkpoint. `--zero-shot imagenet|FILE|none`; by default
//! ImageNet, but only for a model whose class weights are already cached, or on CUDA — computing
//! them (80 000 texts) takes minutes on a CPU, so a default run never starts that unasked; the
//! report says when a model was left without verdicts, and why.
//!
//! A prompt's subject is the longest class name that occurs in the prompt as whole words
//! (case-insensitive): "A cute golden retriever" → "golden retriever". Images whose prompt holds
//! no class name are not counted.

use super::{Comparison, Scored};
use clip_core::clip::zeroshot::{Labels, Prediction};

/// Classes per image and model in `zeroshot.csv`.
pub const TOP_K: usize = 5;

/// The header of `zeroshot.csv`.
pub const ZEROSHOT_CSV_HEADER: &str =
    "image,prompt,generated_by,mode,scored_by,rank,index,label,probability";

/// `--zero-shot`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ZeroShotChoice {
    /// ImageNet, for the models whose class weights are cached, or every model on CUDA.
    #[default]
    Auto,
    /// These labels (`imagenet` or a file of class names), for every model, computing the class
    /// weights where they are not cached.
    Labels(String),
    /// No zero-shot verdicts (`none`).
    Off,
}

impl std::str::FromStr for ZeroShotChoice {
    type Err = String;

    /// `none`, `imagenet`, or a labels file (one class name a line; read when the comparison
    /// starts, and refused there when empty or unreadable).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" => Err("expected imagenet, none or a labels file".to_string()),
            "none" => Ok(Self::Off),
            "auto" => Ok(Self::Auto),
            other => Ok(Self::Labels(other.to_string())),
        }
    }
}

impl std::fmt::Display for ZeroShotChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Labels(spec) => f.write_str(spec),
            Self::Off => f.write_str("none"),
        }
    }
}

/// Whether `name` occurs in `text` as whole words (ASCII case-insensitive; a word boundary is
/// anything but a letter or digit).
fn contains_words(text: &str, name: &str) -> bool {
    let (text, name) = (text.to_lowercase(), name.to_lowercase());
    if name.is_empty() {
        return false;
    }
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    let mut from = 0;
    while let Some(at) = text[from..].find(&name) {
        let start = from + at;
        let end = start + name.len();
        if boundary(text[..start].chars().next_back()) && boundary(text[end..].chars().next()) {
            return true;
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// The prompt's subject: the index of the longest class name found in it as whole words.
pub fn subject(prompt: &str, labels: &Labels) -> Option<usize> {
    labels
        .names
        .iter()
        .enumerate()
        .filter(|(_, name)| contains_words(prompt, name))
        .max_by_key(|(i, name)| (name.chars().count(), std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

/// The model whose verdict an image's caption shows: its own (an ensemble's first member that
/// has one), or for a real photo the first scoring model that has one.
pub fn own_verdict<'a>(c: &Comparison, s: &'a Scored) -> Option<(&'a str, &'a Prediction)> {
    let top =
        |m: &str| s.zeroshot.get_key_value(m).and_then(|(k, v)| Some((k.as_str(), v.first()?)));
    if s.origin.is_real() {
        return c.scoring_models().find_map(|m| top(&m.name));
    }
    match s.members() {
        Some(members) => {
            s.zeroshot.keys().find(|k| members.iter().any(|m| m.is(k))).and_then(|k| top(k))
        }
        None => top(s.generated_by()),
    }
}

/// `zeroshot.csv`: one row per image × scoring model × rank (1 = most probable), as
/// [`ZEROSHOT_CSV_HEADER`].
pub fn zeroshot_csv(c: &Comparison) -> String {
    let mut text = format!("{ZEROSHOT_CSV_HEADER}\n");
    for s in &c.images {
        let image = super::relative(&c.results_dir, &s.image);
        for m in c.scoring_models() {
            let Some(top) = s.zeroshot.get(&m.name) else { continue };
            for (rank, p) in top.iter().enumerate() {
                let fields = [image.as_str(), &s.prompt, s.generated_by(), s.mode(), &m.name];
                let fields: Vec<String> = fields.iter().map(|f| super::csv_field(f)).collect();
                text.push_str(&format!(
                    "{},{},{},{},{}\n",
                    fields.join(","),
                    rank + 1,
                    p.index,
                    super::csv_field(&p.label),
                    p.probability
                ));
            }
        }
    }
    text
}

/// How often a group's images are classified as their prompt's subject, top-1, under `model`:
/// (hits, images whose prompt has a subject and that have a verdict under `model`).
pub fn subject_hits<'a>(
    labels: &Labels,
    images: impl Iterator<Item = &'a Scored>,
    model: &dyn Fn(&Scored) -> Option<String>,
) -> (usize, usize) {
    let (mut hits, mut n) = (0, 0);
    for s in images {
        let (Some(subject), Some(m)) = (subject(&s.prompt, labels), model(s)) else { continue };
        let Some(top) = s.zeroshot.get(&m).and_then(|t| t.first()) else { continue };
        n += 1;
        hits += usize::from(top.index == subject);
    }
    (hits, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_whole_words_and_the_longest_wins() {
        let labels = Labels::imagenet();
        let golden = subject("A cute golden retriever", &labels).expect("a subject");
        assert_eq!(labels.names[golden].to_lowercase(), "golden retriever");
        let peak = subject("A snow-covered mountain peak", &labels).expect("a subject");
        assert_eq!(labels.names[peak].to_lowercase(), "mountain");
        let bike = subject("an old mountain bike", &labels).expect("a subject");
        assert_eq!(labels.names[bike].to_lowercase(), "mountain bike", "the longest name wins");
        assert_eq!(subject("", &labels), None);
        assert!(contains_words("a Goldfish.", "goldfish"));
        assert!(!contains_words("goldfishes", "goldfish"));
        assert!(contains_words("ébène goldfish", "goldfish"));
    }

    #[test]
    fn the_flag() {
        assert_eq!("none".parse(), Ok(ZeroShotChoice::Off));
        assert_eq!("imagenet".parse(), Ok(ZeroShotChoice::Labels("imagenet".into())));
        assert!("".parse::<ZeroShotChoice>().is_err());
    }
}
