"""clip_rs against the reference `clip` package (openai-clip 1.0.1) and the `clip` CLI, on the tiny
random-weight checkpoints in OpenAI's format (clip-core/tests/fixtures/models).

Run by scripts/test.sh after `scripts/setup.sh --python`; CLIP_BIN names the CLI binary to compare
with (default: target/debug/clip).
"""

import _thread
import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

import clip_rs

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "clip-core" / "tests" / "fixtures"
TINY = {"tiny-rn": FIXTURES / "models" / "tiny-rn.pt", "tiny-vit": FIXTURES / "models" / "tiny-vit.pt"}
IMAGES = sorted((FIXTURES / "models" / "images").glob("*.png"))
PHOTO = FIXTURES / "preprocess" / "photo_300x200.jpg"
CLIP_BIN = Path(os.environ.get("CLIP_BIN", REPO / "target" / "debug" / "clip"))
TEXTS = ["a photo of a dog", "A snow-covered mountain peak", "un café ☕ — «quotes»", "", "日本語のテキスト"]

reference = pytest.importorskip("clip", reason="the reference package (scripts/setup.sh --reference)")


@pytest.fixture(scope="module", params=sorted(TINY))
def both(request):
    """Ours and the reference's model, for each tiny checkpoint."""
    path = TINY[request.param]
    ours = clip_rs.load(path, device="cpu")
    ref, preprocess = reference.load(str(path), device="cpu", jit=False)
    ref.eval()
    return ours, ref, preprocess


@pytest.fixture(scope="module")
def vit():
    return clip_rs.load(TINY["tiny-vit"], device="cpu")


