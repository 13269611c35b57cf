"""Generate clip-core/src/tokenizer/tables.rs: the character data that CLIP's reference tokenizer
takes from Python 3.11, the `regex` module, the `html` module and ftfy 6.3.1, so that the Rust
port uses *their* Unicode versions rather than the Rust crates' ones.

Run with the reference environment: `$PY scripts/make_tokenizer_tables.py`.
"""

import html
import html.entities
import os
import re
import sys

import ftfy
import ftfy.badness
import ftfy.chardata
import regex

try:
    from re import _parser as sre_parse  # Python >= 3.11
    from re import _constants as sre_c
except ImportError:  # pragma: no cover
    import sre_parse
    import sre_constants as sre_c

OUT = os.path.join(os.path.dirname(__file__), "..", "clip-core", "src", "tokenizer", "tables.rs")
MAX = sys.maxunicode + 1
SURROGATES = range(0xD800, 0xE000)


def ranges(pred):
    """Codepoint ranges (inclusive) where pred holds, surrogates excluded (Rust chars can't be)."""
    out = []
    start = None
    for cp in range(MAX):
        ok = cp not in SURROGATES and pred(chr(cp))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, MAX - 1))
    return out


def esc(cp):
    return "\\x{%X}" % cp


def class_body(rs):
    return "".join(esc(a) if a == b else esc(a) + "-" + esc(b) for a, b in rs)


def rust_str(s):
    if all(0x20 <= ord(c) < 0x7F for c in s) and '"#' not in s and "\\" in s:
        return 'r#"' + s + '"#'
    return '"' + "".join(c if (0x20 <= ord(c) < 0x7F and c not in '"\\') else "\\u{%X}" % ord(c) for c in s) + '"'


# --- simple_tokenizer.py: `regex` module classes under re.IGNORECASE, `str.isspace`, `str.lower`
print("classes from the regex module ...", file=sys.stderr)
I = regex.IGNORECASE
letter = regex.compile(r"[\p{L}]", I)
number = regex.compile(r"[\p{N}]", I)
other = regex.compile(r"[^\s\p{L}\p{N}]", I)
space_rx = regex.compile(r"\s")
CLASSES = {
    "TOK_LETTER": ranges(lambda c: letter.fullmatch(c) is not None),
    "TOK_NUMBER": ranges(lambda c: number.fullmatch(c) is not None),
    "TOK_OTHER": ranges(lambda c: other.fullmatch(c) is not None),
    "TOK_SPACE": ranges(lambda c: space_rx.fullmatch(c) is not None),
    "PY_ISSPACE": ranges(lambda c: c.isspace()),
    # stdlib `re` (ftfy's badness regex) \s and \w
    "RE_SPACE": ranges(lambda c: re.fullmatch(r"\s", c) is not None),
    "RE_WORD": ranges(lambda c: re.fullmatch(r"\w", c) is not None),
}
# Characters that match each literal letter of the tokenizer pattern under IGNORECASE.
pattern_letters = sorted(set("startoftext" + "endoftext" + "strevmld"))
FOLD = {
    ch: [c for c in map(chr, range(MAX)) if ord(c) not in SURROGATES and regex.fullmatch(ch, c, I)]
    for ch in pattern_letters
}
# Characters unassigned in Python's Unicode: NFC leaves them alone there, while a newer Unicode
# (the unicode-normalization crate's) may give them combining classes or compositions.
UNASSIGNED = ranges(lambda c: __import__("unicodedata").category(c) == "Cn")
LOWER = [(cp, chr(cp).lower()) for cp in range(MAX) if cp not in SURROGATES and chr(cp).lower() != chr(cp)]


