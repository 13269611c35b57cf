"""Generate clip-core/tests/fixtures/tokenizer_corpus.jsonl: texts and the ids OpenAI's reference
gives them, for clip-app/tests/tokenizer.rs.

Reference calls, per text:
    clip.tokenize(text)                 # truncate=False: ids, or RuntimeError "too long"
    clip.tokenize(text, truncate=True)  # always ids
    whitespace_clean(basic_clean(text)).lower()   # the cleaned text encode() splits

Each line: {"text", "clean", "n_tokens" (ids with both markers, before truncation),
"ids" (truncate=False, up to the last <|endoftext|>; null when the reference raises),
"ids_truncate" (truncate=True, same trimming)}. Padding zeros are implied up to 77.

Run with the reference environment: `$PY scripts/make_tokenizer_corpus.py`.
"""

import json
import os
import random

import clip
import torch
from clip.simple_tokenizer import basic_clean, whitespace_clean

OUT = os.path.join(os.path.dirname(__file__), "..", "clip-core", "tests", "fixtures", "tokenizer_corpus.jsonl")
rng = random.Random(20240601)

texts = []


def add(*items):
    texts.extend(items)


# --- hand-written prompts and edge cases
PROMPTS = """a photo of a dog
a photo of a cat
A PHOTO OF A CAT
an oil painting of a lighthouse at dusk, trending on artstation
a watercolor of a fox in the snow
a 3D render of a glass teapot, octane render, 8k
the Eiffel Tower at night
a portrait of Ada Lovelace in the style of Vermeer
an astronaut riding a horse on mars
a bowl of ramen with a soft-boiled egg
a cyberpunk city street in the rain, neon lights
a minimalist logo of a mountain
pixel art of a castle
a blurry photo of a person
a close-up photo of a tiny bee on a sunflower
a sketch of a cathedral, pencil on paper
a diagram of the human heart
the word "hello" written in the sand
a sign that says 'STOP'
an aerial view of a river delta
Van Gogh's Starry Night
a cat's toy
it's a beautiful day
IT'S A BEAUTIFUL DAY
we'll see, you're right, they've gone, I'm here, I'd go, he'll come, she's fine
don't won't can't shouldn't isn't
rock'n'roll at 5 o'clock
'tis the season
the dog's bone's color
'S 'T 'RE 'VE 'M 'LL 'D
''''
a photo of the number 42
3.14159 2.71828 1.41421
1,000,000 dollars
2024-01-01T12:34:56Z
$5.99 €4,50 £3 ¥100 ₹20
50% off!!!
#hashtag @user
http://example.com/path?query=1&other=two#frag
user.name+tag@example.co.uk
C:\\Users\\name\\Pictures\\photo.jpg
def f(x): return x**2 + 1
x = [1, 2, 3]; y = {"a": 1}
e=mc^2
A+B=C
(parentheses) [brackets] {braces} <angles>
...?!?!...
---
___
***bold*** _italic_ ~~strike~~
!!!
!
?
.
,
0
9
10
1234567890
a1b2c3
H2O CO2 C6H12O6
version 1.2.3-beta+build.4
café
naïve façade jalapeño piñata
Crème brûlée à la mode
Ærøskøbing, Øresund, Åland
straße STRASSE Maß
Ελληνικά γράμματα
ΟΔΥΣΣΕΥΣ
ΣΑΣ ΣΑΣ. Σ
ΌΣΟΣ Σ1 ΑΣ-Σ
Русский текст, привет мир
Україна, Київ
עברית שלום
العربية مرحبا
हिन्दी नमस्ते
ภาษาไทย สวัสดี
日本語のテキスト、こんにちは世界
東京タワーの写真
中文文本，你好世界
한국어 텍스트, 안녕하세요
Türkçe İstanbul ıı İİ
Tiếng Việt có dấu
Polski: zażółć gęślą jaźń
Čeština: příliš žluťoučký kůň
Íslenska: þetta er ðe
Esperanto: ĉu vi ŝatas ĝin?
ﬁnancial ﬂower ﬀ ﬃ ﬄ ﬅ ﬆ
Ĳssel ĳs Ǆ ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ ŉ
ＡＢＣ　ａｂｃ　１２３！？
ｈｅｌｌｏ　ｗｏｒｌｄ
ｶﾀｶﾅ ﾊﾝｶｸ
“smart quotes” and ‘single quotes’
it’s don’t we’ll I’m you’re they’ve I’d
„German“ «French» ‹single›
‛reversed’ ‟double reversed”
ʼokina Hawaiʻi
— em dash – en dash ‐ hyphen − minus
… ellipsis • bullet · middle dot
© ® ™ § ¶ † ‡ ‰ ° ± × ÷ µ
½ ¼ ¾ ² ³ ¹ ⁴ ₅ ⅓ ⅛
Ⅰ Ⅱ Ⅲ Ⅳ ⅰ ⅱ ⅲ ⅳ ⅻ
① ② ③ ⑴ ⒜ Ⓐ ⓐ
→ ← ↑ ↓ ⇒ ⇐ ↔
∑ ∏ ∫ √ ∞ ≈ ≠ ≤ ≥ ∂ ∆
♠ ♣ ♥ ♦ ★ ☆ ☀ ☁ ☂ ☃
🐶 a dog emoji 🐱
😀😃😄😁😆😅😂🤣
👍🏽 👩‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 🇯🇵
❤️ ❤ ♥️
🎉🎊 party time 🥳
🦄 unicorn 🌈 rainbow
𝐛𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 𝔣𝔯𝔞𝔨𝔱𝔲𝔯 𝕕𝕠𝕦𝕓𝕝𝕖
ᴬᴮᶜ ᵃᵇᶜ
a\u00a0non-breaking\u00a0space
soft\u00adhyphen
zero\u200bwidth\u200cjoiner\u200d
word\u2060joiner
bom\ufeffinside
\ufeffleading bom
combining e\u0301 vs é
a\u0308 o\u0308 u\u0308
\u0345 ypogegrammeni ᾳ ᾼ
Kelvin \u212a sign and long \u017f s
it'\u017f
<|startoftext|>
<|endoftext|>
a photo <|endoftext|> of a dog
<|startoftext|>a cat<|endoftext|>
<|ENDOFTEXT|>
<|StartOfText|> mixed case
!<|endoftext|>
x<|endoftext|>y
<|endoftext|><|endoftext|><|endoftext|>
<|\u017ftartoftext|>
<|startoftext|
<|endoftext>
< |endoftext|>
&amp;
&lt;b&gt;bold&lt;/b&gt;
&amp;amp;
&amp;lt;
&amp;amp;amp;
&eacute;t&eacute;
&eacute t&eacute
&EACUTE; &NTILDE; &AMP;
&#233; &#xe9; &#XE9;
&#128512; &#x1F600;
&#0; &#128; &#150; &#xD800; &#x110000; &#99999999999;
&#65 &#x41
&nbsp;&nbsp;spaces
&hellip; &mdash; &ndash; &rsquo; &ldquo; &rdquo;
&notit; &notin; &not
&copy2024 &copy;2024
&unknownentity;
AT&T and R&D
Fish & Chips
<b>bold</b> &amp; &eacute;
x < y &amp; z
a > b &lt; c
<a href="x">link</a>
\x1b[31mred text\x1b[0m
\x1b[1;32mgreen\x1b[m
control\x01chars\x02here\x7f
bell\x07 backspace\x08 vt\x0b ff\x0c
c1\x80\x85\x9f controls
\x85next line
line one\nline two
line one\r\nline two
carriage\rreturn
para\u2029graph line\u2028separator
tab\tseparated\tvalues
   leading and trailing spaces   
multiple     spaces    between
\t\n\r mixed \t\n whitespace \r\n
\u3000ideographic\u3000space
\u2002en\u2003em\u2009thin\u200ahair spaces
\x1c\x1d\x1e\x1f separators
""".split("\n")
for p in PROMPTS:
    add(p.encode("latin-1", "backslashreplace").decode("unicode-escape") if "\\" in p and not p.startswith("C:") else p)

