"""
The tuning protocol of the long-tail benchmark (``tools/benchmark.py --tune`` / ``--report``),
as written down in ``docs/benchmark_protocol.md`` before any run:

* every method gets the same budget: two settings of the knob its paper calls important
  (:data:`GRIDS`; the first one is the paper's default, the "untuned" row);
* each setting is trained with seed 0 and evaluated on the variant's ``val`` split (selection)
  and ``test`` split (report) in the same run; the setting with the best val segm AP is chosen,
  and where the best two are within :data:`TIE_MARGIN` AP both get seed 1 too and the mean
  decides (ties: the paper's default);
* the chosen setting is reported on ``test`` with seeds 0, 1, 2 (:data:`REPORT_SEEDS`; seed 0
  only for the methods named by ``--single-seed``, where the time does not allow three), the
  paper's default with :data:`UNTUNED_SEEDS`.

A variant (:data:`VARIANTS`) names the registered dataset splits the runs train and evaluate on,
the folder of the methods' configs and the settings that differ from :data:`GRIDS` (where a
knob's values depend on the dataset's size).

A run is identified by (method, setting, seed); its small result file (the ``run.json`` of
:mod:`projects_lda.benchmark.runs`, without checkpoints or detections) is kept under
``RECORDS/<variant>/<method>/<setting>/seed<k>.json``, a folder tracked by git, so that the
protocol resumes, run by run, from what an earlier session committed. A record made with other
config options (e.g. a short smoke run), or whose config differs from what the method's config
files give now (e.g. a schedule changed in a YAML file since), does not count and is run again;
the record it replaces is kept beside it as ``seed<k>.json.replaced``.

:func:`next_runs` is a pure function of the finished records; :func:`run_protocol` repeatedly
asks it what can run now and runs that, ``jobs`` at a time, so each method's report runs start as
soon as its own selection is made; :func:`tune_or_report` is the command line's ``--tune`` and
``--report``.
"""
import functools
import json
import logging
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import NamedTuple

import yaml

from ..config import flat_config, get_project_cfg
from .report import build_report, write_report
from .runs import (METHODS, child_env, run_lock, shareable_record, train_in_subprocess,
                   with_location)

logger = logging.getLogger("benchmark")

SELECT_TASK, SELECT_METRIC = "segm", "AP"  # LVIS's headline metric, on val
TIE_MARGIN = 1.0  # AP points: closer than this, the best two get a second seed
TUNE_SEED, TIE_SEED = 0, 1
REPORT_SEEDS = (0, 1, 2)
UNTUNED_SEEDS = (0,)  # the paper-default row (seed 0 is a tuning run; see the protocol's time)

_NO_RFS = ["DATALOADER.SAMPLER_TRAIN", "TrainingSampler"]
# method -> [(setting, config options)], the paper's default first
GRIDS = {
    # repeat-factor sampling threshold t (LVIS: 0.001; 0.1 here, see Base-Embedded-CPU.yaml)
    "baseline": [("rfs_t0.1", []), ("rfs_t0.3", ["DATALOADER.REPEAT_THRESHOLD", "0.3"])],
    # the paper's loss is factor 1; 5 is the shipped value (chosen on the old val split)
    "lda": [("factor1", ["MODEL.LDA.BALANCED_LOSS_FACTOR", "1.0"]), ("factor5", [])],
    # the paper's cosine classifier (tau 20) on / off, p 0.8 and q 2 fixed
    "seesaw": [("cosine", []), ("linear", ["MODEL.PEERS.SEESAW.NORMED_LINEAR", "False"])],
    # EQLv2's released LVIS recipe trains without repeat-factor sampling
    "eqlv2": [("no_rfs", _NO_RFS), ("rfs", [])],
    # |S| = 50 as on LVIS (covers every class here: a plain sigmoid CE), or 12 (half the classes)
    "fedloss": [("num_classes50", ["MODEL.PEERS.FED_LOSS.NUM_CLASSES", "50"]),
                ("num_classes12", [])],
    # prior from the class frequencies under the sampler, with / without repeat-factor sampling
    "balanced_softmax": [("rfs", []), ("no_rfs", _NO_RFS)],
}