def cosines(a, b):
    a = a.double()
    b = b.double()
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def cli(*args, cwd=None):
    assert CLIP_BIN.exists(), f"the CLI is not built at {CLIP_BIN} (set CLIP_BIN)"
    out = subprocess.run(
        [str(CLIP_BIN), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "CLIP_DOWNLOAD_BASE_URL": "http://127.0.0.1:9/none"},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_embeddings_match_the_reference(both):
    ours, ref, preprocess = both
    from PIL import Image

    assert IMAGES
    for path in IMAGES + [PHOTO]:
        mine = ours.preprocess(path)
        theirs = preprocess(Image.open(path))
        # The same pixels (PNG exactly; the JPEG decoder differs by a few levels).
        assert (mine - theirs).abs().max() < (0.1 if path.suffix == ".jpg" else 1e-5), path
        # A PIL image gives what its file gives.
        assert torch.equal(ours.preprocess(Image.open(path)), mine) or path.suffix == ".jpg"
        with torch.no_grad():
            expected = ref.encode_image(theirs.unsqueeze(0))
        got = ours.encode_image(theirs.unsqueeze(0))
        assert got.shape == expected.shape
        assert cosines(got, expected).min() >= 0.99999, path
    with torch.no_grad():
        expected = ref.encode_text(reference.tokenize(TEXTS))
    got = ours.encode_text(TEXTS)
    assert cosines(got, expected).min() >= 0.99999


def test_tokenize_is_the_references():
    texts = [json.loads(line)["text"] for line in open(FIXTURES / "tokenizer_corpus.jsonl", encoding="utf-8")]
    short = [t for t in texts if len(reference.tokenize(t, truncate=True)[0].nonzero()) < 77][:400]
    assert torch.equal(clip_rs.tokenize(short), reference.tokenize(short))
    assert clip_rs.tokenize(short).dtype == torch.int64
    assert torch.equal(clip_rs.tokenize(texts, truncate=True), reference.tokenize(texts, truncate=True))
    assert torch.equal(clip_rs.tokenize("a dog"), reference.tokenize("a dog"))


@pytest.mark.parametrize(
    "settings, flags",
    [
        ({}, []),
        ({"preset": "unconstrained"}, ["--preset", "unconstrained"]),
        (
            {"param": "fft-decorrelated", "augment": ["cutouts:4,0.5,1", "jitter:2"], "negative": ["static noise"]},
            ["--param", "fft-decorrelated", "--augment", "cutouts:4,0.5,1", "--augment", "jitter:2", "--negative", "static noise"],
        ),
    ],
)
def test_generate_writes_the_clis_bytes(vit, tmp_path, settings, flags):
    prompts = ["a dog", "a red tomato"]
    args = ["generate", "--weights", TINY["tiny-vit"], "--device", "cpu", "--seed", "7", "--steps", "6"]
    for p in prompts:
        args += ["--prompt", p]
    cli(*args, *flags, "--out", tmp_path / "cli")
    results = clip_rs.generate(vit, prompts, steps=6, seed=7, progress=False, **settings)
    for r in results:
        png = r.save(tmp_path / "py")
        twin = tmp_path / "cli" / png.parent.name / png.name
        assert png.read_bytes() == twin.read_bytes(), png.name
        assert png.with_suffix(".csv").read_bytes() == twin.with_suffix(".csv").read_bytes()
        record = json.loads(twin.with_suffix(".json").read_text())
        for key in ["final_similarity", "initial_similarity", "seed", "image_sha256", "steps_done"]:
            assert r.record[key] == record[key], key
        assert r.similarity == record["final_similarity"]
        assert r.curve.shape == (6, len(r.columns))
        assert r.columns[:2] == ["step", "similarity"]
        assert r.curve[:, 0].tolist() == [1, 2, 3, 4, 5, 6]


def test_images_are_views_of_the_engines_result_not_copies(vit):
    results = clip_rs.generate(vit, ["a dog", "a cat", "a tomato"], steps=2, seed=1, progress=False)
    base = results[0].image.untyped_storage().data_ptr()
    size = results[0].image.numel()
    for i, r in enumerate(results):
        assert r.image.shape == (3, 32, 32) and r.image.dtype == torch.float32
        # One storage (the engine's [N, 3, H, W] result), each image its slice.
        assert r.image.untyped_storage().data_ptr() == base
        assert r.image.storage_offset() == i * size
        assert r.image.data_ptr() == base + i * size * 4
        # What the PNG holds, before its 8-bit rounding.
        import numpy as np

        png = torch.from_numpy(np.array(r.pil())).permute(2, 0, 1).float() / 255
        assert (png - r.image).abs().max() <= 0.5 / 255 + 1e-6


def test_the_gil_is_released_while_generating(vit):
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    thread = threading.Thread(target=count)
    thread.start()
    try:
        start = time.perf_counter()
        clip_rs.generate(vit, ["a dog"], steps=200, seed=1, progress=False)
        elapsed = time.perf_counter() - start
    finally:
        done.set()
        thread.join()
    during = [t for t in ticks if start <= t <= start + elapsed]
    # With the GIL held throughout, the other thread would not run at all during the call.
    assert elapsed > 0.2 and len(during) > 0.25 * elapsed / 0.002, (elapsed, len(during))


def test_keyboard_interrupt_returns_the_partial_results(vit, tmp_path):
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    try:
        results = clip_rs.generate(vit, ["a dog", "a cat"], steps=10**9, seed=1, progress=False)
    finally:
        timer.cancel()
    assert len(results) == 2
    for r in results:
        assert r.interrupted and r.record["interrupted"]
        assert 0 < r.record["steps_done"] < 10**9
        assert r.curve.shape[0] >= 1
        assert r.save(tmp_path).exists()
    # The interpreter goes on, and so does the module.
    assert clip_rs.generate(vit, ["a dog"], steps=2, seed=1, progress=False)[0].record["steps_done"] == 2


def test_ctrl_c_stops_a_generate_running_in_another_thread(vit, tmp_path):
    out = {}

    def work():
        out["results"] = clip_rs.generate(vit, ["a dog"], steps=10**9, seed=1, progress=False)

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(1.0)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        _thread.interrupt_main()
        while worker.is_alive():
            worker.join(0.05)
    worker.join(60)
    assert not worker.is_alive() and time.perf_counter() - start < 60
    [r] = out["results"]
    assert r.interrupted and 0 < r.record["steps_done"] < 10**9
    assert r.save(tmp_path).exists()


def test_a_keyboard_interrupt_in_the_callback_returns_the_images_reached(vit):
    def ctrl_c(step, steps, sims):
        if step >= 20:
            raise KeyboardInterrupt

    results = clip_rs.generate(vit, ["a dog", "a cat"], steps=10**9, seed=1, callback=ctrl_c)
    assert len(results) == 2
    assert all(r.interrupted and 20 <= r.record["steps_done"] <= 30 for r in results)


def test_progress_reaches_the_callback_and_its_exception_stops_the_run(vit):
    seen = []
    clip_rs.generate(vit, ["a dog", "a cat"], steps=25, seed=1, callback=lambda s, n, sims: seen.append((s, n, list(sims))))
    assert [s for s, _, _ in seen] == [10, 20, 25]
    assert all(n == 25 and len(sims) == 2 for _, n, sims in seen)

    def fail(step, steps, sims):
        raise ValueError("stop here")

    start = time.perf_counter()
    with pytest.raises(ValueError, match="stop here"):
        clip_rs.generate(vit, ["a dog"], steps=10**9, seed=1, callback=fail)
    assert time.perf_counter() - start < 60


def test_score_and_classify_are_the_clis(vit, tmp_path):
    scores = clip_rs.score(vit, [PHOTO, IMAGES[0]], ["a dog", "a red tomato"])
    assert scores.shape == (2, 2)
    for i, image in enumerate([PHOTO, IMAGES[0]]):
        for j, text in enumerate(["a dog", "a red tomato"]):
            printed = float(cli("score", "--weights", TINY["tiny-vit"], "--device", "cpu", "--image", image, "--text", text).split()[-1])
            assert abs(scores[i, j].item() - printed) < 1e-5
    labels = tmp_path / "labels.txt"
    labels.write_text("dog\ncat\ntomato\nmountain\n")
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {}.\n{} in a picture\n")
    env_cache = os.environ.get("CLIP_RS_CACHE")
    os.environ["CLIP_RS_CACHE"] = str(tmp_path / "cache")
    try:
        got = clip_rs.classify(vit, [PHOTO], labels=labels, templates=templates, top=3)
        printed = json.loads(cli("classify", "--weights", TINY["tiny-vit"], "--device", "cpu", "--image", PHOTO, "--labels", labels, "--templates", templates, "--top", "3"))
    finally:
        if env_cache is None:
            del os.environ["CLIP_RS_CACHE"]
        else:
            os.environ["CLIP_RS_CACHE"] = env_cache
    assert [p["index"] for p in got[0]] == [p["index"] for p in printed["top"]]
    for a, b in zip(got[0], printed["top"]):
        assert a["label"] == b["label"] and abs(a["probability"] - b["probability"]) < 1e-5


def test_compare_writes_the_report(vit, tmp_path):
    for r in clip_rs.generate(vit, ["a dog", "a cat"], steps=3, seed=1, progress=False):
        r.save(tmp_path)
    files = clip_rs.compare(tmp_path, models=["tiny-vit"], weights=[f"tiny-vit={TINY['tiny-vit']}"], probes="jpeg:75", zero_shot="none", device="cpu")
    assert {"report.md", "transfer.csv", "contact_sheet.png", "robustness.csv"} <= set(files)
    assert all(p.exists() for p in files.values())
    assert "tiny-vit" in (tmp_path / "transfer.csv").read_text()


def test_compare_keywords_are_typed_and_checked_before_any_work(vit, tmp_path):
    """compare's keywords are `clip compare`'s settings read by type, not turned into flags: a
    wrong type is a TypeError, a value the flag refuses a ValueError with the flag's own message
    (in Python's spelling), an unknown keyword a TypeError naming the nearest — before any model
    loads, and nothing is written. A dict of weights and a list of probes are accepted."""
    for r in clip_rs.generate(vit, ["a dog"], steps=2, seed=1, progress=False):
        r.save(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    weights = {"weights": [f"tiny-vit={TINY['tiny-vit']}"], "models": ["tiny-vit"], "device": "cpu"}
    for bad in [{"batch_size": True}, {"batch_size": "4"}, {"cell_size": 1.5}, {"models": 3},
                {"probes": 75}, {"real": [None]}]:
        with pytest.raises(TypeError) as e:
            clip_rs.compare(tmp_path, **{**weights, **bad})
        assert list(bad)[0] in str(e.value), e.value
    for bad, says in [({"batch_size": 0}, "at least 1"), ({"cell_size": 5000}, "64 to 1024"),
                      ({"probes": "jpeg:0"}, "jpeg"), ({"weights": ["no-equals-sign"]}, "NAME=PATH"),
                      ({"device": "tpu"}, "tpu"), ({"zero_shot": str(tmp_path / "none.txt")}, "none.txt")]:
        with pytest.raises(ValueError) as e:
            clip_rs.compare(tmp_path, **{**weights, **bad})
        message = str(e.value)
        assert list(bad)[0] in message and says in message, message
        assert "--" not in message, message
    with pytest.raises(TypeError, match="did you mean `batch_size`"):
        clip_rs.compare(tmp_path, batch_sise=4, **weights)
    with pytest.raises(TypeError, match="results_dir"):
        clip_rs.compare(tmp_path, results_dir=tmp_path, **weights)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    files = clip_rs.compare(tmp_path, weights={"tiny-vit": TINY["tiny-vit"]}, models="tiny-vit",
                            probes=["jpeg:75", "blur:1"], zero_shot="none", device="cpu", batch_size=2)
    header = (tmp_path / "robustness.csv").read_text().splitlines()
    assert "report.md" in files and any("blur:1" in line for line in header[1:]), header[:3]


def test_settings_are_typed_and_checked_before_any_work(vit, tmp_path):
    """The keywords are the request's typed settings: a wrong type is a TypeError naming the
    keyword, a value the setting refuses a ValueError (with the CLI's bound), a missing photo a
    FileNotFoundError — all before a step runs."""
    wrong_types = [
        {"steps": True},
        {"learning_rate": True},
        {"steps": 2.5},
        {"negative": ["static noise", None]},
        {"augment": [3]},
        {"size": (48, 48)},
        {"init": 5},
        {"name": 3},
        {"eager": 1},
        {"seed": "7"},
        {"epsilon": [0.1]},
    ]
    for kwargs in wrong_types:
        key = next(iter(kwargs))
        with pytest.raises(TypeError, match=key):
            clip_rs.generate(vit, ["a dog"], progress=False, **kwargs)
    refused = [
        ({"tv_weight": 1e308}, "tv_weight"),
        ({"negative": ["x"], "negative_weight": 1e308}, "negative_weight"),
        ({"decay": 300, "param": "fft"}, "decay"),
        ({"augment": ["noise:1e308"]}, "augment"),
        ({"augment": ["affine:10,0.1,1e308,1e308"]}, "augment"),
        ({"steps": -1}, "steps"),
        ({"seed": -1}, "seed"),
        ({"name": "-x"}, "name"),
        ({"size": 8}, "size"),
        ({"init": str(PHOTO), "param": "fft"}, "init"),
    ]
    for kwargs, key in refused:
        with pytest.raises(ValueError, match=key):
            clip_rs.generate(vit, ["a dog"], progress=False, **kwargs)
    with pytest.raises(ValueError, match="prompts"):
        clip_rs.generate(vit, ["a dog", "a dog"], progress=False)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        clip_rs.generate(vit, ["a dog"], init=tmp_path / "missing.jpg", progress=False)
    # The forms the CLI takes as text are accepted as Python values too: a size as a number or
    # "WxH", one negative as a string, a budget as a fraction, a path as a pathlib.Path.
    r = clip_rs.generate(
        vit, ["a dog"], steps=1, seed=1, progress=False, size=48, negative="static noise",
        init=PHOTO, epsilon="8/255", model_weight=2,
    )[0]
    assert r.record["size"] == "48x48"
    assert [n["prompt"] for n in r.record["negatives"]] == ["static noise"]
    assert r.record["init"]["epsilon"] == 8 / 255
    assert clip_rs.generate(vit, ["a dog"], steps=1, seed=1, progress=False, size="48x32")[0].record["size"] == "48x32"


def test_bad_input_raises_the_documented_exception_naming_the_argument(vit, tmp_path):
    with pytest.raises(TypeError, match="prompts"):
        clip_rs.generate(vit, 5)
    with pytest.raises(TypeError, match="model_or_models"):
        clip_rs.generate("RN50", ["a dog"])
    with pytest.raises(TypeError, match=r"unknown setting `stepz` \(did you mean `steps`\?\)"):
        clip_rs.generate(vit, ["a dog"], stepz=3)
    with pytest.raises(TypeError, match="device"):
        clip_rs.generate(vit, ["a dog"], device="cuda")
    with pytest.raises(ValueError, match="steps"):
        clip_rs.generate(vit, ["a dog"], steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        clip_rs.generate(vit, ["a dog"], learning_rate=-1)
    with pytest.raises(ValueError, match="preset"):
        clip_rs.generate(vit, ["a dog"], preset="medium")
    with pytest.raises(ValueError, match="77"):
        clip_rs.generate(vit, ["word " * 100], steps=1)
    with pytest.raises(ValueError, match="77"):
        clip_rs.tokenize(["word " * 100])
    with pytest.raises(ValueError, match="epsilon"):
        clip_rs.generate(vit, ["a dog"], epsilon=0.1, steps=1)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(ValueError, match="broken.pt"):
        clip_rs.load(broken, device="cpu")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        clip_rs.load(tmp_path / "missing.pt", device="cpu")
    with pytest.raises(ValueError, match="device"):
        clip_rs.load(TINY["tiny-vit"], device="tpu")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        vit.preprocess(tmp_path / "nope.png")
    with pytest.raises(ValueError, match=r"images: expected a tensor \[N, 3, 32, 32\]"):
        vit.encode_image(torch.zeros(1, 3, 10, 10))
    # A libtorch error: a RuntimeError, not a crash.
    with pytest.raises(RuntimeError):
        vit.encode_image(torch.zeros(1, 3, 32, 32, device="meta"))
    # The interpreter and the module go on, even inside the caller's torch.no_grad().
    assert clip_rs.generate(vit, ["a dog"], steps=1, seed=1, progress=False)[0].record["steps_done"] == 1
    with torch.no_grad():
        assert clip_rs.generate(vit, ["a dog"], steps=3, seed=1, progress=False)[0].record["steps_done"] == 3
        assert not torch.is_grad_enabled()