add("", " ", "  ", "\n", "\t", "\r\n", "\u3000", "\u00a0", "\x00", "\ufeff", "\u200b", "&nbsp;", "\n\n\n")

# --- mojibake: UTF-8 text decoded with the wrong single-byte codec, once or twice
MOJI_WORDS = [
    "café", "naïve", "résumé", "jalapeño", "Zürich", "Ærøskøbing", "façade", "crème brûlée",
    "São Paulo", "Málaga", "smörgåsbord", "piñata", "Łódź", "Škoda", "Dvořák", "Ελλάδα",
    "Москва", "don’t", "“quoted”", "10 €", "— dash", "…", "™", "©2024", "°C", "½ cup",
    "emoji 🐶", "日本", "à la carte", "voilà", "déjà vu", "Größe", "À bientôt", "Ça va",
]
for w in MOJI_WORDS:
    for enc in ["latin-1", "cp1252", "cp1251", "cp1250", "mac_roman", "cp437", "iso-8859-2", "cp1253"]:
        try:
            m = w.encode("utf-8").decode(enc)
        except UnicodeDecodeError:
            continue
        add(m, f"a photo of {m}")
    try:
        add(w.encode("utf-8").decode("cp1252").encode("utf-8").decode("cp1252"))
    except UnicodeDecodeError:
        pass
    try:
        add(w.encode("utf-8").decode("latin-1").encode("utf-8").decode("latin-1"))
    except UnicodeDecodeError:
        pass
