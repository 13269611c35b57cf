"""clip_rs: CLIP-guided image optimisation on the clip-rs engine (Rust, libtorch), from Python.

The same engine, numbers and files as the ``clip`` command-line tool, with torch tensors passed
without copies::

    import clip_rs
    model = clip_rs.load("RN50")                       # or a checkpoint path; device="auto"
    results = clip_rs.generate(model, ["A cute golden retriever"], preset="constrained", steps=2000)
    results[0].pil()                                   # the image; .similarity, .curve, .record
    results[0].save("results")                         # the CLI's PNG, JSON and CSV

``generate`` takes every ``clip generate`` setting as a keyword (``learning_rate=0.1``,
``augment=["jitter:8", "flip:0.5"]``, ``negative=["blurry"]``, ``init="photo.jpg"``, ``seed=1``…),
with the same defaults and checks. Errors are ``ValueError`` (bad arguments), ``FileNotFoundError``,
``KeyboardInterrupt`` or ``RuntimeError`` (libtorch), with the CLI's messages.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Union

# torch first: the extension links against the libtorch that `import torch` loads.
import torch

from . import _native
from ._native import Model, tokenize as _tokenize

__version__ = _native.__version__

__all__ = [
    "Model",
    "Result",
    "load",
    "tokenize",
    "generate",
    "score",
    "classify",
    "compare",
    "settings",
]

ImageLike = Union[str, os.PathLike, "PIL.Image.Image", torch.Tensor]  # noqa: F821


def load(name_or_path: Union[str, os.PathLike], device: str = "auto", precision: Optional[str] = None) -> Model:
    """A CLIP model: a released name (``RN50``, ``ViT-B/32``, ``ViT-L/14``, …; downloaded once into
    ``~/.cache/clip`` as the CLI does) or a checkpoint file (OpenAI's ``.pt``, a state dict, or
    safetensors). ``device``: ``"auto"``, ``"cpu"`` or ``"cuda"``; ``precision``: ``"fp16"`` or
    ``"fp32"`` (default fp16 on CUDA, fp32 on the CPU, as ``clip.load``)."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path: expected a model name or a path, not {type(name_or_path).__name__}")
    if not isinstance(device, str):
        raise TypeError(f"device: expected a string, not {type(device).__name__}")
    return _native.load(os.fspath(name_or_path), device, precision)


def tokenize(texts: Union[str, Sequence[str]], truncate: bool = False) -> torch.Tensor:
    """``clip.tokenize``: a LongTensor [N, 77]. A text over 77 tokens is a ValueError naming it,
    unless ``truncate`` keeps its first 76 tokens and the end token."""
    texts = _texts(texts, "texts")
    return _tokenize(texts, bool(truncate))


def _texts(texts, name: str) -> List[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Iterable):
        raise TypeError(f"{name}: expected a string or a list of strings, not {type(texts).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}]: expected a string, not {type(t).__name__}")
    return texts


def _preprocess(model: Model, image: ImageLike) -> torch.Tensor:
    """CLIP's preprocessing of a path or a PIL image: [3, R, R], float, on the CPU."""
    if isinstance(image, (str, os.PathLike)):
        return model.preprocess_path(os.fspath(image))
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        rgb = image.convert("RGB")
        return model.preprocess_rgb(rgb.tobytes(), rgb.width, rgb.height)
    raise TypeError(f"expected an image path or a PIL image, not {type(image).__name__}")


def _preprocess_method(self: Model, image: ImageLike) -> torch.Tensor:
    """CLIP's preprocessing (resize, centre crop, normalisation) of an image path or a PIL image:
    a float tensor [3, R, R] on the CPU, ready for ``encode_image`` once stacked."""
    return _preprocess(self, image)


Model.preprocess = _preprocess_method  # type: ignore[attr-defined]


def _images(model: Model, images) -> torch.Tensor:
    """A batch for ``encode_image`` from paths, PIL images, preprocessed [3, R, R] tensors or one
    [N, 3, R, R] tensor."""
    if isinstance(images, torch.Tensor):
        return images if images.dim() == 4 else images.unsqueeze(0)
    if isinstance(images, (str, os.PathLike)) or not isinstance(images, Iterable):
        images = [images]
    batch = []
    for item in images:
        batch.append(item if isinstance(item, torch.Tensor) else _preprocess(model, item))
    if not batch:
        raise ValueError("images: no image given")
    return torch.stack(batch)


