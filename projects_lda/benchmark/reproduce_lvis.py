"""
Reproduce the paper's LVIS v1 result (Table 4, Mask R-CNN R-50 FPN, 12 epochs): train and
evaluate the baseline and LDA with ``train_net.py`` and print their APs beside the paper's.

    DETECTRON2_DATASETS=/data python tools/reproduce_lvis.py --num-gpus 8 --output runs/lvis
    # here: LVIS-shaped data, 2 iterations
    python tools/reproduce_lvis.py --dry-run --output /tmp/repro

Before anything starts it checks what the runs need and names what is missing: LVIS v1 under
``$DETECTRON2_DATASETS`` (``lvis/lvis_v1_{train,val}.json`` and the COCO 2017 images in
``coco/train2017`` and ``coco/val2017``, detectron2's layout) and ``--num-gpus`` CUDA devices.
A run that was interrupted continues from its last checkpoint (``--resume``); a finished run
(``model_final.pth`` and its results in ``log.txt``) is not trained again.

``--dry-run`` runs the same commands on an LVIS v1-shaped dataset (projects_lda/data/
lvis_shaped.py) on the CPU for 2 iterations with random weights and a tiny learning rate at
256 px, with GroupNorm in the random backbone (frozen BatchNorm of random weights normalises
nothing): it checks the script, not the method; its APs are zero.
"""
import argparse
import os
import re
import subprocess
import sys

import torch

from ..worlds.lvis_shaped import extra_datasets_spec, generate_lvis_shaped

CONFIGS = {
    "baseline": "configs/LVISv1/mask_rcnn_R_50_FPN_12ep_lvisv1.yaml",
    "lda": "configs/LVISv1/lda_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml",
}
# Paper, Table 4 (LVIS v1 val, R-50 FPN, 12 epochs); None: not given for that row
PAPER = {
    "baseline": {"segm/AP": 21.8, "segm/APr": 10.2, "segm/APc": None, "segm/APf": None,
                 "bbox/AP": None},
    "lda": {"segm/AP": 24.4, "segm/APr": 18.2, "segm/APc": 23.7, "segm/APf": 27.9, "bbox/AP": 25.2},
}
COLUMNS = ["segm/AP", "segm/APr", "segm/APc", "segm/APf", "bbox/AP"]


def check_requirements(num_gpus, datasets_root):
    """The list of what is missing for the real runs (empty: all there)."""
    missing = []
    for rel in ("lvis/lvis_v1_train.json", "lvis/lvis_v1_val.json"):
        if not os.path.isfile(os.path.join(datasets_root, rel)):
            missing.append(f"LVIS v1 annotations: {os.path.join(datasets_root, rel)} not found")
    for rel in ("coco/train2017", "coco/val2017"):
        if not os.path.isdir(os.path.join(datasets_root, rel)):
            missing.append(f"COCO 2017 images: folder {os.path.join(datasets_root, rel)} not found")
    try:
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as e:  # a broken CUDA install
        found, missing = 0, missing + [f"CUDA: {e!r}"]
    if found < num_gpus:
        missing.append(f"GPUs: --num-gpus {num_gpus} but {found} CUDA device(s) found")
    return missing


def parse_results(log_file):
    """The last ``copypaste`` result block of each task (bbox, segm) in a detectron2 log."""
    results, task, header = {}, None, None
    with open(log_file) as f:
        for line in f:
            m = re.search(r"copypaste: (.*)$", line.strip())
            if not m:
                continue
            text = m.group(1)
            if text.startswith("Task: "):
                task, header = text[len("Task: "):].strip(), None
            elif header is None:
                header = text.split(",")
            elif task is not None:
                values = [float(v) for v in text.split(",")]
                results[task] = dict(zip(header, values))
                header = None
    return {f"{t}/{k}": v for t, r in results.items() for k, v in r.items()}