add("cafÃ©", "CafÃ© au lait", "Ã  la carte", "voilÃ ", "Ã\xa0 la", "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
    "Ã¢â‚¬Å“quotesÃ¢â‚¬\x9d", "â€œmismatchedâ€\x9d quotes", "Iâ€™m", "âœ”ï¸ done", "ðŸ˜€ smile",
    "mixed: café and cafÃ© together", "Ã‰cole", "ÐŸÑ€Ð¸Ð²ÐµÑ‚", "Ã¼ber", "schÃ¶n", "Ã", "Ã©", "Â ", "Â£5",
    "Ã\xa0", "â€", "Ã¢", "¯\\_(ツ)_/¯", "(╯°□°）╯︵ ┻━┻", "ಠ_ಠ", "ʕ•ᴥ•ʔ", "├──┤ │ └─┘", "░▒▓█",
    "sÃ£o paulo", "MÃ¼nchen and MÃ¼nchen", "Ã±", "Ã¡ Ã© Ã­ Ã³ Ãº", "naÃ¯ve cafÃ©\nsecond line", "cafÃ©<br>")

# --- combinatorial mixes of subjects, styles, modifiers and decorations
SUBJECTS = ["a dog", "two cats", "the moon", "an old man", "a red car", "a bowl of fruit", "a robot",
            "a tiny house", "the ocean", "a dragon", "a café", "Ελληνικό νησί", "富士山", "une forêt"]
STYLES = ["", "a photo of", "a painting of", "a sketch of", "an illustration of", "a 3D render of",
          "a close-up of", "a blurry photo of"]
MODS = ["", ", 4k", ", trending on artstation", " at sunset", " in the style of Monet",
        " (high quality)", ", f/1.8, 50mm", " — dramatic lighting", "!!!", " #art", " 🎨"]
DECOR = [lambda s: s, str.upper, str.title, lambda s: f"“{s}”", lambda s: f"  {s}\t\n",
         lambda s: s.replace(" ", "  "), lambda s: s.replace(" ", "\u00a0"), lambda s: f"&quot;{s}&quot;",
         lambda s: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)]
for _ in range(330):
    s = " ".join(x for x in [rng.choice(STYLES), rng.choice(SUBJECTS)] if x) + rng.choice(MODS)
    add(rng.choice(DECOR)(s))

