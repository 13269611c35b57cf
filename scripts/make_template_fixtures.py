"""What Python's `str.format` makes of zero-shot templates, for clip-core's template tests.

OpenAI's notebook fills a template as `template.format(classname)`; `clip classify --templates
FILE` must give the same text, or refuse a template that Python would not format (or that would
not name the class at all). For each template below this writes, to
clip-core/tests/fixtures/zeroshot/templates.json, either `"formatted"`: `template.format("dog")`,
or `"error"`: the exception Python raises (its type and message).

Run: python3 scripts/make_template_fixtures.py  (any Python 3; no packages)
"""

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "clip-core" / "tests" / "fixtures" / "zeroshot" / "templates.json"

TEMPLATES = [
    "a photo of a {}.",
    "{}",
    "a {} and another {0}",
    "{0} and {0}",
    "{{}} {}",
    "{{{}}}",
    "{{ a {} }}",
    "}}{}{{",
    "{} and {}",
    "{{}}",
    "no placeholder",
    "{0} {}",
    "{} {0}",
    "{1}",
    "{name}",
    "{0.real}",
    "{0[0]}",
    "{!r}",
    "{:>10}",
    "{0!s}",
    "a } b {}",
    "a { b {}",
    "{} {",
    "{} }",
    "{",
    "}",
    "{ }",
    "{00}",
    "{-1}",
    "{ 0}",
]


def main() -> None:
    cases = []
    for template in TEMPLATES:
        try:
            cases.append({"template": template, "formatted": template.format("dog")})
        except Exception as e:  # noqa: BLE001 - the exception is the fixture
            cases.append({"template": template, "error": f"{type(e).__name__}: {e}"})
    OUT.write_text(json.dumps({"name": "dog", "cases": cases}, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