class Variant(NamedTuple):
    """A dataset the protocol runs on."""

    prefix: str  # its registered splits: <prefix>_train, <prefix>_val, <prefix>_test
    num_classes: int
    config_dir: str = "configs/Embedded"  # the methods' configs, named as in configs/Embedded/
    dataset: str = "embedded"  # the configs' dataset name: <method>_mask_rcnn_..._<dataset>.yaml
    grids: dict = {}  # method -> its grid, where it differs from GRIDS
    # method -> (source variant, {source setting: setting here}): the method is not tuned on
    # this variant; it runs the setting the source variant's protocol chose (renamed where the
    # two grids name one value differently), where a grid does not fit the time
    carry_over: dict = {}


VARIANTS = {
    "exhaustive": Variant("lvis_embedded", 24),
    "federated": Variant("lvis_embedded_fed", 30),
    # 300 classes in LVIS v1's shape (docs/benchmark_many_class.md): the knobs whose values
    # scale with the dataset take LVIS's values scaled to it
    "many_class": Variant(
        "lvis_embedded_many", 300, "configs/EmbeddedMany", "embeddedmany", grids={
            # LVIS's t = 0.001 is 100 of its training images: 100 of 2,500 here; and 3x it, as
            # the small variants' alternative
            "baseline": [("rfs_t0.04", []),
                         ("rfs_t0.12", ["DATALOADER.REPEAT_THRESHOLD", "0.12"])],
            # |S| = 50 as on LVIS (a sixth of the classes here), or LVIS's share of the classes:
            # 50 / 1,203 of 300 = 12
            "fedloss": [("num_classes50", []),
                        ("num_classes12", ["MODEL.PEERS.FED_LOSS.NUM_CLASSES", "12"])],
        }),
    # the icon world (docs/icon_world.md): LVIS's vocabulary, image counts and real object
    # appearance; the knobs that scale with the dataset take LVIS's values scaled to it, as above
    "icons_small": Variant(
        "lvis_icons_small", 100, "configs/IconsSmall", "iconssmall", grids={
            # LVIS's t = 0.001 is 100 of its training images: 100 of 1,500 here; and 3x it
            "baseline": [("rfs_t0.067", []),
                         ("rfs_t0.2", ["DATALOADER.REPEAT_THRESHOLD", "0.2"])],
            # |S| = 50 as on LVIS (half the classes here), or LVIS's share: 50 / 1,203 of 100 = 4
            "fedloss": [("num_classes50", []),
                        ("num_classes4", ["MODEL.PEERS.FED_LOSS.NUM_CLASSES", "4"])],
        }),
    "icons_1203": Variant(
        "lvis_icons_1203", 1203, "configs/Icons1203", "icons1203", grids={
            # 100 of the 6,000 training images; and 3x it
            "baseline": [("rfs_t0.0167", []),
                         ("rfs_t0.05", ["DATALOADER.REPEAT_THRESHOLD", "0.05"])],
            # |S| = 50 as on LVIS (its share of 1,203 classes), or twice it
            "fedloss": [("num_classes50", []),
                        ("num_classes100", ["MODEL.PEERS.FED_LOSS.NUM_CLASSES", "100"])],
        }, carry_over={
            # a 1,203-class run costs hours (docs/icon_world.md, "Settings"): the four peers take
            # the small setting's choice, the baseline and LDA are tuned here
            "seesaw": ("icons_small", {}),
            "eqlv2": ("icons_small", {}),
            # |S| 4 at 100 classes is LVIS's share of the classes, which at 1,203 is LVIS's 50
            "fedloss": ("icons_small", {"num_classes4": "num_classes50"}),
            "balanced_softmax": ("icons_small", {}),
        }),
}


def get_variant(variant):
    if variant not in VARIANTS:
        raise SystemExit(f"--variant: unknown variant {variant!r}; known: {sorted(VARIANTS)}")
    return VARIANTS[variant]


def variant_grids(variant):
    """The tuning grids of every method on the variant."""
    return {**GRIDS, **get_variant(variant).grids}


def method_config(method, variant, root="."):
    """The config file of ``method`` (a key of :data:`~.runs.METHODS`) on the variant, relative
    to the checkout ``root``."""
    v = get_variant(variant)
    config = Path(METHODS[method][0])
    if v.config_dir != str(config.parent):
        config = Path(v.config_dir) / config.name.replace("_embedded.yaml", f"_{v.dataset}.yaml")
        if not (Path(root) / config).is_file():
            raise SystemExit(f"{method} has no config for the {variant} variant: "
                             f"{config} not found")
    return str(config)


