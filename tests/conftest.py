"""
Shared test fixtures: a tiny embedded LVIS-format dataset and the arguments to train on it.

torch runs with one thread in the tests (``LDA_TEST_TORCH_THREADS`` changes it): on a small
machine shared with other jobs, several OpenMP threads per process make CPU training many
times slower. Subprocesses started by the tests get ``OMP_NUM_THREADS`` likewise.
"""
import argparse
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LDA_CONFIG = ROOT / "configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml"
BASELINE_CONFIG = ROOT / "configs/Embedded/mask_rcnn_R_18_FPN_cpu_embedded.yaml"
TINY_CLASSES = 6

_THREADS = os.environ.get("LDA_TEST_TORCH_THREADS", "1")
torch.set_num_threads(int(_THREADS))

if str(ROOT) not in sys.path:  # for `import train_net`
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """
    A 6-class embedded dataset (24 training, 6 validation images of 128 px) registered as
    ``tiny_embedded_train`` / ``tiny_embedded_val``. Returns a dict with ``root``,
    ``train_json``, ``val_json`` and ``env``: environment variables that register the same
    datasets in a subprocess running train_net.py.
    """
    from detectron2.data import DatasetCatalog

    from projects_lda.data import register_lvis_format
    from projects_lda.worlds.embedded import generate_embedded_lvis

    root = tmp_path_factory.mktemp("tiny_lvis")
    paths = generate_embedded_lvis(
        str(root), seed=3, num_classes=TINY_CLASSES, num_train_images=24, num_val_images=6,
        num_test_images=6,
    )
    specs = []
    for split in ("train", "val"):
        name = f"tiny_embedded_{split}"
        if name not in DatasetCatalog.list():
            register_lvis_format(name, paths[f"{split}_json"], str(root) + "/")
        specs.append(f"{name}:{paths[f'{split}_json']}:{root}/")
    env = dict(os.environ)
    env.update(
        LDA_EXTRA_DATASETS=";".join(specs),
        OMP_NUM_THREADS=_THREADS,
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return {
        "root": root,
        "train_json": paths["train_json"],
        "val_json": paths["val_json"],
        "env": env,
    }


@pytest.fixture(scope="session")
def embedded_default(tmp_path_factory):
    """The embedded dataset at its default parameters (the one the configs train on), generated
    once per session for the tests that read it; returns ``generate_embedded_lvis``'s paths."""
    from projects_lda.worlds import embedded

    return embedded.generate_embedded_lvis(str(tmp_path_factory.mktemp("embedded_default")))


def tiny_opts(out_dir, *opts):
    """Command-line options of train_net.py for a few fast iterations on the tiny dataset."""
    return [
        "DATASETS.TRAIN", "('tiny_embedded_train',)",
        "DATASETS.TEST", "('tiny_embedded_val',)",
        "MODEL.ROI_HEADS.NUM_CLASSES", str(TINY_CLASSES),
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.CHECKPOINT_PERIOD", "2",
        "DATALOADER.NUM_WORKERS", "0",
        "TEST.DETECTIONS_PER_IMAGE", "20",
        "OUTPUT_DIR", str(out_dir),
        *[str(o) for o in opts],
    ]


def make_train_args(out_dir, *opts, eval_only=False, resume=False, config=LDA_CONFIG,
                    num_gpus=1):
    """The ``argparse.Namespace`` that ``train_net.main`` takes, for the tiny dataset."""
    return argparse.Namespace(
        config_file=str(config),
        eval_only=eval_only,
        resume=resume,
        num_gpus=num_gpus,
        num_machines=1,
        machine_rank=0,
        dist_url="auto",
        opts=tiny_opts(out_dir, *opts),
    )


@pytest.fixture
def train_args(tiny_dataset):
    """``train_args(out_dir, *opts, eval_only=False, resume=False, config=LDA_CONFIG)``: the
    ``argparse.Namespace`` that ``train_net.main`` takes, for the tiny dataset."""
    return make_train_args


# The run of the ``trained_lda`` fixture: 4 iterations, an alpha window of 3 mini-batches.
TRAINED_LDA_ITERS = 4
TRAINED_LDA_OPTS = ("SOLVER.MAX_ITER", str(TRAINED_LDA_ITERS), "MODEL.LDA.WINDOW", "3")


@pytest.fixture(scope="session")
def trained_lda(tiny_dataset, tmp_path_factory):
    """
    LDA trained once per test session by ``train_net.main`` on the tiny dataset
    (``TRAINED_LDA_OPTS``), evaluated on ``tiny_embedded_val`` at the end of training, its
    predictions drawn into ``vis/``. For the tests that only need *a* trained model. Returns a
    dict with ``dir`` (the OUTPUT_DIR: metrics.json, model_final.pth, config.yaml, vis/,
    inference/), ``weights`` (its model_final.pth), ``opts`` and ``results`` (the evaluation).
    The folder is shared: a test that writes into it works on a copy (:func:`copy_run`).
    """
    import train_net

    out = tmp_path_factory.mktemp("trained_lda") / "run"
    results = train_net.main(make_train_args(out, *TRAINED_LDA_OPTS))
    return {"dir": out, "weights": out / "model_final.pth", "opts": TRAINED_LDA_OPTS,
            "results": results}


@pytest.fixture(scope="session")
def trained_baseline(tiny_dataset, tmp_path_factory):
    """The baseline Mask R-CNN trained as :func:`trained_lda` (same options and dict), for the
    tests that compare LDA's inference path with detectron2's own predictor."""
    import train_net

    out = tmp_path_factory.mktemp("trained_baseline") / "run"
    results = train_net.main(make_train_args(out, *TRAINED_LDA_OPTS, config=BASELINE_CONFIG))
    return {"dir": out, "weights": out / "model_final.pth", "opts": TRAINED_LDA_OPTS,
            "results": results}


def copy_run(run, dest):
    """A copy of the ``trained_lda`` folder at ``dest``, for a test that writes into it.
    ``last_checkpoint`` names a file of the folder, so --resume continues from the copy."""
    import shutil

    shutil.copytree(run["dir"], dest)
    return dest


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_worker_loop(rank, world, port, tasks, results):
    """A process of the gloo pool: joins the process group once (and detectron2's local one, as
    for a Trainer), then runs the functions it is sent until it gets None, answering
    ``(rank, True, value)`` or ``(rank, False, traceback)``."""
    import traceback

    import torch.distributed as dist

    from detectron2.utils import comm

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    # one machine: the local process group holds every rank, as detectron2's launch sets it up
    comm._LOCAL_PROCESS_GROUP = dist.new_group(list(range(world)))
    try:
        for fn in iter(tasks.get, None):
            try:
                results.put((rank, True, fn(rank)))
            except BaseException:
                results.put((rank, False, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


class _GlooPool:
    """``world`` spawned processes joined by a gloo process group, kept for the whole session:
    starting them (a fresh interpreter importing torch, detectron2 and the project, twice) costs
    more than most functions they run."""

    def __init__(self, world):
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.world = world
        self.tasks = [ctx.Queue() for _ in range(world)]
        self.results = ctx.Queue()
        port = _free_port()
        self.procs = [
            ctx.Process(target=_gloo_worker_loop, daemon=True,
                        args=(r, world, port, self.tasks[r], self.results))
            for r in range(world)
        ]
        for proc in self.procs:
            proc.start()

    def run(self, fn, timeout):
        for q in self.tasks:
            q.put(fn)
        out, errors = {}, []
        for _ in range(self.world):
            rank, ok, value = self.results.get(timeout=timeout)
            if not ok:
                errors.append(f"gloo worker {rank} failed:\n{value}")
                break  # the other worker may wait in a collective: the pool is dropped
            out[rank] = value
        if errors:
            raise AssertionError("\n".join(errors))
        return out

    def close(self, terminate=False):
        for q in self.tasks:
            if not terminate:
                q.put(None)
        for proc in self.procs:
            if terminate:
                proc.terminate()
            proc.join(timeout=60)


_GLOO_POOL = None


def run_gloo_workers(fn, world=2, timeout=300):
    """
    Runs ``fn(rank)`` in ``world`` processes joined by a gloo process group and returns
    ``{rank: fn(rank)}``. ``fn`` must be a module-level function (it is pickled). The processes
    are spawned on first use and serve every later call of the session; a call that fails or
    times out ends them (the next call spawns new ones). They are daemons: ``fn`` cannot start
    processes (``DATALOADER.NUM_WORKERS`` 0).
    """
    global _GLOO_POOL
    if _GLOO_POOL is None or _GLOO_POOL.world != world:
        if _GLOO_POOL is not None:
            _GLOO_POOL.close()
        _GLOO_POOL = _GlooPool(world)
    try:
        return _GLOO_POOL.run(fn, timeout)
    except BaseException:
        _GLOO_POOL.close(terminate=True)
        _GLOO_POOL = None
        raise


@pytest.fixture(scope="session", autouse=True)
def _close_gloo_pool():
    yield
    if _GLOO_POOL is not None:
        _GLOO_POOL.close(terminate=True)  # nothing to save: no need to wait for a clean exit


def make_proposals(gt_classes):
    """One image of identical proposals with the given classes; its gt boxes equal the proposals
    (box regression loss 0)."""
    from detectron2.structures import Boxes, Instances

    n = len(gt_classes)
    boxes = torch.tensor([[1.0, 1.0, 5.0, 5.0]] * n).reshape(n, 4)
    inst = Instances((10, 10))
    inst.proposal_boxes = Boxes(boxes)
    inst.gt_boxes = Boxes(boxes.clone())
    inst.gt_classes = torch.tensor(gt_classes, dtype=torch.long)
    return [inst]


def run_losses(predictor, gt_classes, seed=0):
    """``predictor.losses`` on 8-d random features of :func:`make_proposals`."""
    from detectron2.utils.events import EventStorage

    torch.manual_seed(seed)
    x = torch.rand(len(gt_classes), 8)
    with EventStorage():
        return predictor.losses(predictor(x), make_proposals(gt_classes))


def assert_finite_and_every_parameter_gets_a_gradient(predictor, losses):
    """Finite losses, and a backward pass in which every parameter takes part (DDP needs it)."""
    for k, v in losses.items():
        assert torch.isfinite(v), k
    sum(losses.values()).backward()
    for name, p in predictor.named_parameters():
        assert p.grad is not None, f"{name} takes no part in the backward pass"
        assert torch.isfinite(p.grad).all(), name


def relabel_rare(gt, every):
    """
    Gives every ``every``-th annotation of ``gt`` a rare category (in turn), in place, keeping
    the federated lists consistent: a category annotated in an image is not among its
    ``neg_category_ids``, and ``not_exhaustive_category_ids`` only names annotated ones. At a
    few dozen images rare categories hardly appear otherwise, and APr would not count.
    """
    rare = [c["id"] for c in gt["categories"] if c["frequency"] == "r"]
    images = {img["id"]: img for img in gt["images"]}
    for i, a in enumerate(gt["annotations"][::every]):
        a["category_id"] = rare[i % len(rare)]
        img = images[a["image_id"]]
        img["neg_category_ids"] = [c for c in img["neg_category_ids"] if c != a["category_id"]]
    annotated = {}
    for a in gt["annotations"]:
        annotated.setdefault(a["image_id"], set()).add(a["category_id"])
    for img in gt["images"]:
        img["not_exhaustive_category_ids"] = [
            c for c in img["not_exhaustive_category_ids"] if c in annotated.get(img["id"], ())]
    return gt
