#!/usr/bin/env python3
"""Builds data/jieba/dict_subset.txt.gz, the segmentation dictionary of huatu's offline
prompt writer: the lines of jieba's dictionary (as jieba-rs 0.11.0 ships it,
src/data/dict.txt: "word frequency tag", 349,045 words, MIT licence) whose word the writer
can translate — a headword of the CC-CEDICT glosses (data/cedict/cedict_gloss.tsv.gz) or
of the domain lexicon (crates/agent/src/plan/lexicon.tsv) — plus every single character.

Words outside both dictionaries would only be reported as untranslated; without them
jieba cuts such a run into known pieces, which the writer can translate. Frequencies and
tags are kept as they are, so the segmentation of the words kept does not change. The
full dictionary costs about 2.6 MB in the binary (with jieba's tagging model); this one
about 0.45 MB.

Usage: python3 scripts/data/jieba_dict.py ~/.cargo/registry/src/*/jieba-rs-0.11.0/src/data/dict.txt \
           data/cedict/cedict_gloss.tsv.gz crates/agent/src/plan/lexicon.tsv data/jieba/dict_subset.txt.gz
"""

import gzip
import sys


def main() -> None:
    jieba_dict, glosses, lexicon, target = sys.argv[1:5]
    with gzip.open(glosses, "rt", encoding="utf-8") as lines:
        known = {line.split("\t", 1)[0] for line in lines}
    with open(lexicon, encoding="utf-8") as lines:
        known |= {
            line.split("\t", 1)[0].strip()
            for line in lines
            if "\t" in line and not line.startswith("#")
        }
    kept = []
    with open(jieba_dict, encoding="utf-8") as lines:
        for line in lines:
            word = line.split(" ", 1)[0]
            if len(word) == 1 or word in known:
                kept.append(line if line.endswith("\n") else line + "\n")
    with open(target, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as out:
            out.write("".join(kept).encode("utf-8"))
    print(f"{len(kept)} words", file=sys.stderr)


if __name__ == "__main__":
    main()