def format_table(measured):
    """The measured APs of each method above the paper's, one row each."""
    lines = [f"{'':24}" + "".join(f"{c:>10}" for c in COLUMNS)]
    for method in measured:
        for label, row in ((f"{method} (this run)", measured[method]),
                           (f"{method} (paper)", PAPER.get(method, {}))):
            cells = "".join(
                f"{row[c]:10.1f}" if row.get(c) is not None else f"{'-':>10}" for c in COLUMNS
            )
            lines.append(f"{label:24}{cells}")
    return "\n".join(lines)


def run_method(method, out_dir, num_gpus, extra_opts, env, root="."):
    """Trains and evaluates ``method`` with train_net.py into ``out_dir`` (resuming an
    interrupted run, skipping a finished one); returns its results."""
    log = os.path.join(out_dir, "log.txt")
    if (os.path.isfile(os.path.join(out_dir, "model_final.pth")) and os.path.isfile(log)
            and parse_results(log)):
        print(f"{method}: finished run found in {out_dir}, not trained again", flush=True)
        return parse_results(log)
    root = os.path.abspath(root)
    cmd = [sys.executable, os.path.join(root, "train_net.py"), "--config-file",
           os.path.join(root, CONFIGS[method]), "--num-gpus", str(num_gpus)]
    if os.path.isfile(os.path.join(out_dir, "last_checkpoint")):
        cmd.append("--resume")
    cmd += ["OUTPUT_DIR", out_dir, *extra_opts]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=root)
    results = parse_results(log)
    if not results:
        raise RuntimeError(f"{method}: no evaluation results in {log}")
    return results


def dry_run_setup(out):
    """LVIS v1-shaped data and the options/environment that make train_net.py use it."""
    paths = generate_lvis_shaped(os.path.join(out, "lvis_shaped"), "tiny", val_size=2, pool_size=4)
    env = dict(os.environ, LDA_EXTRA_DATASETS=extra_datasets_spec(paths, "repro"))
    env.setdefault("OMP_NUM_THREADS", "1")
    opts = [
        "DATASETS.TRAIN", "('repro_train',)", "DATASETS.TEST", "('repro_val',)",
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()",
        "SOLVER.WARMUP_ITERS", "0", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.BASE_LR", "1e-5",
        "SOLVER.CHECKPOINT_PERIOD", "1000", "INPUT.MIN_SIZE_TRAIN", "(256,)",
        "INPUT.MIN_SIZE_TEST", "256", "DATALOADER.NUM_WORKERS", "0", "SEED", "0",
        # a random ResNet-50 with frozen BN blows its activations up and predicts nothing above
        # the 1e-4 threshold; GroupNorm keeps them at scale (dry run only)
        "MODEL.RESNETS.NORM", "GN",
    ]
    return opts, env


def main(argv=None, root="."):
    """``tools/reproduce_lvis.py``, with ``train_net.py`` and the configs of the checkout
    ``root``: the measured results {method: {metric: value}}, or 2 when what the real runs need
    is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-gpus", type=int, default=8)
    parser.add_argument("--output", default="output/reproduce_lvis")
    parser.add_argument("--methods", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, LVIS-shaped data, 2 iterations")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config options for both runs")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.output)
    if args.dry_run:
        os.makedirs(out, exist_ok=True)
        extra, env = dry_run_setup(out)
        num_gpus = 1
    else:
        datasets_root = os.environ.get("DETECTRON2_DATASETS", "datasets")
        missing = check_requirements(args.num_gpus, datasets_root)
        if missing:
            print("Cannot start: " + "; ".join(missing), file=sys.stderr)
            print("(set DETECTRON2_DATASETS to the folder holding lvis/ and coco/, and --num-gpus "
                  "to the CUDA devices of this machine)", file=sys.stderr)
            return 2
        extra, env, num_gpus = [], dict(os.environ), args.num_gpus
    extra += list(args.opts)
    measured = {}
    for method in args.methods:
        measured[method] = run_method(method, os.path.join(out, method), num_gpus, extra, env,
                                      root)
    print("\nLVIS v1 val, Mask R-CNN R-50 FPN, 12 epochs"
          + (" (DRY RUN: meaningless)" if args.dry_run else ""))
    print(format_table(measured))
    return measured
