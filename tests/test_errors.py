"""Bad input stops train.py / search.py with one clear line (exit 2), never a library traceback.

Every case here is a row of docs/errors.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import lightning  # noqa: F401  (at collection: its log handler must not bind to a test's capsys)
import pytest
import torch

from nas.cli import user_errors
from tests.conftest import ROOT, compose_config


def _one_line_error(capsys, action) -> str:
    """Run `action` under `user_errors`; return its one-line message (without 'error: ')."""
    with pytest.raises(SystemExit) as exit_info, user_errors():
        action()
    assert exit_info.value.code == 2
    # Lightning's INFO log lines may share stderr; the error itself is exactly one line.
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors
    return errors[0].removeprefix("error: ")


def _train(run: Path, *overrides: str) -> None:
    import train

    train.train(compose_config("train", list(overrides), run))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, arch_file, smoke_supernet) -> dict[str, Path]:
    """A finished smoke supernet run and a finished stand-alone run (one epoch each); copy to use."""
    standalone = tmp_path_factory.mktemp("child")
    _train(standalone, "experiment=smoke_standalone", f"arch={arch_file}")
    return {"supernet": smoke_supernet, "standalone": standalone}


# --- configuration values ------------------------------------------------------------------------

SUPERNET_VALUES = [
    ("model.cells=0", "model.cells=0 must be an integer >= 1"),
    ("model.stages=3", "model.cells=2 must be >= model.stages=3"),
    ("model.ghost_size=0", "model.ghost_size=0 must be an integer >= 1"),
    ("model.eval_ghost_size=0", "model.eval_ghost_size=0 must be null (= ghost_size)"),
    ("model.momentum=1.5", "model.momentum=1.5 must lie in [0, 1)"),
    ("model.l2=-1", "model.l2=-1 must be >= 0"),
    ("model.lr=0", "model.lr=0 must be > 0"),
    ("model.warmup_steps=-1", "model.warmup_steps=-1 must be an integer >= 0"),
    ("sampler.schedule=cubic", "dropout schedule 'cubic' is unknown"),
    ("dataset.batch_size=0", "batch_size=0: expected >= 1"),
    ("dataset.eval_batch_size=0", "eval_batch_size=0: expected >= 1"),
    ("dataset.batch_size=128", "batch_size=128 is larger than the 64 training examples"),
    ("dataset.train_subset=0", "train_subset=0: expected None (all) or >= 1"),
    ("dataset.val_size=0", "val_size=0: expected >= 1 validation examples"),
    ("search_space.num_blocks=0", "search_space.num_blocks=0 must be an integer >= 1"),
    ("trainer.max_epochs=-5", "trainer.max_epochs=-5 must be >= 1, or -1"),
    (
        "trainer.max_steps=0",
        "trainer.max_steps=0 must be -1 (no limit: max_epochs decides) or >= 1",
    ),
    ("seed=-1", "seed=-1 must be an integer in [0, 2**32)"),
    ("callbacks.last.every_n_train_steps=-1", "callbacks.last.every_n_train_steps=-1 must be"),
    ("+model.widths=3", "model.widths: not a setting of OneShotModule"),
    ("+callbacks.last.foo=1", "callbacks.last.foo: not a setting of LastCheckpoint"),
]


@pytest.mark.parametrize("override, fragment", SUPERNET_VALUES, ids=[o for o, _ in SUPERNET_VALUES])
def test_bad_supernet_setting(tmp_path, capsys, override, fragment):
    assert fragment in _one_line_error(
        capsys, lambda: _train(tmp_path, "experiment=smoke", override)
    )


STANDALONE_VALUES = [
    ("model.weight_decay=-1", "model.weight_decay=-1 must be >= 0"),
    ("+model.ghost_size=8", "model.ghost_size: not a setting of StandaloneModule"),
]


@pytest.mark.parametrize(
    "override, fragment", STANDALONE_VALUES, ids=[o for o, _ in STANDALONE_VALUES]
)
def test_bad_standalone_setting(tmp_path, capsys, arch_file, override, fragment):
    overrides = ["experiment=smoke_standalone", f"arch={arch_file}", override]
    assert fragment in _one_line_error(capsys, lambda: _train(tmp_path, *overrides))


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["model.foo=1"], "model.foo is not a setting of this config"),
        (["dataset=imagenet7"], "Could not find 'dataset/imagenet7'; Available options in"),
        (["model.lr=[1"], "no viable alternative at input '[1'"),
    ],
    ids=["unknown_key", "unknown_group", "bad_syntax"],
)
def test_bad_override_while_composing(tmp_path, capsys, overrides, fragment):
    message = _one_line_error(
        capsys, lambda: compose_config("train", ["experiment=smoke", *overrides], tmp_path)
    )
    assert fragment in message
    if "imagenet7" in fragment:
        assert (
            "cifar10, cifar100, digits, fashion_mnist, image_folder, ptb, shakespeare, synthetic, "
            "tensors" in message
        )


def test_standalone_without_arch(tmp_path, capsys):
    message = _one_line_error(capsys, lambda: _train(tmp_path, "experiment=smoke_standalone"))
    assert message == (
        "StandaloneModule trains one architecture: pass arch=<file.json> written by search.py"
    )


def test_arch_given_to_the_supernet(tmp_path, capsys, arch_file):
    message = _one_line_error(
        capsys, lambda: _train(tmp_path, "experiment=smoke", f"arch={arch_file}")
    )
    assert "but OneShotModule trains the whole supernet" in message


def test_search_without_ckpt(tmp_path, capsys):
    import search

    cfg = compose_config("search", ["experiment=smoke", f"out_dir={tmp_path}"], tmp_path)
    message = _one_line_error(capsys, lambda: search.run(cfg))
    assert message.startswith("ckpt has no value (??? in the config); pass a supernet checkpoint")


def _search(tmp_path: Path, *overrides: str, ckpt: Path | None = None):
    import search

    base = [
        "experiment=smoke",
        f"ckpt={ckpt or tmp_path / 'none.ckpt'}",
        f"out_dir={tmp_path / 'out'}",
    ]
    return search.run(compose_config("search", [*base, *overrides], tmp_path))


IGNORED_BY_SEARCH = [
    (
        "model.eval_ghost_size=16",
        "model.eval_ghost_size=16: search.py does not read model.* (the network comes from the "
        "checkpoint); pass search.eval_ghost_size=16 instead",
    ),
    ("model=standalone", "model=standalone: search.py does not read the model group"),
    ("+model.widths=3", "+model.widths=3: search.py does not read model.*"),
    ("search_space.num_blocks=3", "search_space.num_blocks=3: search.py does not read"),
    ("sampler.rate=0.3", "sampler.rate=0.3: search.py does not read sampler.* (the sampler"),
    ("callbacks=analysis", "callbacks=analysis: search.py does not read the callbacks group"),
]


@pytest.mark.parametrize(
    "override, fragment", IGNORED_BY_SEARCH, ids=[o for o, _ in IGNORED_BY_SEARCH]
)
def test_search_refuses_settings_it_would_ignore(tmp_path, capsys, override, fragment):
    message = _one_line_error(capsys, lambda: _search(tmp_path, override))
    assert message.startswith(fragment) and message.endswith(("instead", "drop it"))
    assert not (tmp_path / "out").exists()


def test_study_refuses_settings_it_would_ignore(tmp_path, capsys):
    import study

    overrides = ["study=kl_curves", f"study.run={tmp_path}", "model.lr=0.2"]
    message = _one_line_error(
        capsys, lambda: study.run(compose_config("study", overrides, tmp_path))
    )
    assert message.startswith("model.lr=0.2: study.py does not read model.* (the studies read")


SEARCH_STRATEGY_VALUES = [
    (
        ["strategy=evolution", "strategy.population_size=0"],
        "strategy.population_size=0 must be an integer >= 1",
    ),
    (
        ["strategy=evolution", "+strategy.tournament=3"],
        "strategy.tournament: not a setting of RegularizedEvolution; its settings are "
        "population_size, sample_size",
    ),
    (
        ["+strategy.population_size=3"],
        "strategy.population_size: not a setting of RandomSearch; its settings are none",
    ),
    (["strategy.population_size=3"], "strategy.population_size is not a setting of this config"),
    (["strategy=annealing"], "Could not find 'strategy/annealing'; Available options in"),
]


@pytest.mark.parametrize(
    "overrides, fragment",
    SEARCH_STRATEGY_VALUES,
    ids=[" ".join(o) for o, _ in SEARCH_STRATEGY_VALUES],
)
def test_bad_search_strategy_setting(tmp_path, capsys, runs, overrides, fragment):
    ckpt = runs["supernet"] / "checkpoints" / "last.ckpt"
    message = _one_line_error(capsys, lambda: _search(tmp_path, *overrides, ckpt=ckpt))
    assert fragment in message
    assert not (tmp_path / "out" / "results.sqlite").exists()


# --- files ---------------------------------------------------------------------------------------


def _arch_variant(arch_file: Path, tmp_path: Path, kind: str) -> Path:
    import json

    data = json.loads(arch_file.read_text())
    if kind == "unknown_op":
        data["choices"]["block0/ops"] = ["conv9x9"]
    elif kind == "other_space":
        data["space_spec"]["num_blocks"] = 3
    path = tmp_path / f"{kind}.json"
    path.write_text("{not json" if kind == "malformed" else json.dumps(data))
    return path


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("malformed", "architecture JSON is malformed"),
        ("unknown_op", "decision 'block0/ops': unknown option(s) ['conv9x9']; allowed:"),
        ("other_space", "architecture is from another configuration of space 'oneshot_cell'"),
        ("missing", "does not exist; pass arch=<path to a .json written by search.py>"),
    ],
    ids=["malformed", "unknown_op", "other_space", "missing"],
)
def test_bad_architecture_file(tmp_path, capsys, arch_file, kind, fragment):
    path = (
        tmp_path / "missing.json" if kind == "missing" else _arch_variant(arch_file, tmp_path, kind)
    )
    overrides = ["experiment=smoke_standalone", f"arch={path}"]
    message = _one_line_error(capsys, lambda: _train(tmp_path / "run", *overrides))
    assert fragment in message and str(path) in message


def test_standalone_checkpoint_given_to_search(tmp_path, capsys, runs):
    import search

    ckpt = runs["standalone"] / "checkpoints" / "last.ckpt"
    cfg = compose_config(
        "search", ["experiment=smoke", f"ckpt={ckpt}", f"out_dir={tmp_path}"], tmp_path
    )
    message = _one_line_error(capsys, lambda: search.run(cfg))
    assert message == (
        f"checkpoint {str(ckpt)!r} holds a nas.modules.child.StandaloneModule, not a supernet; "
        "search needs a supernet checkpoint"
    )


def _copy_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_resume_from_a_truncated_checkpoint(tmp_path, capsys, runs):
    run = _copy_run(runs["supernet"], tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    message = _one_line_error(capsys, lambda: _train(run, "experiment=smoke", "resume=true"))
    assert message.startswith(f"checkpoint {str(last)!r} cannot be read")


def test_resume_without_a_checkpoint(tmp_path, capsys):
    message = _one_line_error(capsys, lambda: _train(tmp_path, "experiment=smoke", "resume=true"))
    assert message.startswith("resume=True: there is no checkpoint") and str(tmp_path) in message


def test_resume_with_other_model_settings(tmp_path, capsys, runs):
    run = _copy_run(runs["supernet"], tmp_path)
    resume = ["experiment=smoke", "resume=true", "model.filters=8"]
    message = _one_line_error(capsys, lambda: _train(run, *resume))
    assert "was written with other model settings: filters: 4 there, 8 here" in message


def test_resume_with_other_batch_size(tmp_path, capsys, runs):
    run = _copy_run(runs["supernet"], tmp_path)
    resume = ["experiment=smoke", "resume=true", "trainer.max_epochs=2", "dataset.batch_size=32"]
    message = _one_line_error(capsys, lambda: _train(run, *resume))
    assert "trained on 64 examples in batches of 16, this run has 64 in batches of 32" in message


def test_resume_a_standalone_run_as_supernet(tmp_path, capsys, runs):
    run = _copy_run(runs["standalone"], tmp_path)
    message = _one_line_error(capsys, lambda: _train(run, "experiment=smoke", "resume=true"))
    assert "holds a stand-alone network, but this run trains a one-shot supernet" in message


def test_dataset_directory_missing(tmp_path, capsys):
    overrides = ["experiment=smoke", "dataset=fashion_mnist", f"dataset.data_dir={tmp_path / 'no'}"]
    message = _one_line_error(capsys, lambda: _train(tmp_path, *overrides))
    assert str(tmp_path / "no") in message and "apt-get install dataset-fashion-mnist" in message


def test_dataset_file_truncated(tmp_path, capsys):
    from tests.test_data import _write_fashion

    data = tmp_path / "fashion"
    _write_fashion(data, n_train=40, n_test=12)
    damaged = data / "train-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-20])
    overrides = ["experiment=smoke", "dataset=fashion_mnist", f"dataset.data_dir={data}"]
    overrides += ["dataset.val_size=8", "dataset.train_subset=null"]
    message = _one_line_error(capsys, lambda: _train(tmp_path / "run", *overrides))
    assert str(damaged) in message


def test_cifar_directory_missing(tmp_path, capsys):
    overrides = ["experiment=smoke", "dataset=cifar10", f"dataset.data_dir={tmp_path / 'empty'}"]
    message = _one_line_error(
        capsys, lambda: _train(tmp_path, *overrides, "dataset.download=false")
    )
    assert str(tmp_path / "empty") in message and "cifar-10-python.tar.gz" in message


def test_output_directory_not_writable(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("a file, not a directory")
    run = tmp_path / "file.txt" / "run"
    message = _one_line_error(capsys, lambda: _train(run, "experiment=smoke"))
    assert "file.txt" in message and "Not a directory" in message


# --- training -------------------------------------------------------------------------------------


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    overrides = ["experiment=smoke", "model.lr=1e12", "callbacks.last.every_n_train_steps=1"]
    message = _one_line_error(capsys, lambda: _train(tmp_path, *overrides))
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    weights = [v for v in last["state_dict"].values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in weights)  # the last good one, not overwritten
    assert message.startswith(
        ("the training loss is nan at step", "the weights are not finite after step")
    )
    failed_at = int(message.split(" step ")[1].split()[0])
    # step N is the one that starts from N finished updates: the kept checkpoint may hold exactly
    # the weights it started from (N), never weights it produced
    assert failed_at >= last["global_step"] >= 1
    assert (
        f"the last checkpoint, {tmp_path / 'checkpoints' / 'last.ckpt'}, is kept as it" in message
    )
    assert message.endswith(
        "Lower model.lr (now 1e+12) or sampler.rate (now 0.1) or add model.warmup_steps, "
        "and start a new run"
    )


def test_nan_loss_before_any_checkpoint(tmp_path, capsys):
    message = _one_line_error(capsys, lambda: _train(tmp_path, "experiment=smoke", "model.lr=1e12"))
    assert "no checkpoint had been written yet" in message


# --- through the command line (errors Hydra meets before our code runs) ---------------------------


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train", "search", "study"])
def test_cli_errors_before_the_run_starts_are_one_line(tmp_path, script):
    (tmp_path / "file.txt").write_text("")
    args = {
        "train": ["train.py", "experiment=smoke", f"hydra.run.dir={tmp_path / 'file.txt' / 'run'}"],
        "search": ["search.py", "experiment=smoke"],  # no ckpt=
        "study": ["study.py", "study=correlation"],  # no study.picks=
    }[script]
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    expected = {
        "train": "Not a directory",
        "search": "ckpt has no value",
        "study": "study.picks has no value (??? in the config); pass study.picks=<value>",
    }[script]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert expected in proc.stderr


METHOD_VALUES = [
    ("experiment=smoke_enas", "sampler=uniform", "sampler=uniform: model=ENASModule does not read"),
    ("experiment=smoke_enas", "model.controller_steps=-1", "model.controller_steps=-1 must be"),
    ("experiment=smoke_enas", "model.controller.hidden=0", "controller.hidden=0 must be"),
    (
        "experiment=smoke_enas",
        "model.reward_batch_size=1000",
        "model.reward_batch_size=1000 exceeds",
    ),
    ("experiment=smoke_enas", "model.lr_min=1.0", "model.lr_min=1.0 must lie in [0, model.lr"),
    ("experiment=smoke_bayesnas", "model.tau=1.5", "model.tau=1.5 must lie in (0, 1)"),
    ("experiment=smoke_bayesnas", "model.hessian=exact", "model.hessian='exact' must be one of"),
    ("experiment=smoke_bayesnas", "model.lam=0", "model.lam=0 must be > 0"),
]


@pytest.mark.parametrize(
    "experiment, override, fragment", METHOD_VALUES, ids=[o for _, o, _ in METHOD_VALUES]
)
def test_bad_method_setting(tmp_path, capsys, experiment, override, fragment):
    assert fragment in _one_line_error(capsys, lambda: _train(tmp_path, experiment, override))


def test_a_required_model_value_left_unset_is_named_not_a_traceback(tmp_path, capsys):
    message = _one_line_error(capsys, lambda: _train(tmp_path / "run", "experiment=smoke_fewshot"))
    assert message.startswith("model.parent, model.option: required but not set; pass ")
    assert "model.parent=<value> model.option=<value>" in message
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before anything was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_hardware_without_cuda_points_to_hardware_cpu(tmp_path, capsys):
    message = _one_line_error(
        capsys, lambda: _train(tmp_path / "run", "experiment=smoke", "hardware=gpu")
    )
    assert message.startswith("trainer: ") and message.endswith("use hardware=cpu")
