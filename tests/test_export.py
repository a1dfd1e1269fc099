"""python -m nas.export: a retrained network, written as torch.export and ONNX files, runs in a process
that never imports this package and gives the network's logits; wrong checkpoints and outputs are
refused with one line."""

from __future__ import annotations

import inspect
import json
import random
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from torch import nn

from nas.callbacks.dataset_record import DatasetRecord
from nas.checkpointing import AtomicCheckpointIO
from nas.errors import NasError
from nas.export.artifacts import ONNX, ONNX_OPSET, PROGRAM, check_eval_network, export_program
from nas.export.cli import main
from nas.export.restore import check_exportable
from nas.ghost_bn import GhostBatchNorm
from tests.conftest import ROOT, SMALL_SPECS, SPACE_NETWORKS, compose_config

# What the checkpoints built here record as their training data (as train.py's DatasetRecord does).
DATASET = {
    "_target_": "nas.data.SyntheticDataModule",
    "num_classes": 10,
    "image_size": 8,
    "channels": 3,
    "train_size": 64,
    "val_size": 16,
    "test_size": 16,
    "batch_size": 16,
    "eval_batch_size": 16,
}
SHAPE = (3, 8, 8)
STANDALONE, DARTS_EVAL = "nas.modules.StandaloneModule", "nas.methods.darts.DartsEvalModule"

# Run in a fresh interpreter: loads every export with torch.export and onnxruntime only, and fails
# if anything imported this package on the way.
LOADER = """
import json, sys
import numpy as np, onnxruntime, torch
root, names = sys.argv[1], json.loads(sys.argv[2])
x = np.load(f"{root}/x.npy")
logits = {}
for name in names:
    folder = f"{root}/{name}/export"
    manifest = json.load(open(f"{folder}/manifest.json"))
    program = torch.export.load(f"{folder}/{manifest['files']['torch_export']}").module()
    logits[f"{name}.pt2"] = program(torch.from_numpy(x)).detach().numpy()
    session = onnxruntime.InferenceSession(
        f"{folder}/{manifest['files']['onnx']}", providers=["CPUExecutionProvider"]
    )
    feed = {manifest["onnx"]["input"]: x}
    logits[f"{name}.onnx"] = session.run([manifest["onnx"]["output"]], feed)[0]
imported = sorted(m for m in sys.modules if m == "nas" or m.startswith("nas."))
assert not imported, imported
np.savez(f"{root}/logits.npz", **logits)
"""