# --- random strings from varied Unicode blocks (and ASCII), fixed seed
BLOCKS = [
    (0x20, 0x7E), (0x00, 0x1F), (0x7F, 0x9F), (0xA0, 0xFF), (0x100, 0x17F), (0x180, 0x24F),
    (0x250, 0x2AF), (0x2B0, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x530, 0x58F),
    (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0x980, 0x9FF), (0xE00, 0xE7F), (0x10A0, 0x10FF),
    (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x1F00, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x209F),
    (0x20A0, 0x20CF), (0x2100, 0x214F), (0x2150, 0x218F), (0x2190, 0x21FF), (0x2200, 0x22FF),
    (0x2460, 0x24FF), (0x2500, 0x257F), (0x2580, 0x259F), (0x25A0, 0x25FF), (0x2600, 0x26FF),
    (0x2700, 0x27BF), (0x3000, 0x303F), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3), (0xE000, 0xE0FF), (0xFB00, 0xFB4F), (0xFE00, 0xFE0F), (0xFE30, 0xFE4F),
    (0xFF00, 0xFFEF), (0xFFF0, 0xFFFD), (0x1D400, 0x1D7FF), (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F),
    (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF), (0xE0000, 0xE007F),
]


def random_text():
    blocks = rng.sample(BLOCKS, rng.randint(1, 3))
    out = []
    for _ in range(rng.randint(1, 24)):
        r = rng.random()
        if r < 0.15:
            out.append(" ")
        elif r < 0.3:
            out.append(rng.choice(["dog", "the", "a", "photo", "'s", "&amp;", "é", "Ã©", "\n", "<", "&"]))
        else:
            lo, hi = rng.choice(blocks)
            out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


for _ in range(420):
    add(random_text())

# random printable ASCII
for _ in range(60):
    add("".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(1, 40))))

# random Latin-1 / cp1252-range text: the characters ftfy's mojibake heuristic looks at
LATINISH = "".join(map(chr, range(0xA0, 0x100))) + "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ" + "abcdeABCDE  "
for _ in range(120):
    add("".join(rng.choice(LATINISH) for _ in range(rng.randint(1, 12))))

# --- lengths around the context limit (77 ids with both markers)
for n in range(70, 81):
    add(" ".join(["a"] * n))
    add(" ".join(["photo"] * n))
add("a " * 300, "日本語" * 40, "🐶" * 40, "!" * 200, "word, " * 40, "supercalifragilisticexpialidocious " * 12,
    " ".join(SUBJECTS) * 3, "a very long prompt " + "with many details, " * 20 + "the end")
for _ in range(20):
    add(" ".join(rng.choice(SUBJECTS + STYLES[1:]) for _ in range(rng.randint(15, 40))))

# de-duplicate, keeping order; no lone surrogates (Rust strings cannot hold them)
seen = set()
corpus = []
for t in texts:
    if t not in seen and not any(0xD800 <= ord(c) <= 0xDFFF for c in t):
        seen.add(t)
        corpus.append(t)


def trim(ids):
    ids = ids.tolist()
    last = max(i for i, v in enumerate(ids) if v == 49407)
    return ids[: last + 1]


eot = 49407
n_err = 0
with open(OUT, "w", encoding="utf-8") as f:
    for t in corpus:
        all_tokens = [49406] + clip.clip._tokenizer.encode(t) + [eot]
        try:
            ids = trim(clip.tokenize(t)[0])
        except RuntimeError:
            ids = None
            n_err += 1
        assert (ids is None) == (len(all_tokens) > 77)
        ids_truncate = trim(clip.tokenize(t, truncate=True)[0])
        clean = whitespace_clean(basic_clean(t)).lower()
        f.write(json.dumps({"text": t, "clean": clean, "n_tokens": len(all_tokens), "ids": ids,
                            "ids_truncate": ids_truncate}, ensure_ascii=False) + "\n")
print(f"{len(corpus)} texts, {n_err} too long, written to {OUT}")
