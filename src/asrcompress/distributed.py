"""Training on several GPUs of one node: one process per device, launched the way ``torchrun`` launches.

The job's script calls :func:`launch`; with one device it simply calls the stage's function, with N it starts
N workers through torch's elastic launcher (what ``torchrun --standalone --nproc-per-node N`` runs), each
calling the same function (the same seed, so the same model), with a ``torch.distributed`` process group
(NCCL on GPUs, gloo on CPUs). The training loop (:mod:`asrcompress.training`) then splits every global batch
between the ranks and sums their gradients, so N devices make the same updates one device would, and the
main rank alone evaluates, checkpoints and writes the stage's outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import sys
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from . import logs
from .errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, items: Sequence[Any]) -> list[Any]:
        """This rank's part of a global batch. Batches are sorted by length, so striding gives every rank
        utterances of every length (similar padding, similar step times)."""
        return list(items[self.rank :: self.size])


def world() -> World:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def device_of(current: World) -> "torch.device":
    import torch

    if torch.cuda.is_available() and dist_backend() == "nccl":
        return torch.device("cuda", current.local_rank)
    return torch.device("cpu")


def dist_backend() -> str | None:
    import torch.distributed as dist

    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def check_devices(processes: int, key: str, backend: str | None = None) -> str:
    """The backend for ``processes`` workers: NCCL when this job sees that many GPUs, gloo when asked for
    (CPU workers: tests, CPU nodes); anything else is a ConfigError naming ``key``."""
    import torch

    if backend == "gloo":
        return backend
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible < processes:
        where = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise ConfigError(key, f"asks for {processes} GPUs per training job, but this job sees {visible}"
                               + (f" (CUDA_VISIBLE_DEVICES={where})" if where is not None else "")
                               + ": lower it, or run the job where it gets that many GPUs")
    return backend or "nccl"


def launch(function: Callable[..., Any], kwargs: dict[str, Any], processes: int, *, key: str,
           log_path: str | None = None, backend: str | None = None) -> Any:
    """``function(**kwargs)`` on ``processes`` devices; returns the main rank's result.

    A failed worker fails the launch (torch's ChildFailedError names the rank and its error); the others are
    stopped. Only the main rank writes outputs and checkpoints, each through a rename, so a killed run leaves
    the last whole checkpoint and nothing half written.
    """
    if processes <= 1:
        return function(**kwargs)
    backend = check_devices(processes, key, backend)
    if function.__module__ == "__main__":
        raise ValueError(f"launch: {function.__qualname__} is defined in __main__, which the workers do not import; "
                         "pass a function of an importable module")
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=f"asrcompress-{uuid.uuid4().hex[:12]}",
        # torchrun --standalone: a rendezvous on a free local port, so jobs sharing a node never collide
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2,
        start_method="spawn",
    )
    log.info("launching %d training processes (%s)", processes, backend)
    with _main_module_hidden():
        results = elastic_launch(config, _worker)(function, kwargs, backend, log_path)
    return results[0]


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawned workers re-run the parent's ``__main__`` file before unpickling their function: Snakemake's rule
    script (which would start the stage again in each worker) or a test runner. They need only the library,
    so the main module's path is hidden from multiprocessing while the workers start."""
    main = sys.modules["__main__"]
    saved = {name: main.__dict__.get(name) for name in ("__file__", "__spec__")}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update({name: value for name, value in saved.items() if value is not None})


def _worker(function: Callable[..., Any], kwargs: dict[str, Any], backend: str, log_path: str | None) -> Any:
    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    if log_path:
        # Rank 0 writes the rule's log; the others beside it (a failing rank's traceback lands there).
        logs.to_file(log_path if rank == 0 else f"{log_path}.rank{rank}")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    # Rank 0 alone evaluates on the dev set and, at the end, writes and times the outputs while the others wait
    # in a collective: allow more than NCCL's 10-minute default.
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=60))
    try:
        result = function(**kwargs)
        dist.barrier()  # the main rank's outputs are in place before any worker reports success
        return result if rank == 0 else None
    finally:
        dist.destroy_process_group()


def sum_gradients(params: Sequence["torch.nn.Parameter"], scalars: "torch.Tensor") -> "torch.Tensor":
    """Sum every rank's gradients of ``params`` in place, and ``scalars`` (the step's loss terms) with them:
    one flat all-reduce per dtype, so a step costs one collective, not one per tensor. A parameter some rank left
    without a gradient (an empty shard, a layer LayerDrop skipped) counts as zeros there; one that no rank used
    keeps no gradient, so the optimiser skips it as it would in one process. Returns the summed scalars.

    Not DDP's bucketed overlap with the backward pass: the loop's methods call the model in their own ways
    (distillation's two networks, L0 gates, masks re-applied after each step) and DDP needs every forward to go
    through its wrapper; one collective after the backward is exact for all of them."""
    import torch
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    device = params[0].device if params else scalars.device
    used = torch.tensor([float(p.grad is not None) for p in params], device=device)
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
    extra = torch.cat([scalars.detach().reshape(-1).to(device=device, dtype=torch.float32), used])
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for param in params:
        by_dtype.setdefault(param.grad.dtype, []).append(param.grad)
    by_dtype.setdefault(torch.float32, []).append(extra)
    summed = extra
    for grads in by_dtype.values():
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        for grad, total in zip(grads, _unflatten_dense_tensors(flat, grads)):
            if grad is extra:
                summed = total
            else:
                grad.copy_(total)
    for param, count in zip(params, summed[scalars.numel():].tolist()):
        if count == 0:
            param.grad = None
    return summed[: scalars.numel()].reshape(scalars.shape)


def gather(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order."""
    import torch.distributed as dist

    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_model(model: "torch.nn.Module") -> None:
    """Rank 0's parameters and buffers to every rank (the seed makes them equal; this makes sure)."""
    import torch.distributed as dist

    for tensor in model.state_dict().values():
        dist.broadcast(tensor, 0)
