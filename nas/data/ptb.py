"""The Penn Treebank text format: file names, words (`<eos>` after every line), the vocabulary, and
a token stream cut into parallel streams (batchify).

A corpus is a directory with `ptb.train.txt`, `ptb.valid.txt` and `ptb.test.txt`: one sentence per
line, words separated by spaces. Shared by the datamodule (`nas.data.text`) and the offline corpus
builder (`nas.data.shakespeare`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from nas.errors import check

FILES = {"train": "ptb.train.txt", "val": "ptb.valid.txt", "test": "ptb.test.txt"}
EOS, UNK = "<eos>", "<unk>"


def read_words(path: Path) -> list[str]:
    """The words of a PTB-format file, `<eos>` after every line."""
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words += line.split() + [EOS]
    return words


def build_vocabulary(words: Sequence[str], max_size: int | None) -> dict[str, int]:
    """Word -> id: the training words by falling frequency (ties: first seen), `<eos>` and `<unk>`
    always in; with `max_size`, only that many (the rest become `<unk>`)."""
    counts = Counter(words)
    ordered = sorted(counts, key=lambda w: -counts[w])  # stable: ties keep first-seen order
    special = (EOS, UNK)
    if max_size is not None:
        words_kept = [w for w in ordered if w not in special][: max_size - len(special)]
        kept = set(words_kept) | set(special)
        ordered = [w for w in ordered if w in kept]
    return {w: i for i, w in enumerate(ordered + [w for w in special if w not in ordered])}


def batchify(ids: torch.Tensor, rows: int, name: str) -> torch.Tensor:
    """A 1-D token stream as `rows` parallel streams [rows, length] (the remainder is dropped)."""
    length = len(ids) // rows
    check(
        length >= 2,
        f"the {name} split has {len(ids)} tokens, too few for {rows} parallel streams of at "
        f"least 2 tokens; lower the batch size or use more text",
    )
    return ids[: rows * length].view(rows, length)
