//! The run record is a serde type: records written by the release before `schema` still read
//! (committed in `tests/fixtures/records/v1/`), into typed fields, and write back as the same JSON
//! plus `schema`; a record written now carries `schema` 2 and reads back equal; the README's
//! field list names exactly the record's fields.

use clip_app::output::{RunRecord, SCHEMA};
use clip_core::engine::optimize::Keep;
use clip_core::engine::param::{Canvas, Param};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn old(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records/v1").join(name)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clip-core/tests/fixtures").join(name)
}

#[test]
fn records_of_the_previous_release_read_and_write_back_the_same() {
    for name in ["plain.json", "ensemble.json", "edit.json", "sweep.json"] {
        let text = std::fs::read_to_string(old(name)).unwrap();
        let original: Value = serde_json::from_str(&text).unwrap();
        assert!(original.get("schema").is_none(), "{name} is not an old record");
        let record: RunRecord =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(record.schema, 1, "{name}");
        let mut again = serde_json::to_value(&record).unwrap();
        assert_eq!(again.as_object_mut().unwrap().remove("schema"), Some(Value::from(1)));
        assert_eq!(again, original, "{name}: written back differently");
    }
    let ensemble: RunRecord =
        serde_json::from_str(&std::fs::read_to_string(old("ensemble.json")).unwrap()).unwrap();
    assert_eq!(ensemble.param, Param::Fft);
    assert_eq!(ensemble.size, Canvas { width: 48, height: 40 });
    assert_eq!(ensemble.keep, Keep::Last);
    assert_eq!(ensemble.augment.len(), 1);
    assert_eq!(ensemble.ensemble.len(), 2);
    assert_eq!(ensemble.negatives[0].prompt, "static noise");
    let sweep: RunRecord =
        serde_json::from_str(&std::fs::read_to_string(old("sweep.json")).unwrap()).unwrap();
    assert_eq!(sweep.draws.as_deref(), Some("keyed"));
    assert!(sweep.run_id.is_some());
}

/// The PNG's text chunks hold the record's settings and what the run did, not its timings, paths
/// or scores: every field of the record (read off its serde fields, over the four kinds of
/// record) is either in the PNG's text, under its own name or a declared one, or declared here as
/// left out — a field added to the record cannot be forgotten in the PNG.
#[test]
fn every_field_of_the_record_is_in_the_png_text_or_said_to_be_left_out() {
    const LEFT_OUT: &[&str] = &[
        "schema",
        "image",
        "image_sha256",
        "weights",
        "views_per_image",
        "frozen_at_step",
        "resolution",
        "batch_size",
        "initial_similarity",
        "final_similarity",
        "final_similarity_unquantized",
        "best_step",
        "best_similarity_loss",
        "history_every",
        "steps_per_second",
        "loop_seconds",
        "execution",
        "wall_seconds",
    ];
    // Fields the PNG holds under another name (or in part).
    const RENAMED: &[(&str, &str)] = &[("init", "init_photo_sha256")];
    for name in ["plain.json", "ensemble.json", "edit.json", "sweep.json"] {
        let text = std::fs::read_to_string(old(name)).unwrap();
        let record: RunRecord = serde_json::from_str(&text).unwrap();
        let chunks: Vec<&str> = record.png_text().iter().map(|(k, _)| *k).collect();
        let value = serde_json::to_value(&record).unwrap();
        for field in value.as_object().unwrap().keys() {
            let key = RENAMED.iter().find(|(f, _)| f == field).map_or(field.as_str(), |r| r.1);
            assert!(
                chunks.contains(&key) || LEFT_OUT.contains(&field.as_str()),
                "{name}: the record's `{field}` is neither in the PNG's text nor said to be left out"
            );
        }
        for key in &chunks {
            assert!(!LEFT_OUT.contains(key), "{name}: `{key}` is said to be left out");
        }
    }
}

#[test]
fn a_record_written_now_has_the_schema_and_reads_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(["generate", "--weights"])
        .arg(fixture("models/tiny-vit.pt"))
        .args(["--init"])
        .arg(fixture("preprocess/photo_300x200.jpg"))
        .args(["--epsilon", "8/255", "--negative", "a cat", "--prompt", "a dog", "--steps", "2"])
        .args(["--seed", "1", "--device", "cpu", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json = dir.path().join("tiny-vit/constrained_tiny-vit_a_dog.json");
    let text = std::fs::read_to_string(&json).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["schema"], Value::from(SCHEMA));
    assert_eq!(value["param"], "pixels");
    assert_eq!(value["augment"][0], "affine:10,0.1,0.9,1.1");
    let record: RunRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&record).unwrap(), value);
    // The README's list of the record's fields is the type's: every field written is listed,
    // and every listed field is one.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let listed = readme_fields(&readme);
    let written: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    for key in &written {
        assert!(listed.iter().any(|l| l == key), "README does not list the record's `{key}`");
    }
    let optional = [
        "weights",
        "weights_sha256",
        "ensemble",
        "frozen_at_step",
        "draws",
        "run_id",
        "best_step",
        "best_similarity_loss",
        "preset",
    ];
    for key in &listed {
        assert!(
            written.contains(&key.as_str()) || optional.contains(&key.as_str()),
            "README lists `{key}`, which is no field of a record"
        );
    }
}

/// The backticked names at the start of the README's "The JSON record" bullet list.
fn readme_fields(readme: &str) -> Vec<String> {
    let start = readme.find("<!-- record fields -->").expect("README marks its record field list");
    let end = readme[start..].find("<!-- /record fields -->").expect("… and its end") + start;
    readme[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .flat_map(|l| {
            let names = l.split(':').next().unwrap_or("");
            names.split("`, `").map(|n| n.trim_matches('`').to_string()).collect::<Vec<_>>()
        })
        .collect()
}
