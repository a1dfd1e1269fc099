"""What a training module needs from the processes of a multi-process (DDP) run.

Lightning's DDP averages the gradients of what the trainer's optimizer steps. The parts of a method
that learn outside it (the ENAS controller, DARTS's α) and the random streams a module keeps itself
(path weights, rewards' minibatches) are handled here: each process draws its own stream, and
learned state is updated from values gathered or averaged over every process, so it stays the same
on all of them. With one process every function here is the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
import torch.distributed as dist

# Process r draws from seed + r * stride: streams of different processes never start alike.
RANK_SEED_STRIDE = 1_000_003


def processes(module) -> tuple[int, int]:
    """(number of processes, this one's rank) of the trainer running `module`, or (1, 0)."""
    return processes_of(getattr(module, "_trainer", None))


def processes_of(trainer) -> tuple[int, int]:
    """(number of processes, this one's rank) of `trainer`, or (1, 0) without one."""
    return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of process `rank`'s stream (process 0 keeps `seed`: one process runs unchanged)."""
    return seed + RANK_SEED_STRIDE * rank


def gather(module, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` [n, ...] of every process, concatenated in rank order: [world * n, ...]."""
    world, _ = processes(module)
    if world == 1:
        return tensor
    local = tensor.to(module.device).contiguous()
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local)
    return torch.cat(parts).to(tensor.device)


def average_gradients(module, params: Iterable[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its mean over the processes, in one collective.

    A process that left a parameter out of its graph (grad None) contributes zeros, as in DDP; a
    parameter no process used keeps None, so its optimizer state is left alone.
    """
    world, _ = processes(module)
    params = list(params)
    if world == 1 or not params:
        return
    device = module.device
    flat = torch.cat(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(device)
            for p in params
        ]
        + [torch.tensor([float(p.grad is not None) for p in params], device=device)]
    )
    flat = _mean_over(flat, world)
    used, offset = flat[-len(params) :] > 0, 0
    for p, is_used in zip(params, used.tolist(), strict=True):
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.device, p.dtype) if is_used else None
        offset += n


def mean(module, tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over the processes."""
    world, _ = processes(module)
    if world == 1:
        return tensor
    return _mean_over(tensor.to(module.device), world).to(tensor.device)


def _mean_over(tensor: torch.Tensor, world: int) -> torch.Tensor:
    total = tensor.clone()
    dist.all_reduce(total)  # a sum
    return total / world


class ProcessGenerators:
    """The random generators a module draws from itself, one stream per process.

    Process 0 draws from each generator's own seed (so one process runs exactly as before), process
    r from `rank_seed(seed, r)`. Checkpoints hold every process's state (`<name>` is process 0's,
    as one-process checkpoints always had, `<name>_per_process` all of them), so a resumed DDP run
    continues every stream where it stopped.
    """

    def __init__(self, generators: Callable[[], Mapping[str, tuple[torch.Generator, int]]]) -> None:
        self._generators = generators  # () -> {checkpoint key: (generator, seed)}
        self._restored: set[str] = set()

    @property
    def generators(self) -> dict[str, tuple[torch.Generator, int]]:
        return dict(self._generators())

    def seed(self, module) -> None:
        """At the start of fitting: in processes other than 0, every stream not restored from a
        checkpoint starts at its process's seed (process 0's generators were seeded when built)."""
        _, rank = processes(module)
        for name, (generator, seed) in self.generators.items():
            if rank and name not in self._restored:
                generator.manual_seed(rank_seed(seed, rank))
        self._restored.clear()

    def save(self, module, checkpoint: dict) -> None:
        """Every process's states into `checkpoint` (a collective: all processes call it)."""
        world, _ = processes(module)
        for name, (generator, _) in self.generators.items():
            state = generator.get_state()
            checkpoint[name] = state
            if world > 1:
                checkpoint[f"{name}_per_process"] = gather(module, state[None])

    def load(self, module, checkpoint: Mapping) -> None:
        """This process's states from `checkpoint`; a stream it has none for (a run resumed with
        more processes than wrote it) starts afresh at `seed`."""
        _, rank = processes(module)
        for name, (generator, _) in self.generators.items():
            per_process = checkpoint.get(f"{name}_per_process")
            if per_process is not None and rank < len(per_process):
                state = per_process[rank]
            elif rank == 0 and name in checkpoint:
                state = checkpoint[name]
            else:
                continue
            generator.set_state(state.clone())  # a row of a stacked tensor is a view: copy it
            self._restored.add(name)