def carried_grid(method, variant, settings_dir):
    """
    The one-setting grid of a method that ``variant`` carries over (:attr:`Variant.carry_over`):
    the setting chosen in the source variant's settings file ``settings_dir/tuned_<source>.json``,
    with this variant's options; None while that file has no choice for it.
    """
    source, renamed = get_variant(variant).carry_over[method]
    path = Path(settings_dir) / f"tuned_{source}.json"
    entry = _settings_entries(path, source).get(method)
    chosen = entry.get("chosen") if isinstance(entry, dict) else None
    if chosen is None:
        return None
    setting = renamed.get(chosen, chosen)
    grid = dict(variant_grids(variant)[method])
    if setting not in grid:
        raise SystemExit(f"{path}: {method}'s chosen setting {chosen!r} has no counterpart in "
                         f"the {variant} grid {list(grid)}")
    return [(setting, grid[setting])]


def variant_opts(variant):
    """Config options that train on the variant and evaluate on its val, then test split."""
    prefix, num_classes = get_variant(variant)[:2]
    return ["DATASETS.TRAIN", f"('{prefix}_train',)",
            "DATASETS.TEST", f"('{prefix}_val', '{prefix}_test')",
            "MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes)]  # fmt: skip


def val_score(record, variant):
    """The selection metric of a finished run: its val segm AP."""
    prefix = get_variant(variant).prefix
    return record["splits"][f"{prefix}_val"][SELECT_TASK][SELECT_METRIC]


def select(scores, settings):
    """
    One method's selection from its val scores.

    Args:
        scores (dict): {setting: {seed: val AP}} of the finished runs.
        settings (list[str]): the method's settings, the paper's default first.

    Returns:
        (chosen setting or None, list of (setting, seed) still needed to decide).
    """
    missing = [(s, TUNE_SEED) for s in settings if TUNE_SEED not in scores.get(s, {})]
    if missing:
        return None, missing
    # best first; equal scores: the earlier setting (the paper's default first)
    ranked = sorted(settings, key=lambda s: (-scores[s][TUNE_SEED], settings.index(s)))
    best = [scores[s][TUNE_SEED] for s in ranked[:2]]
    if len(ranked) == 1 or best[0] - best[1] >= TIE_MARGIN:
        return ranked[0], []
    top = ranked[:2]
    missing = [(s, TIE_SEED) for s in top if TIE_SEED not in scores[s]]
    if missing:
        return None, missing

    def mean(s):
        return (scores[s][TUNE_SEED] + scores[s][TIE_SEED]) / 2

    return sorted(top, key=lambda s: (-mean(s), settings.index(s)))[0], []


def next_runs(grids, scores, done, chosen=None, report_seeds=None):
    """
    The runs the protocol needs now, given the finished ones.

    Args:
        grids (dict): {method: [(setting, opts)]}.
        scores (dict): {method: {setting: {seed: val AP}}}.
        done (set): finished (method, setting, seed).
        chosen (dict or None): {method: setting} fixed beforehand (the report mode); None:
            chosen from ``scores``.
        report_seeds (dict or None): {method: seeds} of the report where not
            :data:`REPORT_SEEDS`.

    Returns:
        (runs, chosen): the (method, setting, seed) to run now, seed by seed, and the settings
        chosen so far {method: setting}.
    """
    runs, picked = [], {}
    for method, grid in grids.items():
        settings = [s for s, _ in grid]
        if chosen is not None:
            best, needed = chosen[method], []
        else:
            best, needed = select(scores.get(method, {}), settings)
        if best is not None:
            picked[method] = best
            seeds = (report_seeds or {}).get(method, REPORT_SEEDS)
            needed = [(best, s) for s in seeds] + [(settings[0], s) for s in UNTUNED_SEEDS]
        runs += [(method, s, seed) for s, seed in dict.fromkeys(needed)
                 if (method, s, seed) not in done]  # fmt: skip
    methods = list(grids)
    runs.sort(key=lambda r: (r[2], methods.index(r[0])))
    return runs, picked


def record_path(records, variant, method, setting, seed):
    return Path(records) / variant / method / setting / f"seed{seed}.json"


# Keys a run sets for itself (or for the machine) or that do not change what it trains and
# measures: not compared between a record and the config of today.
_RUN_KEYS = frozenset({"SEED", "OUTPUT_DIR", "MODEL.DEVICE", "TEST.LVIS_EVAL.WRITE_RESULTS_JSON",
                       "SOLVER.CHECKPOINT_PERIOD", "SOLVER.CHECKPOINT_MAX_TO_KEEP"})


def _flat_config(text):
    """A config's YAML text as {"SOLVER.MAX_ITER": value, ...} (YAML's types on both sides)."""
    return flat_config(yaml.safe_load(text))


@functools.lru_cache(maxsize=None)
def _config_now(config_file, opts):
    """The flat config ``config_file`` with ``opts`` (a tuple) gives today: one build for all
    the seeds and records of a setting."""
    cfg = get_project_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return _flat_config(cfg.dump())


def config_changes(record, config_file, opts):
    """
    ``{key: (recorded, now)}``: the config keys whose value in the record's full config (the
    ``config.yaml`` its run wrote) differs from what ``config_file`` with ``opts`` gives now,
    e.g. a schedule changed in a YAML file since the record was made. Keys only one side has
    are not compared: a key added to the project since keeps, at its default, the behaviour
    the record was made with. A record without its config (made by tests) has no changes.
    """
    if "config" not in record:
        return {}
    now, then = _config_now(str(config_file), tuple(opts)), _flat_config(record["config"])
    return {k: (then[k], now[k]) for k in sorted(now.keys() & then.keys() - _RUN_KEYS)
            if then[k] != now[k]}


def is_evaluation_key(key):
    """Whether a flat config key only changes how a trained model is evaluated (its test sets,
    test-time sizes and thresholds, the detections kept, the metrics), not what it trains.
    ``TEST.PRECISE_BN`` recomputes the weights' statistics after training: a training key."""
    return (key == "DATASETS.TEST" or key.endswith("_TEST")
            or (key.startswith("TEST.") and not key.startswith("TEST.PRECISE_BN.")))


def evaluation_only_change(record, config_file, opts):
    """Whether a record made with ``opts`` differs from ``config_file`` with them only in
    evaluation keys (:func:`is_evaluation_key`): its weights stand, only its evaluation is old."""
    changes = config_changes(record, config_file, opts)
    return (record.get("opts") == list(opts) and bool(changes)
            and all(is_evaluation_key(k) for k in changes))


def stale_reason(record, config_file, opts):
    """Why a finished run's record does not count for a run of ``config_file`` with ``opts``
    (other options, or a config changed since); "" when it counts."""
    if record.get("opts") != list(opts):
        return f"made with other options {record.get('opts')}"
    changes = config_changes(record, config_file, opts)
    if changes:
        return "made with another config: " + ", ".join(
            f"{k} {a!r} in the record, {b!r} now" for k, (a, b) in changes.items())
    return ""


def _free_name(path, suffix):
    """``path`` + ``suffix``, or + ``suffix`` + a number, whichever does not exist yet."""
    candidate, n = Path(str(path) + suffix), 1
    while candidate.exists():
        candidate, n = Path(f"{path}{suffix}{n}"), n + 1
    return candidate


def load_records(records, variant, grids, stale):
    """Finished runs {(method, setting, seed): record}. ``stale(method, setting, record)``
    gives why a record does not count ("" when it does): those are skipped with a warning and
    will be run again."""
    out = {}
    for method, grid in grids.items():
        for setting, _ in grid:
            folder = Path(records) / variant / method / setting
            for f in sorted(folder.glob("seed*.json")):
                seed = int(f.stem[len("seed"):])
                record = json.loads(f.read_text())
                reason = stale(method, setting, record)
                if reason:
                    logger.warning("%s: %s; will run again (evaluated again from its weights "
                                   "where only evaluation keys changed)", f, reason)
                    continue
                out[method, setting, seed] = record
    return out


def settings_file_content(variant, grids, scores, chosen, report_seeds=None, carried=None):
    report_seeds, carried = report_seeds or {}, carried or {}
    return {
        "variant": variant,
        "selection": f"val {SELECT_TASK} {SELECT_METRIC}, seed {TUNE_SEED}; seed {TIE_SEED} "
                     f"too where the best two are within {TIE_MARGIN} AP",
        "report_seeds": list(REPORT_SEEDS),
        "untuned_seeds": list(UNTUNED_SEEDS),
        "methods": {
            m: {"chosen": chosen.get(m), "untuned": grid[0][0],
                **({"report_seeds": list(report_seeds[m])} if m in report_seeds else {}),
                **({"carried_over_from": carried[m]} if m in carried else {}),
                "settings": {s: {"opts": opts,
                                 "val_ap": {str(k): v for k, v in
                                            sorted(scores.get(m, {}).get(s, {}).items())}}
                             for s, opts in grid}}
            for m, grid in grids.items()
        },
    }  # fmt: skip


def _settings_entries(settings_file, variant):
    """{method: entry} of an existing settings file of ``variant`` (empty if the file is
    absent, unreadable or of another variant)."""
    try:
        data = json.loads(Path(settings_file).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("variant") != variant:
        return {}
    methods = data.get("methods")
    return methods if isinstance(methods, dict) else {}


def _other_methods(settings_file, variant, grids):
    """The entries of the methods not in ``grids`` in an existing settings file of ``variant``."""
    return {m: e for m, e in _settings_entries(settings_file, variant).items() if m not in grids}


def _method_rank(variant):
    """Sort key of method names: the variant's order (``VARIANTS``), others after it."""
    order = list(variant_grids(variant))
    return lambda m: order.index(m) if m in order else len(order)


def _entry_grid(entry):
    """The grid [(setting, opts)] of a settings-file entry, the paper's default first."""
    order = [entry["untuned"]] + [s for s in entry["settings"] if s != entry["untuned"]]
    return [(s, entry["settings"][s]["opts"]) for s in order]


def read_settings_file(path, only=None):
    """(variant, grids, chosen, report_seeds, carried) from a settings file written by
    :func:`run_protocol` (report_seeds: {method: seeds} where not :data:`REPORT_SEEDS`;
    carried: {method: source variant} of the carried-over ones), for the methods ``only``
    (default: all of the file's; each must have its setting chosen)."""
    data = json.loads(Path(path).read_text())
    methods = data["methods"]
    if only:
        unknown = [m for m in only if m not in methods]
        if unknown:
            raise SystemExit(f"{path}: no method {unknown}; it has {list(methods)}")
        methods = {m: v for m, v in methods.items() if m in only}
    undecided = [m for m, v in methods.items() if v.get("chosen") is None]
    if undecided:
        raise SystemExit(f"{path}: no setting chosen yet for {undecided}; run --tune first")
    grids = {m: _entry_grid(v) for m, v in methods.items()}
    report_seeds = {m: tuple(v["report_seeds"]) for m, v in methods.items() if "report_seeds" in v}
    carried = {m: v["carried_over_from"] for m, v in methods.items() if "carried_over_from" in v}
    return (data["variant"], grids, {m: v["chosen"] for m, v in methods.items()}, report_seeds,
            carried)


def run_protocol(*, variant, grids, records, settings_file, execute, stale, jobs=1,
                 chosen=None, report_seeds=None, train=True, carried=None):
    """
    Runs the protocol to the end (or as far as the failures allow).

    Args:
        execute (callable): ``execute(method, setting, seed) -> record or None`` trains and
            evaluates one run (None: it failed).
        stale (callable): ``stale(method, setting, record)``: why a finished run's record does
            not count for the run of today ("" when it does; :func:`stale_reason`).
        chosen: the report mode's fixed settings; None: tune.
        report_seeds: {method: seeds} of the report where not :data:`REPORT_SEEDS`.
        train: False: run nothing, only read the finished runs' records.
        carried: {method: source variant} of the methods whose one setting is carried over.

    Returns:
        (records {(method, setting, seed): record}, chosen {method: setting}, failed runs).
    """
    done = load_records(records, variant, grids, stale)
    failed, running = set(), {}

    def state():
        scores = {}
        for (m, s, seed), rec in done.items():
            scores.setdefault(m, {}).setdefault(s, {})[seed] = val_score(rec, variant)
        runs, picked = next_runs(grids, scores, set(done), chosen, report_seeds)
        return scores, [r for r in runs if r not in failed and r not in running.values()], picked

    def save_settings():
        if chosen is None and settings_file:
            scores, _, picked = state()
            content = settings_file_content(variant, grids, scores, picked, report_seeds,
                                            carried)
            # a run of some of the methods keeps the others' entries (runs in several sessions)
            methods = {**_other_methods(settings_file, variant, grids), **content["methods"]}
            order = sorted(methods, key=_method_rank(variant))  # whoever wrote it last
            content["methods"] = {m: methods[m] for m in order}
            Path(settings_file).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(str(settings_file) + ".tmp")
            tmp.write_text(json.dumps(content, indent=2) + "\n")
            os.replace(tmp, settings_file)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while train:
            _, ready, _ = state()
            for run in ready[: max(0, jobs - len(running))]:
                logger.info("%s %s seed %d: starting", *run)
                running[pool.submit(execute, *run)] = run
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                run = running.pop(future)
                record = future.result()
                if record is None:  # execute said why: a crash, or another command's run
                    logger.error("%s %s seed %d: not finished by this command", *run)
                    failed.add(run)
                    continue
                path = record_path(records, variant, *run)
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_file():  # a stale record: kept, not overwritten
                    os.replace(path, _free_name(path, ".replaced"))
                tmp = path.with_suffix(".json.tmp")
                # the committed copy names no path of this machine (its run.json does)
                tmp.write_text(json.dumps(shareable_record(record), indent=2) + "\n")
                os.replace(tmp, path)  # written last: the run counts as finished
                done[run] = record
            save_settings()
    save_settings()
    _, _, picked = state()
    return done, picked, sorted(failed)


def tune_or_report(args, execute=None, root="."):
    """
    ``--tune`` / ``--report`` of ``tools/benchmark.py`` (``args``: its parsed arguments), on the
    configs and settings files of the checkout ``root``.

    ``execute(method, setting, seed, opts, run_dir) -> record or None`` trains one run (tests
    pass a fake one); by default a child process of :mod:`projects_lda.benchmark.runs`.
    """
    if args.tune and args.report:
        raise SystemExit("--tune and --report exclude each other")
    if args.report:
        variant, grids, chosen, report_seeds, carried = read_settings_file(args.report,
                                                                           args.methods)
        settings_file, waiting, others, tabled = None, [], {}, {}
    else:
        variant, chosen = args.variant, None
        known = variant_grids(variant)
        names = args.methods or list(known)
        unknown = [m for m in names + list(args.single_seed) if m not in known]
        if unknown:
            raise SystemExit(f"--methods / --single-seed: no tuning grid for {unknown}; known: "
                             f"{list(known)}")
        report_seeds = {m: (TUNE_SEED,) for m in args.single_seed}
        settings_file = args.settings or Path(root) / "docs" / "benchmark" / f"tuned_{variant}.json"
        carry_over = get_variant(variant).carry_over
        grids, carried, waiting = {}, {}, []
        for m in names:
            if m not in carry_over:
                grids[m] = known[m]
            elif (grid := carried_grid(m, variant, Path(settings_file).parent)) is None:
                waiting.append(m)
            else:
                grids[m], carried[m] = grid, carry_over[m][0]
        if waiting:
            logger.warning("%s: not run yet: their setting is carried over from %s, which has "
                           "not chosen it (%s)", waiting,
                           sorted({carry_over[m][0] for m in waiting}),
                           Path(settings_file).parent)
        # the methods another session tuned (a setting chosen in the settings file): their
        # records are read into the tables, so a run of some methods tables all of them
        others = {m: e for m, e in _other_methods(settings_file, variant, grids).items()
                  if m in known and m not in names and e.get("chosen") is not None}
        tabled = {m: _entry_grid(e) for m, e in others.items()}
        carried.update({m: e["carried_over_from"] for m, e in others.items()
                        if "carried_over_from" in e})
        if args.finished_only:
            settings_file = None  # the protocol's file, written by the protocol only
    base_opts = variant_opts(variant)
    every_grid = {**grids, **tabled}
    configs = {m: method_config(m, variant, root) for m in every_grid}
    out = Path(args.output) / variant
    env = child_env(args.jobs)

    def opts_of(method, setting):
        return [*METHODS[method][1], *dict(every_grid[method])[setting], *base_opts, *args.opts]

    def subprocess_execute(method, setting, seed, opts, run_dir):
        label = f"{method} {setting} seed {seed}"
        code = train_in_subprocess(label, run_dir, configs[method], seed, opts, env, root)
        if code != 0:
            logger.error("%s failed (exit %d); see %s", label, code, run_dir / "stdout.txt")
            return None
        return json.loads((run_dir / "run.json").read_text())

    execute = execute or subprocess_execute

    def stale(method, setting, record):
        return stale_reason(record, Path(root) / configs[method], opts_of(method, setting))

    busy = {}  # {run: pid} of the runs another command is training

    def run(method, setting, seed):
        run_dir = out / method / setting / f"seed{seed}"
        with run_lock(run_dir) as holder:
            if holder is None:
                return run_unlocked(method, setting, seed, run_dir)
        logger.error("%s %s seed %d: another benchmark command (pid %s) is training %s; left to "
                     "it", method, setting, seed, holder, run_dir)
        busy[method, setting, seed] = holder
        return None

    def run_unlocked(method, setting, seed, run_dir):
        opts = opts_of(method, setting)
        finished, started = run_dir / "run.json", run_dir / "config.yaml"
        if finished.is_file():  # finished before its record was copied
            record = json.loads(finished.read_text())
        elif started.is_file():  # unfinished: resumed from its last checkpoint if it counts
            record = {"opts": opts, "config": started.read_text()}
        else:
            return execute(method, setting, seed, opts, run_dir)
        reason = stale(method, setting, record)
        if not reason and finished.is_file():
            return record
        if (reason and evaluation_only_change(record, Path(root) / configs[method], opts)
                and (not finished.is_file() or (run_dir / "model_final.pth").is_file())):
            # the weights stand: an unfinished run resumes; a finished one is evaluated again
            # from its model_final.pth, its old results and record kept beside
            done_before = finished.is_file()
            if done_before:
                for old in (finished, run_dir / "inference"):
                    if old.exists():
                        os.replace(old, _free_name(old, ".replaced"))
            logger.warning("%s: %s; only evaluation keys changed: %s", run_dir, reason,
                           "evaluated again from model_final.pth" if done_before else "resumed")
            return execute(method, setting, seed, opts, run_dir)
        if reason:  # its checkpoints must not be resumed from: trained again from the start
            aside = _free_name(run_dir, ".replaced")
            logger.warning("%s: %s; trained again from the start (the old run moved to %s)",
                           run_dir, reason, aside)
            os.replace(run_dir, aside)
        return execute(method, setting, seed, opts, run_dir)

    done, picked, failed = run_protocol(
        variant=variant, grids=grids, records=args.records, settings_file=settings_file,
        execute=run, stale=stale, jobs=args.jobs, chosen=chosen, report_seeds=report_seeds,
        train=not args.finished_only, carried=carried)
    if settings_file:
        logger.info("chosen settings: %s (written to %s)", picked, settings_file)
    if tabled:
        done = {**load_records(args.records, variant, tabled, stale), **done}
        picked = {**{m: e["chosen"] for m, e in others.items()}, **picked}
        picked = {m: picked[m] for m in sorted(picked, key=_method_rank(variant))}
    results = {}
    for method, setting in picked.items():
        untuned = every_grid[method][0][0]
        rows = [(method, setting, REPORT_SEEDS)]
        # no untuned row for a carried-over setting (not tuned here) or a chosen default
        if method not in carried and setting != untuned:
            rows.append((f"{method} (untuned: {untuned})", untuned, UNTUNED_SEEDS))
        for label, name, seeds in rows:
            for seed in seeds:
                if (method, name, seed) in done:
                    results.setdefault(label, {})[seed] = with_location(
                        done[method, name, seed], out / method / name / f"seed{seed}")
    # the intervals of runs whose detections are gone (an earlier machine's --output) come
    # from the tracked results.json, where they match the records
    tracked = Path(args.records) / variant / "results.json"
    earlier = json.loads(tracked.read_text()).get("comparisons") if tracked.is_file() else None
    table, data = build_report(results, args.baseline, args.bootstrap, args.jobs, earlier)
    write_report(out, table, data)
    undecided = [m for m in grids if m not in picked] + waiting
    if args.finished_only:
        print(table)
        if undecided:
            logger.info("not in the tables, their settings not chosen yet: %s", undecided)
        return results
    # the tracked copy (the runs are in their own record files next to it)
    write_report(Path(args.records) / variant, table,
                 {k: v for k, v in data.items() if k != "runs"})
    print(table)
    if failed or undecided:
        why = []
        if crashed := [r for r in failed if r not in busy]:
            why.append("runs failed: " + "; ".join(f"{m} {s} seed {k}" for m, s, k in crashed))
        if busy:
            why.append("runs trained by another command, not tabled here: " + "; ".join(
                f"{m} {s} seed {k} (pid {pid})" for (m, s, k), pid in sorted(busy.items())))
        if undecided:
            why.append(f"no setting chosen for {undecided}")
        raise SystemExit("; ".join(why))
    return results
