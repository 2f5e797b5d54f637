"""
``launch``: detectron2's, and on the CPU where detectron2's cannot start processes, the same
thing with the gloo backend.

detectron2 main's ``launch`` starts CPU processes with gloo itself and is used then; 0.6's asserts
CUDA in its worker, so there ``--num-gpus N`` without CUDA starts N processes here
(``torch.multiprocessing.spawn``) joined by a gloo process group (decided by
:data:`~projects_lda.engine.compat.LAUNCH_SUPPORTS_CPU`). Either way each CPU process gets
``cpu_count // N`` torch threads unless ``OMP_NUM_THREADS`` is set (N processes using all cores
each would oversubscribe the machine).
"""
import functools
import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

from . import compat

__all__ = ["launch"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)


def _find_free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _with_cpu_threads(main_func, num_per_machine, *args):
    """Runs ``main_func(*args)`` with ``cpu_count // num_per_machine`` torch threads on the CPU."""
    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, _cpu_count() // num_per_machine))
    return main_func(*args)


def launch(
    main_func,
    num_gpus_per_machine,
    num_machines=1,
    machine_rank=0,
    dist_url=None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
):
    """
    detectron2's ``launch`` (same arguments), with CPU processes joined by gloo where that
    ``launch`` cannot start them. ``dist_url="auto"`` picks a free local port (single machine).
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1 or torch.cuda.is_available() or compat.LAUNCH_SUPPORTS_CPU:
        if world_size > 1 and not torch.cuda.is_available():
            main_func = functools.partial(_with_cpu_threads, main_func, num_gpus_per_machine)
        return d2_launch(
            main_func,
            num_gpus_per_machine,
            num_machines=num_machines,
            machine_rank=machine_rank,
            dist_url=dist_url,
            args=args,
            timeout=timeout,
        )
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url='auto' works on a single machine; give tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    logger.info(
        "CUDA is not available: starting %d CPU processes (gloo backend) at %s",
        num_gpus_per_machine,
        dist_url,
    )
    mp.spawn(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _cpu_worker(
    local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout
):
    global_rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="gloo",
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception:
        logger.error("Process group URL: %s", dist_url)
        raise
    # the local process group (ranks on this machine), as detectron2's launch sets it up
    assert comm._LOCAL_PROCESS_GROUP is None
    for i in range(world_size // num_per_machine):
        ranks_on_i = list(range(i * num_per_machine, (i + 1) * num_per_machine))
        pg = dist.new_group(ranks_on_i)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = pg
    comm.synchronize()
    try:
        _with_cpu_threads(main_func, num_per_machine, *args)
    finally:  # no barrier here: a worker that failed must not wait for the others
        dist.destroy_process_group()
