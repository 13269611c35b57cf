"""Writes the zero-shot lists that `clip classify --labels imagenet --templates openai` uses
(clip-core/assets/zeroshot/): the 1 000 ImageNet class names and the 80 prompt templates of
OpenAI's "Prompt Engineering for ImageNet" notebook (CLIP repository, MIT), as open_clip (MIT)
ships them in `open_clip/zero_shot_metadata.py` (`IMAGENET_CLASSNAMES`,
`OPENAI_IMAGENET_TEMPLATES`).

- imagenet_classes.txt: one class name per line, in ImageNet's class-index order.
- openai_templates.txt: one template per line, `{}` where the class name goes (each template is a
  `lambda c: f'...{c}...'` in open_clip; it is called with the name `{}`).

Run (no install needed; the module is read, not imported through the package):
    pip download --no-deps open-clip-torch -d /tmp/oc && unzip -o /tmp/oc/open_clip_torch-*.whl \
        open_clip/zero_shot_metadata.py -d /tmp/oc
    python scripts/vendor_zeroshot_lists.py /tmp/oc/open_clip/zero_shot_metadata.py
"""

import os
import runpy
import sys

OUT = os.path.join(os.path.dirname(__file__), "..", "clip-core", "assets", "zeroshot")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    meta = runpy.run_path(sys.argv[1])
    classes = list(meta["IMAGENET_CLASSNAMES"])
    templates = [t("{}") for t in meta["OPENAI_IMAGENET_TEMPLATES"]]
    assert len(classes) == 1000 and len(templates) == 80, (len(classes), len(templates))
    for line in classes + templates:
        assert line and "\n" not in line and "\r" not in line and line == line.strip(), repr(line)
    assert all(t.count("{}") == 1 for t in templates)
    os.makedirs(OUT, exist_ok=True)
    for name, lines in (("imagenet_classes.txt", classes), ("openai_templates.txt", templates)):
        with open(os.path.join(OUT, name), "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(line + "\n" for line in lines))
        print(f"{name}: {len(lines)} lines")


if __name__ == "__main__":
    main()