def save_checkpoint(module, path: Path, dataset=DATASET) -> Path:
    """`module`'s checkpoint as Lightning's trainer writes it in a train.py run (the dataset record,
    atomic checkpoint IO), without training."""
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[DatasetRecord(dataset)],
        plugins=[AtomicCheckpointIO()],
    )
    trainer.strategy.connect(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


@torch.no_grad()
def calibrated(module, seed: int):
    """`module` with random BN scales and shifts and running statistics of its own activations
    (freshly built ones are mean 0, variance 1, which lets untrained logits grow large), in eval."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        if norm.affine:
            norm.weight.copy_(0.5 + torch.rand(norm.weight.shape, generator=generator))
            norm.bias.copy_(torch.rand(norm.bias.shape, generator=generator) - 0.5)
        norm.momentum = None  # the running statistics become those of the batch below
    module.train()
    module(torch.randn(8, *SHAPE, generator=generator))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    return module.eval()


def space_of(config: str, **settings):
    """The space of `conf/search_space/<config>.yaml` with `settings`, small (`SMALL_SPECS`)."""
    spec = OmegaConf.load(ROOT / "conf" / "search_space" / f"{config}.yaml")
    space = instantiate(OmegaConf.merge(spec, settings))
    small = SMALL_SPECS.get(space.name)
    return instantiate(OmegaConf.merge(spec, small, settings)) if small else space


def derived(space):
    """DARTS's discretisation of random strengths: one op on two edges into every node."""
    generator = torch.Generator().manual_seed(0)
    strengths = {d.name: torch.rand(len(d.options), generator=generator) for d in space.decisions}
    return space.derive({name: row.tolist() for name, row in strengths.items()})


def image_spaces() -> dict:
    """Every space config whose networks read images, and darts_cell with its other network."""
    from nas.spaces.darts_cell import DartsCellSpace

    spaces = {
        p.stem: space_of(p.stem) for p in sorted((ROOT / "conf" / "search_space").glob("*.yaml"))
    }
    spaces = {name: s for name, s in spaces.items() if s.name not in SPACE_NETWORKS}
    if "network" in inspect.signature(DartsCellSpace).parameters:  # DARTS's and BayesNAS's
        other = {"darts": "bayesnas", "bayesnas": "darts"}[spaces["darts_cell"].network]
        spaces[f"darts_cell_{other}"] = space_of("darts_cell", network=other)
    return spaces


def image_networks() -> dict[str, tuple[object, str]]:
    """One tiny stand-alone module (random weights) of every image space but oneshot_cell (the
    train.py run's), DARTS's evaluation network of DARTS_V2, and each one's class name.

    darts_cell spaces take a derived cell rather than a sample with several ops on every edge, to
    keep the exports quick.
    """
    from nas.methods.darts import DartsEvalModule
    from nas.modules import StandaloneModule
    from nas.spaces.darts_cell import DartsCellSpace
    from nas.spaces.darts_cell.genotype import DARTS_V2

    nets = {}
    for name, space in image_spaces().items():
        if name != "oneshot_cell":
            arch = (
                derived(space)
                if isinstance(space, DartsCellSpace)
                else space.sample(random.Random(0))
            )
            nets[name] = (StandaloneModule(arch, filters=4, cells=2, stages=2), STANDALONE)
    dag = space_of("darts_cell").from_genotype(DARTS_V2)
    nets["darts_eval"] = (DartsEvalModule(dag, filters=4, cells=3, drop_path=0.3), DARTS_EVAL)
    return {n: (calibrated(m, seed), cls) for seed, (n, (m, cls)) in enumerate(nets.items())}


def trained_run(run: Path, arch_file: Path):
    """A real `train.py experiment=smoke_standalone` run (oneshot_cell), with the Hydra config
    Hydra writes beside it; the module rebuilt from its checkpoint as the reference."""
    import train
    from nas.modules import StandaloneModule

    tiny = ["dataset.train_subset=32", "dataset.val_size=16", "dataset.test_size=16"]
    cfg = compose_config("train", ["experiment=smoke_standalone", f"arch={arch_file}", *tiny], run)
    train.train(cfg)
    task = cfg.copy()
    with open_dict(task):
        del task["hydra"]
    (run / ".hydra").mkdir()
    OmegaConf.save(task, run / ".hydra" / "config.yaml")
    raw = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert raw["module_class"] == "nas.modules.child.StandaloneModule"  # found without its run
    hparams = {k: v for k, v in raw["hyper_parameters"].items() if k not in ("arch_id",)}
    module = StandaloneModule(**hparams)
    module.load_state_dict(raw["state_dict"])
    return module.eval()


def export(ckpt: Path, out: Path, *options: str) -> int:
    return main(["--ckpt", str(ckpt), "--out", str(out), *options])


@pytest.mark.slow
def test_every_image_space_runs_exported_without_the_package(tmp_path, arch_file, capsys):
    pytest.importorskip("onnxruntime", reason="the export extra: pip install -e '.[export]'")
    onnx = pytest.importorskip("onnx", reason="the export extra: pip install -e '.[export]'")
    run = tmp_path / "oneshot_cell"
    references = {"oneshot_cell": trained_run(run, arch_file)}
    assert export(run, run / "export") == 0, capsys.readouterr().err  # class from .hydra/
    (tmp_path / "nb201" / "export").mkdir(parents=True)
    (tmp_path / "nb201" / "export" / "notes.txt").write_text("kept")  # --force leaves it alone
    for name, (module, cls) in image_networks().items():
        ckpt = save_checkpoint(module, tmp_path / name / "checkpoints" / "last.ckpt")
        force = ["--force"] if name == "nb201" else []
        assert export(ckpt, tmp_path / name / "export", "--module-class", cls, *force) == 0
        references[name] = module
    assert (tmp_path / "nb201" / "export" / "notes.txt").read_text() == "kept"
    x = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(7))  # neither traced size
    np.save(tmp_path / "x.npy", x.numpy())
    names = sorted(references)
    subprocess.run(
        [sys.executable, "-c", LOADER, str(tmp_path), json.dumps(names)], cwd=tmp_path, check=True
    )
    logits = np.load(tmp_path / "logits.npz")
    for name in names:
        with torch.no_grad():
            expected = references[name](x)
        for kind in ("pt2", "onnx"):
            got = torch.from_numpy(logits[f"{name}.{kind}"])
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4, msg=f"{name} {kind}")
    manifest = json.loads((tmp_path / "darts_eval" / "export" / "manifest.json").read_text())
    opsets = {
        o.domain: o.version
        for o in onnx.load(tmp_path / "darts_eval" / "export" / ONNX).opset_import
    }
    assert opsets[""] == manifest["onnx"]["opset"] == ONNX_OPSET  # the opset stated is the file's
    assert manifest["network"]["parameters"] == references["darts_eval"].net.num_params()
    # DARTS's auxiliary head is in the checkpoint but off in the exported graph
    program = torch.export.load(str(tmp_path / "darts_eval" / "export" / PROGRAM))
    parameters = program.graph_signature.inputs_to_parameters
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    auxiliary = [p for p, fqn in parameters.items() if fqn.startswith("net.auxiliary_head.")]
    assert auxiliary and all(not placeholders[p].users for p in auxiliary)