# --- ftfy regexes, translated from the parsed pattern to Rust `regex` syntax.
def emit(sub, cats):
    out = []
    for op, av in sub:
        if op is sre_c.LITERAL:
            out.append(esc(av))
        elif op is sre_c.NOT_LITERAL:
            out.append("[^" + esc(av) + "]")
        elif op is sre_c.ANY:
            out.append(".")
        elif op is sre_c.IN:
            neg = ""
            body = ""
            for iop, iav in av:
                if iop is sre_c.NEGATE:
                    neg = "^"
                elif iop is sre_c.LITERAL:
                    body += esc(iav)
                elif iop is sre_c.RANGE:
                    body += esc(iav[0]) + "-" + esc(iav[1])
                elif iop is sre_c.CATEGORY:
                    body += cats[iav]
                else:
                    raise ValueError(iop)
            out.append("[" + neg + body + "]")
        elif op is sre_c.CATEGORY:
            out.append("[" + cats[av] + "]")
        elif op is sre_c.BRANCH:
            out.append("(?:" + "|".join(emit(s, cats) for s in av[1]) + ")")
        elif op is sre_c.SUBPATTERN:
            out.append("(?:" + emit(av[-1], cats) + ")")
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            lo, hi, s = av
            hi = "" if hi is sre_c.MAXREPEAT else str(hi)
            lazy = "?" if op is sre_c.MIN_REPEAT else ""
            out.append("(?:" + emit(s, cats) + "){%d,%s}%s" % (lo, hi, lazy))
        elif op is sre_c.AT:
            if av is sre_c.AT_BEGINNING:
                out.append("^")
            else:
                raise ValueError(av)
        elif op is sre_c.ASSERT_NOT:
            pass  # the lookbehind of UTF8_DETECTOR_RE: checked by hand in Rust
        else:
            raise ValueError(op)
    return "".join(out)


CATS = {
    sre_c.CATEGORY_UNI_SPACE: class_body(CLASSES["RE_SPACE"]),
    sre_c.CATEGORY_UNI_WORD: class_body(CLASSES["RE_WORD"]),
}
CATS[sre_c.CATEGORY_SPACE] = CATS[sre_c.CATEGORY_UNI_SPACE]  # str patterns are Unicode
CATS[sre_c.CATEGORY_WORD] = CATS[sre_c.CATEGORY_UNI_WORD]


def translate(compiled):
    parsed = sre_parse.parse(compiled.pattern, compiled.flags)
    return emit(parsed, CATS)


# check the assumption on the one lookbehind we drop
assert "(?<!" in ftfy.chardata.UTF8_DETECTOR_RE.pattern.replace(" ", "")
badness = translate(ftfy.badness.BADNESS_RE)
detector = translate(ftfy.chardata.UTF8_DETECTOR_RE)
strict = "[" + "".join(
    esc(ord(c)) if c != "-" else "-" for c in ftfy.chardata.UTF8_CLUES["utf8_continuation_strict"]
) + "]"

# --- single-byte codecs: 256-entry decoding tables (None = undefined byte)
ENCODINGS = ftfy.chardata.CHARMAP_ENCODINGS + ["windows-1252"]
DECODE = {}
for enc in ENCODINGS:
    table = []
    for b in range(256):
        try:
            table.append(bytes([b]).decode(enc))
        except UnicodeDecodeError:
            table.append(None)
    DECODE[enc] = table
    # check the encoder is the inverse of the table for every char the possibility regex allows
    if enc in ftfy.chardata.ENCODING_REGEXES:
        allowed = [c for c in table[0x80:] + [table[0x1A]] if c is not None] + [
            chr(i) for i in list(range(0, 0x1A)) + list(range(0x1B, 0x80))
        ]
        for c in allowed:
            assert ftfy.chardata.possible_encoding(c, enc), (enc, c)
            assert table[c.encode(enc)[0]] == c, (enc, c)
        assert not ftfy.chardata.possible_encoding(chr(0x1A), enc) or table[0x1A] == chr(0x1A)

# --- html.unescape and ftfy's HTML entity table
HTML5 = sorted(html.entities.html5.items())
FTFY_ENTITIES = sorted(ftfy.chardata.HTML_ENTITIES.items())
INVALID_CHARREFS = sorted(html._invalid_charrefs.items())
INVALID_CODEPOINTS = sorted(html._invalid_codepoints)

WIDTH = sorted(ftfy.chardata.WIDTH_MAP.items())
LIGATURES = sorted(ftfy.chardata.LIGATURES.items())
CONTROL = sorted(ftfy.chardata.CONTROL_CHARS)

