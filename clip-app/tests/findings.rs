//! Issue "Evaluation" end to end on the CPU: two short runs of each mode and one real photo,
//! compared under both tiny random-weight fixtures with the default probes and a small labels file
//! → `robustness.csv` with every image × model × probe row, `zeroshot.csv` with every image ×
//! model × rank row, and a Findings section whose numbers are the CSVs' (recomputed here from the
//! CSVs, not from the library).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clip-core/tests/fixtures").join(path)
}

fn clip(args: &[&str], home: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(args)
        .env("HOME", home)
        .env("CLIP_RS_CACHE", home.join("cache"))
        .env("CLIP_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/none")
        .output()
        .expect("clip runs");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A CSV's rows as header name → value maps (the files' cells hold no commas or quotes here).
fn csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("the CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|l| {
            header.iter().map(|h| h.to_string()).zip(l.split(',').map(str::to_string)).collect()
        })
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The number printed right after `after` in `text` (up to the next space, `,`, `)` or `;`).
fn number_after(text: &str, after: &str) -> f64 {
    let start = text.find(after).unwrap_or_else(|| panic!("{after:?} in {text:?}")) + after.len();
    let rest = &text[start..];
    let end = rest.find([' ', ',', ')', ';']).unwrap_or(rest.len());
    rest[..end].parse().unwrap_or_else(|_| panic!("a number after {after:?} in {text:?}"))
}