def test_manifest_normalisation_reproduces_the_training_inputs(tmp_path):
    """The manifest's mean/std are the training split's (hand formula), and its recipe applied to
    raw pixels gives what the datamodule fed the network."""
    from nas.export.inputs import input_spec

    spec = input_spec(DATASET, {"num_classes": 10, "in_channels": 3})
    datamodule = instantiate(DATASET)
    datamodule.setup("fit")
    pixels = datamodule.train_split.images.double() / 255
    assert spec["input"]["mean"] == pytest.approx(pixels.mean(dim=(0, 2, 3)).tolist(), abs=1e-12)
    std = pixels.permute(1, 0, 2, 3).flatten(1).std(dim=1, unbiased=False)
    assert spec["input"]["std"] == pytest.approx(std.tolist(), abs=1e-12)
    assert spec["input"]["shape"] == ["batch", *SHAPE] and spec["output"]["num_classes"] == 10
    raw = datamodule.val_split.images[:4]
    mean = torch.tensor(spec["input"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(spec["input"]["std"]).view(1, -1, 1, 1)
    recipe = (raw.float() / spec["input"]["pixel_scale"] - mean) / std
    torch.testing.assert_close(recipe, datamodule.normalize(raw), rtol=1e-5, atol=1e-5)


class NamedData:
    """A user's own datamodule: the attributes the export reads, class names included."""

    num_classes, in_channels, image_size = 3, 1, (6, 4)
    mean, std = (0.25,), (0.5,)
    classes = ("cat", "dog", "fox")

    def setup(self, stage=None):
        pass


def test_a_users_datamodule_gives_its_shape_and_class_names():
    from nas.export.inputs import input_spec

    spec = input_spec({"_target_": "tests.test_export.NamedData"}, {"num_classes": 3})
    assert spec["input"]["shape"] == ["batch", 1, 6, 4] and spec["input"]["std"] == [0.5]
    assert spec["output"]["class_names"] == ["cat", "dog", "fox"]
    with pytest.raises(NasError, match=r"model.in_channels=3 differs from its dataset's"):
        input_spec({"_target_": "tests.test_export.NamedData"}, {"in_channels": 3})


def test_a_non_empty_out_is_refused_unless_forced(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    missing = str(tmp_path / "no.ckpt")
    assert main(["--ckpt", missing, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "is not empty" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1 and (out / "notes.txt").read_text() == "keep me"
    assert main(["--ckpt", missing, "--out", str(out), "--force"]) == 2  # past the check: no ckpt
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_the_recurrent_language_model_is_refused(tmp_path, capsys):
    from nas.methods.enas_rnn import StandaloneLMModule

    arch = space_of("enas_rnn").sample(random.Random(0))
    module = StandaloneLMModule(arch, num_classes=5, hidden=4)
    text = {"_target_": "nas.data.text.TextDataModule", "data_dir": "data/ptb"}
    ckpt = save_checkpoint(module, tmp_path / "lm" / "checkpoints" / "last.ckpt", text)
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "holds a StandaloneLMModule trained on nas.data.text.TextDataModule" in err
    assert "not an image classifier" in err and not (tmp_path / "out").exists()


def test_a_supernet_or_a_fixed_network_is_refused():
    from nas.methods.bayesnas.compress import BayesCompressionModule
    from nas.modules import OneShotModule

    with pytest.raises(NasError, match="OneShotModule, which trains a supernet"):
        check_exportable(OneShotModule, {}, Path("x.ckpt"))
    with pytest.raises(NasError, match="trains no searched architecture"):
        check_exportable(BayesCompressionModule, {}, Path("x.ckpt"))


def test_a_checkpoint_that_names_no_class_asks_for_one(tmp_path, capsys):
    from nas.modules import StandaloneModule

    arch = space_of("nb201").sample(random.Random(0))
    module = StandaloneModule(arch, filters=4, cells=1, stages=1)
    ckpt = save_checkpoint(module, tmp_path / "copied.ckpt")  # no run directory beside it
    raw = torch.load(ckpt, weights_only=True)
    del raw["module_class"]  # as checkpoints written before they recorded their class
    torch.save(raw, ckpt)
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "does not say which class wrote it" in err and "pass --module-class" in err
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--module-class", "nas.X"])
    assert "--module-class 'nas.X' cannot be imported" in capsys.readouterr().err


def test_training_data_that_cannot_be_loaded_is_named(tmp_path, capsys):
    from nas.modules import StandaloneModule

    module = StandaloneModule(
        space_of("nb201").sample(random.Random(0)), filters=4, cells=1, stages=1
    )
    gone = {"_target_": "nas.data.FashionMNISTDataModule", "data_dir": str(tmp_path / "gone")}
    ckpt = save_checkpoint(module, tmp_path / "run" / "checkpoints" / "last.ckpt", gone)
    args = ["--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--module-class", STANDALONE]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the training data (nas.data.FashionMNISTDataModule) could not")
    assert str(tmp_path / "gone") in err and not (tmp_path / "out").exists()


class _Net(nn.Module):
    """A tiny classifier whose evaluation misbehaves as `flaw` says."""

    def __init__(self, flaw: str):
        super().__init__()
        self.flaw = flaw
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = GhostBatchNorm(4, track_running_stats=flaw != "batch statistics")
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        h = self.norm(self.conv(x)).relu().mean(dim=(2, 3))
        if self.flaw == "dropout":
            h = nn.functional.dropout(h, 0.5, training=True)
        logits = self.head(h)
        return (logits, logits) if self.flaw == "auxiliary" else logits


@pytest.mark.parametrize(
    "flaw, message",
    [
        ("auxiliary", "returns tuple in eval mode"),
        ("dropout", "draws random numbers"),
        ("batch statistics", "uses the batch's statistics"),
    ],
)
def test_a_network_that_is_not_deterministic_per_image_is_refused(flaw, message):
    torch.manual_seed(0)
    with pytest.raises(NasError, match=message):
        check_eval_network(_Net(flaw).eval(), SHAPE, 10, "the network")
    check_eval_network(_Net("none").eval(), SHAPE, 10, "the network")  # the same net, sound


@pytest.mark.slow  # torch.export's first trace in a process takes seconds
def test_random_ops_left_in_the_graph_are_refused():
    class DropPathAlways(nn.Module):
        def forward(self, x):
            keep = torch.empty(x.shape[0], 1, 1, 1).bernoulli_(0.5)
            return (x * keep).mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 10)

    with pytest.raises(NasError, match="draws random numbers .*bernoulli"):
        export_program(DropPathAlways().eval(), SHAPE)


def test_the_docs_name_the_files_and_the_opset():
    docs = (ROOT / "docs" / "export.md").read_text()
    assert PROGRAM in docs and ONNX in docs and f"opset {ONNX_OPSET}" in docs
