"""Differential check of `clip tokenize --truncate` against `clip.tokenize(truncate=True)` on
random texts (mojibake-prone Latin-1/cp1252 soup, mis-decoded words, random codepoints).

    $PY scripts/check_tokenizer_differential.py SEED COUNT   # after `cargo build -p clip-app`

The `clip` binary is taken from $CLIP_BIN, else $CARGO_TARGET_DIR/debug/clip.
"""
import os
import json, random, subprocess, sys
import clip
BIN = os.environ.get("CLIP_BIN") or os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "clip")
rng = random.Random(int(sys.argv[1]))
N = int(sys.argv[2])
LAT = "".join(map(chr, range(0x80, 0x100))) + "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ" + "abcdeABCDE   \n&;#<ÐÑ£ÃÂâ€ðŸ˜" + "ВГРСвЂΒΓΞΟβ€ā€"
WORDS = ["café","naïve","Zürich","don’t","“hi”","日本","🐶","Москва","Ελλάδα","déjà","&amp;","&eacute;","&#233;","<b>","it's","ﬁ","ＡＢＣ"]
def moj(w):
    enc = rng.choice(["latin-1","cp1252","cp1251","cp1250","mac_roman","cp437","iso-8859-2","cp1253","cp1254","cp1257"])
    try: return w.encode("utf-8").decode(enc)
    except UnicodeDecodeError: return w
def gen():
    k = rng.random()
    if k < 0.4:
        return "".join(rng.choice(LAT) for _ in range(rng.randint(1, 16)))
    if k < 0.7:
        parts = [moj(rng.choice(WORDS)) if rng.random()<0.6 else rng.choice(WORDS) for _ in range(rng.randint(1,5))]
        return rng.choice([" ", "", "\n", "  "]).join(parts)
    out = []
    for _ in range(rng.randint(1, 20)):
        r = rng.random()
        if r < 0.5: out.append(chr(rng.randint(0x20, 0x2FFF)))
        elif r < 0.8: out.append(chr(rng.randint(0x80, 0x24F)))
        else: out.append(chr(rng.randint(0x1, 0x10FFFF)))
    return "".join(out)
texts = []
while len(texts) < N:
    t = gen()
    if "\x00" in t or any(0xD800 <= ord(c) < 0xE000 for c in t): continue
    texts.append(t)
bad = 0
for i in range(0, N, 200):
    chunk = texts[i:i+200]
    out = subprocess.run([BIN, "tokenize", "--truncate", "--"] + chunk, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == len(chunk), (len(lines), len(chunk))
    ref = clip.tokenize(chunk, truncate=True).tolist()
    for t, l, r in zip(chunk, lines, ref):
        if json.loads(l) != r:
            bad += 1
            if bad <= 10: print("DIFF", repr(t))
print(f"{N} texts, {bad} differ")