#[test]
fn findings_are_the_csvs_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let out = home.join("results");
    let out_s = out.display().to_string();
    let vit = fixture("models/tiny-vit.pt").display().to_string();
    let rn = fixture("models/tiny-rn.pt").display().to_string();
    for preset in ["constrained", "unconstrained"] {
        for prompt in ["a cute golden retriever", "a red tomato"] {
            let args = [
                "generate",
                "--weights",
                &vit,
                "--preset",
                preset,
                "--steps",
                "4",
                "--seed",
                "2",
                "--prompt",
                prompt,
                "--device",
                "cpu",
                "--out",
                &out_s,
            ];
            clip(&args, home);
        }
    }
    let labels = home.join("labels.txt");
    std::fs::write(&labels, "golden retriever\nred tomato\nmountain\nstatic noise\ncat\nbicycle\n")
        .unwrap();
    let photo = fixture("preprocess/rgb_300x200.png").display().to_string();
    let real = format!("{photo}=a red tomato");
    let args = [
        "compare",
        &out_s,
        "--weights",
        &format!("tiny-vit={vit}"),
        "--weights",
        &format!("tiny-rn={rn}"),
        "--device",
        "cpu",
        "--real",
        &real,
        "--zero-shot",
        labels.to_str().unwrap(),
    ];
    clip(&args, home);

    // Every image × model × probe, and every image × model × rank.
    let transfer = csv(&out.join("transfer.csv"));
    let robustness = csv(&out.join("robustness.csv"));
    let zeroshot = csv(&out.join("zeroshot.csv"));
    let images = 5;
    assert_eq!(transfer.len(), images * 2);
    assert_eq!(robustness.len(), images * 2 * 5, "five default probes");
    assert_eq!(zeroshot.len(), images * 2 * 5, "the top 5 of 6 classes");
    for probe in ["jpeg:75", "blur:1", "down:2", "rotate:5", "noise:0.03"] {
        assert_eq!(robustness.iter().filter(|r| r["probe"] == probe).count(), images * 2);
    }
    // The class weights were cached for the next comparison.
    assert_eq!(std::fs::read_dir(home.join("cache/zeroshot")).unwrap().count(), 2);

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let findings: Vec<&str> = report
        .split("## Findings")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Findings section")
        .lines()
        .filter(|l| l.starts_with("- "))
        .collect();
    let find = |start: &str| -> &str {
        findings
            .iter()
            .find(|l| l.contains(start))
            .unwrap_or_else(|| panic!("{start:?} in {findings:#?}"))
    };
    let own = |mode: &str| -> Vec<f64> {
        transfer
            .iter()
            .filter(|r| {
                r["mode"] == mode && r["generated_by"] == "tiny-vit" && r["scored_by"] == "tiny-vit"
            })
            .map(|r| r["similarity"].parse().unwrap())
            .collect()
    };
    // Own-model means per mode, and the seed's claim.
    let line = find("tiny-vit's images score");
    for mode in ["constrained", "unconstrained"] {
        let expected = mean(&own(mode));
        let printed = number_after(line, &format!("{mode} "));
        assert!((printed - expected).abs() <= 0.0005 + 1e-12, "{mode}: {printed} vs {expected}");
    }
    let claim = find("Under tiny-vit, its unconstrained images score");
    let (u, k) = (mean(&own("unconstrained")), mean(&own("constrained")));
    assert!((number_after(claim, "score ") - u).abs() <= 0.0005);
    assert_eq!(claim.contains("as the seed found"), u > k, "{claim}");
    // The transfer gap.
    for mode in ["constrained", "unconstrained"] {
        let line = find(&format!("Transfer, tiny-vit · {mode}:"));
        let held: Vec<f64> = transfer
            .iter()
            .filter(|r| {
                r["mode"] == mode && r["generated_by"] == "tiny-vit" && r["scored_by"] == "tiny-rn"
            })
            .map(|r| r["similarity"].parse().unwrap())
            .collect();
        let gap = mean(&own(mode)) - mean(&held);
        assert!((number_after(line, "gap ") - gap).abs() <= 0.0005, "{line} vs {gap}");
    }
    // Robustness: the fraction kept under the own model, from the two CSVs.
    for mode in ["constrained", "unconstrained"] {
        let sentence = findings.iter().find(|l| l.contains(&format!("the {mode} images keep")));
        for probe in ["jpeg:75", "blur:1", "down:2", "rotate:5", "noise:0.03"] {
            let kept: Vec<f64> = transfer
                .iter()
                .filter(|r| {
                    r["mode"] == mode
                        && r["scored_by"] == "tiny-vit"
                        && r["generated_by"] == "tiny-vit"
                })
                .filter_map(|t| {
                    let plain: f64 = t["similarity"].parse().unwrap();
                    let probed: f64 = robustness.iter().find(|r| {
                        r["image"] == t["image"]
                            && r["scored_by"] == "tiny-vit"
                            && r["probe"] == probe
                    })?["similarity"]
                        .parse()
                        .unwrap();
                    (plain >= 0.05).then_some(probed / plain)
                })
                .collect();
            match (sentence, kept.is_empty()) {
                (Some(s), false) => {
                    let marker = format!(" % after {probe} (n = {} image", kept.len());
                    assert!(s.contains(&marker), "{marker:?} in {s}");
                    let pct = s.split(&marker).next().unwrap();
                    let pct: f64 = pct.rsplit([' ', ',']).next().unwrap().parse().unwrap();
                    assert!(
                        (pct - 100.0 * mean(&kept)).abs() <= 0.5,
                        "{mode} {probe}: {pct} vs {kept:?}"
                    );
                }
                (None, false) => panic!("no robustness sentence for {mode}, though {kept:?}"),
                (_, true) => {
                    assert!(sentence.is_none_or(|s| !s.contains(&format!("after {probe}"))))
                }
            }
        }
    }
    // Zero-shot: top-1 = the prompt's subject, from zeroshot.csv.
    for mode in ["constrained", "unconstrained"] {
        let rows: Vec<_> = zeroshot
            .iter()
            .filter(|r| r["mode"] == mode && r["scored_by"] == "tiny-vit" && r["rank"] == "1")
            .collect();
        assert_eq!(rows.len(), 2);
        let hits = rows
            .iter()
            .filter(|r| {
                let subject = if r["prompt"].contains("golden retriever") {
                    "golden retriever"
                } else {
                    "red tomato"
                };
                r["label"] == subject
            })
            .count();
        let line = find(&format!("Zero-shot, tiny-vit · {mode}:"));
        assert!(line.contains(&format!(": {hits} of 2 images")), "{line} vs {hits}");
    }
}