class Result:
    """One prompt's result of :func:`generate`.

    ``image`` (float tensor [3, H, W] in [0, 1], a view of the engine's result — no copy),
    ``similarity`` (the saved PNG re-scored through CLIP's preprocessing, the seed's "Final
    Similarity"), ``initial_similarity``, ``curve`` (steps × columns, as the CSV; ``columns``
    names them), ``record`` (the JSON record as a dict), ``interrupted``; ``pil()`` and
    ``save(dir)``."""

    def __init__(self, native, keep_alive):
        self._native = native
        self._keep_alive = keep_alive
        self.image: torch.Tensor = native.image
        self.record: dict = json.loads(native.record)
        self.prompt: str = self.record["prompt"]
        self.similarity: float = self.record["final_similarity"]
        self.initial_similarity: float = self.record["initial_similarity"]
        self.interrupted: bool = self.record["interrupted"]
        with open(native.csv, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        self.columns: List[str] = rows[0]
        self.curve: torch.Tensor = torch.tensor(
            [[float(v) if v != "" else float("nan") for v in row] for row in rows[1:]], dtype=torch.float64
        ).reshape(len(rows) - 1, len(self.columns))

    @property
    def png(self) -> bytes:
        """The PNG's bytes, exactly what ``save`` writes (and ``clip generate`` writes)."""
        with open(self._native.png, "rb") as f:
            return f.read()

    def pil(self):
        """The saved PNG as a PIL image (what the similarity was measured on)."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.png))
        image.load()
        return image

    def save(self, directory: Union[str, os.PathLike]) -> Path:
        """Writes the PNG, JSON and CSV (and the start image of a photo edit) into
        ``directory/<model>/``, as ``clip generate --out directory`` does; returns the PNG's path."""
        source = Path(self._native.png)
        target = Path(directory) / source.parent.name
        target.mkdir(parents=True, exist_ok=True)
        stem = source.name[: -len(".png")]
        written = None
        for path in source.parent.iterdir():
            if path.name.startswith(stem + ".") and not path.name.startswith("."):
                destination = target / path.name
                shutil.copyfile(path, destination)
                if path == source:
                    written = destination
        return written

    def _repr_png_(self) -> bytes:
        return self.png

    def __repr__(self) -> str:
        mark = ", interrupted" if self.interrupted else ""
        return (
            f"clip_rs.Result({self.prompt!r}, model={self.record['model']!r}, mode={self.record['mode']!r}, "
            f"similarity={self.similarity:.4f} (from {self.initial_similarity:.4f}){mark})"
        )


def _install_sigint_hook() -> None:
    """Ctrl-C is delivered to the main thread only; a ``generate`` running in another thread would
    not see it. Python's default SIGINT handler is wrapped (only that one, only from the main
    thread) so that Ctrl-C first tells every running ``generate`` to stop at its next read-back —
    it returns the images reached, marked interrupted — then raises KeyboardInterrupt as before."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return

    def handler(signum, frame):
        _native.interrupt_runs()
        return signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, handler)


_install_sigint_hook()


def settings() -> List[str]:
    """The keyword arguments :func:`generate` takes (``clip generate``'s settings)."""
    return list(_native.generate_settings())


def _tqdm_callback():
    """A tqdm bar over the steps (created now, so its rate is right; its total set at the first
    read-back), or None when tqdm is not installed. Widgets in notebooks only where ipywidgets is."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        try:
            from tqdm import tqdm
        except ImportError:
            return None, None
    bar = tqdm(total=None, unit="step", leave=False)

    def update(step: int, steps: int, similarities):
        if bar.total != steps:
            bar.total = steps
        bar.n = step
        bar.set_postfix_str("similarity " + " ".join(f"{s:.4f}" for s in similarities), refresh=False)
        bar.refresh()

    return update, bar.close


def generate(
    model_or_models: Union[Model, Sequence[Model]],
    prompts: Union[str, Sequence[str]],
    preset: str = "constrained",
    *,
    callback: Optional[Callable[[int, int, List[float]], None]] = None,
    progress: bool = True,
    **settings,
) -> List[Result]:
    """Optimises one image per prompt until the model (or the ensemble of models, weighted by
    ``model_weight=[...]``) rates it as the prompt — ``clip generate`` from Python.

    ``preset``: ``"constrained"`` (RandomAffine + flip, TV 1e-4, keep the best; the default) or
    ``"unconstrained"``. Every other ``clip generate`` setting is a keyword with the same default:
    ``steps`` (10 000), ``learning_rate`` (0.05), ``param``, ``decay``, ``augment`` (a list of
    specs; ``["none"]`` clears the preset's), ``tv_weight``, ``keep``, ``size``, ``seed``
    (default: random, recorded), ``negative`` (a list), ``negative_weight``, ``model_weight``,
    ``init`` (a photo), ``epsilon``, ``name``, ``eager`` — see :func:`settings`.

    ``callback(step, steps, similarities)`` is called at every read-back (every 10 steps) with
    the GIL held; by default a tqdm bar when tqdm is importable (``progress=False``: none). The
    GIL is released while the engine runs. Ctrl-C (KeyboardInterrupt, the notebook's interrupt)
    stops at the next read-back and returns the results reached, marked ``interrupted``.
    """
    models = [model_or_models] if isinstance(model_or_models, Model) else list(model_or_models)
    for i, m in enumerate(models):
        if not isinstance(m, Model):
            raise TypeError(
                f"model_or_models[{i}]: expected a model from clip_rs.load, not {type(m).__name__}"
            )
    prompts = _texts(prompts, "prompts")
    if not isinstance(preset, str):
        raise TypeError(f"preset: expected a string, not {type(preset).__name__}")
    close = None
    if callback is None and progress:
        callback, close = _tqdm_callback()
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a function, not {type(callback).__name__}")
    out = tempfile.TemporaryDirectory(prefix="clip_rs-")
    try:
        native = _native.generate(models, prompts, out.name, callback, preset=preset, **settings)
    except BaseException:
        out.cleanup()
        raise
    finally:
        if close is not None:
            close()
    return [Result(r, out) for r in native]


def score(model: Model, images, texts: Union[str, Sequence[str]]) -> torch.Tensor:
    """The cosine similarity of each image with each text: a float tensor [images, texts] —
    ``clip score`` for many at once. Images: paths, PIL images or preprocessed tensors."""
    if not isinstance(model, Model):
        raise TypeError(f"model: expected a model from clip_rs.load, not {type(model).__name__}")
    texts = _texts(texts, "texts")
    image_features = model.encode_image(_images(model, images)).float()
    text_features = model.encode_text(texts).float()
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    return (image_features @ text_features.T).cpu()


def classify(
    model: Model,
    images,
    labels: Union[str, os.PathLike] = "imagenet",
    templates: Union[str, os.PathLike] = "openai",
    top: int = 5,
    progress: Optional[Callable[[int, int], None]] = None,
) -> List[List[dict]]:
    """Zero-shot classification as ``clip classify``: per image, its ``top`` most probable classes
    (``{"index", "label", "probability"}``). ``labels``: ``"imagenet"`` or a file of class names;
    ``templates``: ``"openai"`` or a file of templates with ``{}``. The class weights are cached
    as the CLI caches them."""
    if not isinstance(model, Model):
        raise TypeError(f"model: expected a model from clip_rs.load, not {type(model).__name__}")
    if not isinstance(top, int) or isinstance(top, bool):
        raise TypeError(f"top: expected an integer, not {type(top).__name__}")
    return _native.classify(model, _images(model, images), os.fspath(labels), os.fspath(templates), top, progress)


def compare(results_dir: Union[str, os.PathLike], **options) -> dict:
    """``clip compare`` on a results directory: scores every result under every model, writes the
    report there, and returns its files by name (``report.md``, ``transfer.csv``, …). Options are
    ``clip compare``'s flags: ``models=["RN50", "ViT-B/32"]``, ``weights=["RN50=rn50.pt"]``,
    ``real=["dog.jpg=A cute golden retriever"]``, ``probes="jpeg:75,blur:1"``, ``zero_shot="none"``,
    ``device``, ``batch_size``, ``cell_size``. ``weights`` may also be a dict ``{"RN50": path}``,
    ``probes`` a list. A value of the wrong type is a ``TypeError``, a value the flag refuses a
    ``ValueError`` with its message; an unknown keyword is a ``TypeError`` naming the nearest."""
    weights = options.get("weights")
    if isinstance(weights, dict):
        options["weights"] = [f"{name}={os.fspath(path)}" for name, path in weights.items()]
    written = _native.compare(os.fspath(results_dir), **options)
    return {Path(p).name: Path(p) for p in written}