with open(OUT, "w", encoding="utf-8") as f:
    w = f.write
    w("//! Character data of the reference tokenizer's Python environment (Python %s, Unicode %s,\n"
      % (sys.version.split()[0], __import__("unicodedata").unidata_version))
    w("//! `regex` %s, ftfy %s). Generated by `scripts/make_tokenizer_tables.py`; do not edit.\n\n"
      % (regex.__version__, ftfy.__version__))
    for name, rs in CLASSES.items():
        if name.startswith("RE_"):
            continue  # inlined in BADNESS
        w("pub const %s: &str = %s;\n" % (name, rust_str(class_body(rs))))
    w("/// Characters equal to each ASCII letter of the tokenizer pattern under `regex.IGNORECASE`.\n")
    w("pub const FOLD: &[(char, &str)] = &[\n")
    for ch, cs in FOLD.items():
        w("    (%r, %s),\n" % (ch, rust_str("".join(cs))))
    w("];\n")
    w("/// Codepoint ranges unassigned in Python's Unicode (`unicodedata.category(c) == 'Cn'`).\n")
    w("pub const UNASSIGNED: &[(u32, u32)] = &[\n")
    for a, b in UNASSIGNED:
        w("    (0x%X, 0x%X),\n" % (a, b))
    w("];\n")
    w("/// `str.lower()` of every character it changes.\n")
    w("pub const LOWER: &[(char, &str)] = &[\n")
    for cp, s in LOWER:
        w("    ('\\u{%X}', %s),\n" % (cp, rust_str(s)))
    w("];\n")
    w("/// ftfy's `BADNESS_RE`.\n")
    w("pub const BADNESS: &str = %s;\n" % rust_str(badness))
    w("/// ftfy's `UTF8_DETECTOR_RE` without its lookbehind, which is [`UTF8_CONTINUATION_STRICT`].\n")
    w("pub const UTF8_DETECTOR: &str = %s;\n" % rust_str(detector))
    w("pub const UTF8_CONTINUATION_STRICT: &str = %s;\n" % rust_str(strict))
    w("/// Decoding tables of the single-byte codecs; `None`: the byte is undefined.\n")
    w("pub const CODECS: &[(&str, [Option<char>; 256])] = &[\n")
    for enc in ENCODINGS:
        w("    (%s, [%s]),\n" % (rust_str(enc), ", ".join("None" if c is None else "Some('\\u{%X}')" % ord(c) for c in DECODE[enc])))
    w("];\n")
    w("/// `html.entities.html5`.\n")
    w("pub const HTML5: &[(&str, &str)] = &[\n")
    for k, v in HTML5:
        w("    (%s, %s),\n" % (rust_str(k), rust_str(v)))
    w("];\n")
    w("/// ftfy's `HTML_ENTITIES`.\n")
    w("pub const FTFY_ENTITIES: &[(&str, &str)] = &[\n")
    for k, v in FTFY_ENTITIES:
        w("    (%s, %s),\n" % (rust_str(k), rust_str(v)))
    w("];\n")
    w("/// `html._invalid_charrefs`.\n")
    w("pub const INVALID_CHARREFS: &[(u32, char)] = &[\n")
    for k, v in INVALID_CHARREFS:
        w("    (0x%X, '\\u{%X}'),\n" % (k, ord(v)))
    w("];\n")
    w("/// `html._invalid_codepoints`.\n")
    w("pub const INVALID_CODEPOINTS: &[u32] = &[%s];\n" % ", ".join("0x%X" % c for c in INVALID_CODEPOINTS))
    w("/// ftfy's `WIDTH_MAP`.\n")
    w("pub const WIDTH: &[(char, &str)] = &[\n")
    for k, v in WIDTH:
        w("    ('\\u{%X}', %s),\n" % (k, rust_str(v)))
    w("];\n")
    w("/// ftfy's `LIGATURES`.\n")
    w("pub const LIGATURES: &[(char, &str)] = &[\n")
    for k, v in LIGATURES:
        w("    ('\\u{%X}', %s),\n" % (k, rust_str(v)))
    w("];\n")
    w("/// ftfy's `CONTROL_CHARS`.\n")
    w("pub const CONTROL: &[u32] = &[%s];\n" % ", ".join("0x%X" % c for c in CONTROL))
print("wrote", OUT, file=sys.stderr)
