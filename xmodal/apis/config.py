"""Config files in, a checked Config out: reading, ``--cfg-options`` merging, checks before anything is
built, and the command-line choices (launcher, AMP, epochs) applied to it.

Config mistakes are named by their key: :func:`check_config` looks at a loaded config before anything
is built (unknown ``type`` names of the parts mmengine's Runner builds, a few numbers of the wrong
type), and :func:`config_errors` turns what mmengine raises while building a part deeper in the
model (an unknown ``type``, an argument the class does not take or lacks) into a
:class:`~xmodal.errors.ConfigError` that gives the config key and the registered names closest to the
one given.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import inspect
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import init_dist, is_distributed

from xmodal.errors import ConfigError

# What each launcher needs in the environment; without it mmengine fails with a bare KeyError.
_LAUNCHER_ENV = {"pytorch": ("RANK", "start the command with torchrun (or python -m torch.distributed.run)"),
                 "slurm": ("SLURM_PROCID", "start the command with srun inside a Slurm allocation")}


def load_config(config: str | Path, cfg_options: dict | None = None, work_dir: str | None = None,
                launcher: str = "none") -> Config:
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {config}{missing_file_hint(path)}")
    cfg = read_config(path)
    epochs_before = _max_epochs(cfg)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options)
    check_config(cfg)  # unknown types and wrong-typed numbers fail here, before anything is built or written
    if cfg_options and epochs_before is not None and _max_epochs(cfg) != epochs_before:
        apply_epoch_override(cfg, epochs_before, cfg_options)
    if not cfg.get("stages"):
        seed_loader_workers(cfg)  # a staged recipe's loaders: in each stage's merged config (stage_config)
    cfg.launcher = launcher
    if launcher != "none":
        setup_distributed(cfg)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / path.stem)
    check_work_dir(cfg.work_dir, path)
    return cfg


def seed_loader_workers(cfg: Config) -> None:
    """Every data loader with workers (``num_workers > 0``) gets its batch sampler wrapped in
    :class:`~xmodal.data.worker_seed.WorkerSeededBatchSampler`, so the random transforms its workers run
    depend on the seed, rank, epoch and batch alone, and a resumed run repeats them exactly."""
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if not isinstance(loader, Mapping) or not loader.get("num_workers"):
            continue
        inner = loader.get("batch_sampler")
        if isinstance(inner, Mapping) and inner.get("type") == "WorkerSeededBatchSampler":
            continue
        loader["batch_sampler"] = dict(type="WorkerSeededBatchSampler", batch_sampler=inner,
                                       drop_last=bool(loader.pop("drop_last", False)))


def check_work_dir(work_dir: str | Path, config: str | Path) -> None:
    """``work_dir`` (or a folder above it) that is a file would fail later as a bare ``[Errno 17] File
    exists`` from mmengine's makedirs; say which key and which file instead."""
    target = Path(work_dir).expanduser()
    for folder in (target, *target.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == target else f" (inside {folder})"
                raise ConfigError(f"{config}: work_dir: {work_dir} cannot be a directory{where}: {folder} is a "
                                  "file; expected a directory or a path where one can be created")
            return


def setup_distributed(cfg: Config) -> None:
    """Prepare ``cfg`` for a distributed run (``cfg.launcher`` pytorch, slurm or mpi).

    Every machine: ``SyncBuffersHook`` averages buffers (BatchNorm statistics) across ranks after each
    epoch, so validation sees the same model on every rank and the checkpoint rank 0 writes holds the
    average. Without CUDA: a ``nccl`` (or unset) backend becomes ``gloo``, DDP wraps the CPU model
    without ``device_ids``, and the process group is started here, because mmengine's ``init_dist``
    pins a CUDA device first (``torch.cuda.set_device``) and fails; the Runner finds the group started
    and uses it.
    """
    needed = _LAUNCHER_ENV.get(cfg.launcher)
    if needed and needed[0] not in os.environ:
        raise ValueError(f"--launcher {cfg.launcher}: ${needed[0]} is not set; {needed[1]}, or use --launcher none")
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(h.get("type") == "SyncBuffersHook" for h in hooks):
        cfg.custom_hooks = [*hooks, dict(type="SyncBuffersHook")]
    if torch.cuda.is_available():
        return
    cfg.env_cfg = dict(cfg.get("env_cfg") or {})
    dist_cfg = dict(cfg.env_cfg.get("dist_cfg") or {})
    if dist_cfg.get("backend", "nccl") == "nccl":
        dist_cfg["backend"] = "gloo"
    cfg.env_cfg.dist_cfg = dist_cfg
    wrapper = cfg.get("model_wrapper_cfg")
    if wrapper is None:  # mmengine's own default, less the GPU index it would pass as device_ids
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=cfg.get("find_unused_parameters", False))
    elif wrapper.get("type", "MMDistributedDataParallel") == "MMDistributedDataParallel":
        wrapper.setdefault("device_ids", None)
    if not is_distributed():
        with mock.patch.object(torch.cuda, "set_device", lambda device: None):
            init_dist(cfg.launcher, **dist_cfg)


AMP_SWITCHABLE = ("OptimWrapper", "AmpOptimWrapper", "CPUBf16OptimWrapper")


def enable_amp(cfg: Config) -> None:
    """fp16 + dynamic loss scaling on CUDA (mmengine's AmpOptimWrapper); bf16 autocast on CPU."""
    wrapper = cfg.optim_wrapper
    if wrapper.get("type", "OptimWrapper") not in AMP_SWITCHABLE:
        raise ValueError(f"--amp: optim_wrapper type {wrapper['type']!r} cannot be switched to mixed precision; "
                         f"expected one of {', '.join(AMP_SWITCHABLE)}")
    if torch.cuda.is_available():
        wrapper.type = "AmpOptimWrapper"
        wrapper.setdefault("loss_scale", "dynamic")
    else:
        wrapper.type = "CPUBf16OptimWrapper"
        for key in ("loss_scale", "dtype", "use_fsdp"):  # AmpOptimWrapper's own arguments
            wrapper.pop(key, None)


def amp_for_this_machine(cfg: Config) -> bool:
    """A config written for a GPU (``AmpOptimWrapper``: fp16 with loss scaling, which mmengine allows on CUDA
    only) trains on a CPU with bf16 autocast instead of failing at its first step. True when it switched."""
    wrapper = cfg.get("optim_wrapper")
    if torch.cuda.is_available() or not isinstance(wrapper, Mapping) or wrapper.get("type") != "AmpOptimWrapper":
        return False
    enable_amp(cfg)
    return True


def _max_epochs(cfg: Mapping) -> int | None:
    train_cfg = cfg.get("train_cfg")
    return train_cfg.get("max_epochs") if isinstance(train_cfg, Mapping) else None


def set_max_epochs(cfg: Config, epochs: int, old: int | None = None) -> None:
    """Shorten or lengthen training, keeping epoch-based schedules spanning the whole run: a schedule
    that ended with the old run (``old``, default the config's ``train_cfg.max_epochs``) ends with the
    new one, a warm-up keeps its length, and a schedule that would start after the new end is dropped.
    Every tool that changes the number of epochs goes through here (``--cfg-options
    train_cfg.max_epochs=N``, ``--epochs`` of compare and the demo), so one config trains alike under all."""
    old = cfg.train_cfg.max_epochs if old is None else old
    cfg.train_cfg.max_epochs = epochs
    kept = []
    for scheduler in cfg.get("param_scheduler") or []:
        if scheduler.get("by_epoch", True):
            begin = scheduler.get("begin", 0)
            if begin >= epochs:
                continue
            if scheduler.get("end", old) >= old or scheduler.get("end", old) > epochs:
                scheduler["end"] = epochs
                if "T_max" in scheduler:
                    scheduler["T_max"] = epochs - begin
        kept.append(scheduler)
    if cfg.get("param_scheduler") is not None:
        cfg.param_scheduler = kept


def apply_epoch_override(cfg: Config, old: int, cfg_options: Mapping[str, Any]) -> None:
    """``--cfg-options train_cfg.max_epochs=N`` changed the run's length from ``old``: rescale the
    epoch-based schedules with :func:`set_max_epochs`. When the same options also set
    ``param_scheduler`` keys, the user's schedule is kept as given and must fit in the new run."""
    epochs = cfg.train_cfg.max_epochs
    if not any(str(key).split(".")[0] == "param_scheduler" for key in cfg_options):
        set_max_epochs(cfg, epochs, old)
        return
    schedulers = cfg.get("param_scheduler") or []
    for i, scheduler in enumerate(schedulers if isinstance(schedulers, (list, tuple)) else [schedulers]):
        end = scheduler.get("end", old)
        if scheduler.get("by_epoch", True) and isinstance(end, (int, float)) and end > epochs:
            raise ConfigError(f"{_source(cfg)}: param_scheduler[{i}].end: {end} is past train_cfg.max_epochs={epochs}; "
                              f"expected an end <= {epochs}: set train_cfg.max_epochs alone (epoch-based schedules "
                              f"are rescaled to it) or also set param_scheduler.{i}.end (and T_max) to fit")


class CfgOptionsAction(DictAction):
    """mmengine's ``--cfg-options`` parser; an entry that is not ``key=value`` is an argparse error
    (usage and exit status 2) naming the entry, instead of an exception from inside the parser."""

    _KEY = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*$")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        for entry in values or []:
            key, equals, value = entry.partition("=")
            if not equals or not self._KEY.match(key):
                raise argparse.ArgumentError(self, f"{entry!r} is not KEY=VALUE with a dotted key "
                                             f"(e.g. train_cfg.max_epochs=2 or model.losses.0.weight=0.5)")
            if value.count("(") != value.count(")") or value.count("[") != value.count("]"):
                raise argparse.ArgumentError(self, f"{entry!r}: unbalanced brackets in the value")
        super().__call__(parser, namespace, values, option_string)


# -- registries -------------------------------------------------------------------------------------------

# mmengine's message for a ``type`` no registry holds (mmengine/registry/build_functions.py)
_UNKNOWN_TYPE = re.compile(r"^(?P<name>\S+) is not in the (?P<scope>[\w.-]+)::(?P<registry>[\w ]+) registry\.")


def _registries() -> list:
    import mmengine.registry as roots
    from mmengine.registry import Registry

    import xmodal.registry as ours

    return [v for module in (ours, roots) for v in vars(module).values() if isinstance(v, Registry)]


def find_registry(name: str, scope: str = "xmodal"):
    """xmodal's registry called ``name`` ("model", "dataset", ...), else mmengine's root one; None if neither."""
    found = {(r.scope, r.name): r for r in _registries()}
    return found.get((scope, name)) or found.get(("xmodal", name)) or found.get(("mmengine", name))


def registered_names(registry) -> list[str]:
    """Every name ``registry.get`` resolves without a scope prefix: its own and its ancestors'."""
    registry.import_from_location()
    names: set[str] = set()
    node = registry
    while node is not None:
        names.update(node.module_dict)
        node = node.parent
    return sorted(names)


def close_matches(name: str, choices: list[str], n: int = 3) -> list[str]:
    """The choices nearest ``name``: a case-insensitive equal first, else difflib's closest."""
    same = [c for c in choices if c.lower() == name.lower()]
    return same or difflib.get_close_matches(name, choices, n=n, cutoff=0.6)


def _did_you_mean(name: str, choices: list[str]) -> str:
    near = close_matches(name, choices)
    return f"; did you mean {' or '.join(repr(c) for c in near)}?" if near else ""


def _unknown_type_message(match: re.Match, where: str) -> str:
    name, registry = match["name"], find_registry(match["registry"], match["scope"])
    if registry is None:
        return f"{where}: unknown {match['registry']} type {name!r}"
    return _unknown_in(name, registry, where)


def _unknown_in(name: str, registry, where: str) -> str:
    hint = _did_you_mean(name, registered_names(registry))
    if not hint:
        hint = (f"; no {registry.name} of that name is registered (a class of your own: import its module "
                f"with custom_imports=dict(imports=['my_module']))")
    return f"{where}: unknown {registry.name} type {name!r}{hint}"


def describe_unknown_type(message: str, where: str = "config") -> str | None:
    """mmengine's "X is not in the registry" message rewritten with the registered names closest to X;
    None for any other message."""
    unknown = _UNKNOWN_TYPE.match(message)
    return _unknown_type_message(unknown, where) if unknown else None


# -- the config tree --------------------------------------------------------------------------------------
def _plain(cfg: Any) -> Any:
    return cfg.to_dict() if hasattr(cfg, "to_dict") and not isinstance(cfg, Mapping) else cfg


def _walk(obj: Any, path: str = "") -> Iterator[tuple[str, Mapping]]:
    """(key path, dict) of every dict in the config, depth first; paths read ``model.losses[0]``."""
    if isinstance(obj, Mapping):
        if path:
            yield path, obj
        for key, value in obj.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _walk(value, f"{path}[{i}]")


def _paths_of_type(cfg: Any, name: str, with_key: str | None = None, without_key: str | None = None) -> list[str]:
    short = name.rsplit(".", 1)[-1]
    return [path for path, d in _walk(_plain(cfg))
            if isinstance(d.get("type"), str) and d["type"].rsplit(".", 1)[-1] == short
            and (with_key is None or with_key in d) and (without_key is None or without_key not in d)]


def _join(paths: list[str], suffix: str = "") -> str:
    shown = ", ".join(p + suffix for p in paths[:3])
    return shown + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")


def _source(cfg: Any) -> str:
    return str(getattr(cfg, "filename", None) or "config")


# -- what mmengine raises while building, named by config key ----------------------------------------------
_UNEXPECTED = re.compile(r"^(?P<cls>[\w.]+)\.__init__\(\) got an unexpected keyword argument '(?P<arg>\w+)'$")
_MISSING = re.compile(r"^(?P<cls>[\w.]+)\.__init__\(\) missing \d+ required (?:positional |keyword-only )?"
                      r"arguments?: (?P<args>.+)$")


def _class_named(name: str):
    short = name.rsplit(".", 1)[-1]
    for registry in _registries():
        with contextlib.suppress(Exception):
            found = registry.get(short)
            if found is not None:
                return found
    return None


def _arguments(cls) -> list[str]:
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def explain_build_error(error: BaseException, cfg: Any) -> ConfigError | None:
    """A :class:`ConfigError` naming the config key behind ``error`` (raised while building ``cfg``'s
    parts), or None when ``error`` is not one a config key explains."""
    source = _source(cfg)
    message = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else ""
    if isinstance(error, KeyError) and (unknown := _UNKNOWN_TYPE.match(message)):
        paths = _paths_of_type(cfg, unknown["name"])
        where = f"{source}: {_join(paths, '.type')}" if paths else source
        return ConfigError(_unknown_type_message(unknown, where))
    if not isinstance(error, TypeError):
        return None
    if unexpected := _UNEXPECTED.match(message):
        cls, arg = unexpected["cls"], unexpected["arg"]
        paths = _paths_of_type(cfg, cls, with_key=arg)
        if not paths:
            return None
        accepted = _arguments(_class_named(cls))
        hint = _did_you_mean(arg, accepted) + (f" ({cls.rsplit('.', 1)[-1]} takes {', '.join(accepted)})"
                                               if accepted else "")
        return ConfigError(f"{source}: {_join(paths, '.' + arg)}: {cls.rsplit('.', 1)[-1]} has no argument "
                           f"{arg!r}{hint}")
    if missing := _MISSING.match(message):
        cls, args = missing["cls"], re.findall(r"'(\w+)'", missing["args"])
        paths = _paths_of_type(cfg, cls, without_key=args[0]) if args else []
        if not paths:
            return None
        return ConfigError(f"{source}: {_join(paths)}: required argument(s) {', '.join(map(repr, args))} missing "
                           f"for {cls.rsplit('.', 1)[-1]}")
    return None


@contextlib.contextmanager
def config_errors(cfg: Any) -> Iterator[None]:
    """Re-raise what building ``cfg``'s parts raises for a config mistake as a :class:`ConfigError`
    naming the key; everything else passes through unchanged."""
    try:
        yield
    except (KeyError, TypeError) as error:
        explained = explain_build_error(error, cfg)
        if explained is None:
            raise
        raise explained from error


def missing_file_hint(path: str | Path) -> str:
    """``"; did you mean 'x.py'?"`` for the files beside a missing ``path`` nearest its name, else ""."""
    path = Path(path)
    if not path.parent.is_dir():
        return f" (no directory {path.parent})" if str(path.parent) not in ("", ".") else ""
    names = [p.name for p in path.parent.iterdir() if p.suffix == path.suffix]
    near = close_matches(path.name, names)
    return f"; did you mean {' or '.join(repr(str(path.parent / n)) for n in near)}?" if near else ""


# -- reading a config file and --cfg-options ---------------------------------------------------------------
def read_config(path: str | Path):
    """``Config.fromfile`` with one line for a file that cannot be read as a config."""
    from mmengine.config import Config

    try:
        return Config.fromfile(str(path))
    except SyntaxError as err:
        line = err.lineno or (re.search(r"line (\d+)", str(err)) or [None, "?"])[1]
        raise ConfigError(f"{path} line {line}: not valid Python ({err.msg or err}); a config is a Python file "
                          f"of assignments") from err
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: a file it names does not exist: {err.filename or err} (check _base_)") from err
    except Exception as err:  # the config's own code failed (NameError, ImportError, ...)
        raise ConfigError(f"{path}: running the config failed: {type(err).__name__}: {err}") from err


def merge_cfg_options(cfg, options: Mapping[str, Any]) -> None:
    """``cfg.merge_from_dict(options)``; a failure names the ``--cfg-options`` entry at fault."""
    try:
        cfg.merge_from_dict(dict(options))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        culprit = ", ".join(f"{k}={v!r}" for k, v in options.items())
        for key, value in options.items():  # merge_from_dict assigns at the end: cfg is unchanged here
            try:
                copy.deepcopy(cfg).merge_from_dict({key: value})
            except (KeyError, TypeError, ValueError, AttributeError):
                culprit = f"{key}={value!r}"
                break
        reason = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"--cfg-options {culprit}: cannot be applied to {_source(cfg)}: {reason}") from err


# -- checks on a loaded config, before anything is built ----------------------------------------------------
def _parts(cfg: Mapping, prefix: str = "") -> Iterator[tuple[str, Any, str]]:
    """(key path, config dict, registry name) of the parts mmengine's Runner builds from the top level."""
    yield f"{prefix}model", cfg.get("model"), "model"
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if isinstance(loader, Mapping):
            for key, registry in (("dataset", "dataset"), ("sampler", "data sampler"),
                                  ("batch_sampler", "data sampler"), ("collate_fn", "function")):
                yield f"{prefix}{split}_dataloader.{key}", loader.get(key), registry
        yield f"{prefix}{split}_cfg", cfg.get(f"{split}_cfg"), "loop"
    for split in ("val", "test"):
        evaluator = cfg.get(f"{split}_evaluator")
        if isinstance(evaluator, Mapping) and "metrics" in evaluator:
            evaluator, path = evaluator["metrics"], f"{prefix}{split}_evaluator.metrics"
        else:
            path = f"{prefix}{split}_evaluator"
        for i, metric in enumerate(evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]):
            yield path + (f"[{i}]" if isinstance(evaluator, (list, tuple)) else ""), metric, "metric"
    wrapper = cfg.get("optim_wrapper")
    yield f"{prefix}optim_wrapper", wrapper, "optim_wrapper"
    if isinstance(wrapper, Mapping):
        yield f"{prefix}optim_wrapper.optimizer", wrapper.get("optimizer"), "optimizer"
    schedulers = cfg.get("param_scheduler")
    for i, scheduler in enumerate(schedulers if isinstance(schedulers, (list, tuple)) else [schedulers]):
        yield f"{prefix}param_scheduler" + (f"[{i}]" if isinstance(schedulers, (list, tuple)) else ""), scheduler, \
            "parameter scheduler"
    for name, hook in (cfg.get("default_hooks") or {}).items():
        yield f"{prefix}default_hooks.{name}", hook, "hook"
    for i, hook in enumerate(cfg.get("custom_hooks") or []):
        yield f"{prefix}custom_hooks[{i}]", hook, "hook"
    visualizer = cfg.get("visualizer")
    yield f"{prefix}visualizer", visualizer, "visualizer"
    if isinstance(visualizer, Mapping):
        for i, backend in enumerate(visualizer.get("vis_backends") or []):
            yield f"{prefix}visualizer.vis_backends[{i}]", backend, "vis_backend"
    yield f"{prefix}log_processor", cfg.get("log_processor"), "log_processor"


def _registered(registry, name: str) -> bool:
    try:
        return registry.get(name) is not None
    except Exception:  # a dotted name mmengine could not import
        return False


_POSITIVE_INT, _NON_NEGATIVE_INT = "a positive integer", "an integer >= 0"
_SCALARS = {
    "train_cfg.max_epochs": _POSITIVE_INT, "train_cfg.max_iters": _POSITIVE_INT,
    "train_cfg.val_interval": _POSITIVE_INT,
    **{f"{split}_dataloader.batch_size": _POSITIVE_INT for split in ("train", "val", "test")},
    **{f"{split}_dataloader.num_workers": _NON_NEGATIVE_INT for split in ("train", "val", "test")},
    "optim_wrapper.optimizer.lr": "a number >= 0",
    "randomness.seed": "an integer or None",
}


def _scalar_ok(value: Any, expected: str) -> bool:
    if isinstance(value, bool):
        return False
    if expected == _POSITIVE_INT:
        return isinstance(value, int) and value >= 1
    if expected == _NON_NEGATIVE_INT:
        return isinstance(value, int) and value >= 0
    if expected == "an integer or None":
        return value is None or isinstance(value, int)
    return isinstance(value, (int, float)) and value >= 0


def _lookup(cfg: Mapping, dotted: str) -> tuple[bool, Any]:
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return False, None
        node = node[key]
    return True, node


def check_config(cfg) -> None:
    """Fail early, naming the key, on an unknown ``type`` of a part the Runner builds (model, datasets,
    samplers, loops, metrics, optimizer, schedulers, hooks, ...) and on a few numbers of the wrong type
    (``train_cfg.max_epochs``, batch sizes, the learning rate). Parts deeper in the model are built by
    the model itself: :func:`config_errors` names those."""
    import mmengine.runner  # noqa: F401  (registers mmengine's optimizers, hooks, loops, ...)

    for registry in _registries():
        registry.import_from_location()  # xmodal's parts (some register into mmengine's roots, e.g. collate functions)
    source, tree = _source(cfg), _plain(cfg)
    levels = [("", tree)] + [(f"stages[{i}].", stage) for i, stage in enumerate(tree.get("stages") or [])
                             if isinstance(stage, Mapping)]
    if not tree.get("stages") and tree.get("model") is None:
        raise ConfigError(f"{source}: model: required key missing; expected model=dict(type=..., ...)")
    for prefix, level in levels:
        for path, part, registry_name in _parts(level, prefix):
            name = part.get("type") if isinstance(part, Mapping) else None
            registry = find_registry(registry_name) if isinstance(name, str) else None
            if registry is not None and not _registered(registry, name):
                if any(_registered(r, name) for r in _registries()):
                    continue  # known elsewhere: leave the decision to the builder
                raise ConfigError(_unknown_in(name, registry, f"{source}: {path}.type"))
        for dotted, expected in _SCALARS.items():
            present, value = _lookup(level, dotted)
            if present and not _scalar_ok(value, expected):
                raise ConfigError(f"{source}: {prefix}{dotted}: got {value!r} ({type(value).__name__}); "
                                  f"expected {expected}")
    check_modalities(tree, source)


def _meta_modalities(data_root: Any) -> list[str] | None:
    """The modality names a dataset's meta.json declares; None when it cannot be read (the dataset
    reports that itself, with the file and field, when it is built)."""
    import json

    if not isinstance(data_root, (str, Path)):
        return None
    try:
        meta = json.loads((Path(data_root).expanduser() / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    modalities = meta.get("modalities") if isinstance(meta, Mapping) else None
    return list(modalities) if isinstance(modalities, Mapping) else None


def check_modalities(tree: Mapping, source: str = "config") -> None:
    """Each dataset's ``modalities`` and each model's encoders against the dataset's meta.json, when the
    config loads: a misspelt name gets the nearest declared one, and an encoder for a modality the
    dataset lacks (typically inherited from a ``_base_`` config) is named as the cause."""
    declared: tuple[str, list[str]] | None = None
    for split in ("train", "val", "test"):
        loader = tree.get(f"{split}_dataloader")
        dataset = loader.get("dataset") if isinstance(loader, Mapping) else None
        if not isinstance(dataset, Mapping):
            continue
        names = _meta_modalities(dataset.get("data_root"))
        if names is None:
            continue
        meta = f"{Path(dataset['data_root']) / 'meta.json'}"
        declared = declared or (meta, names)
        requested = dataset.get("modalities")
        for name in requested if isinstance(requested, (list, tuple)) else []:
            if name not in names:
                raise ConfigError(f"{source}: {split}_dataloader.dataset.modalities: {name!r} is not a modality of "
                                  f"{meta} (it has {names}){_did_you_mean(str(name), names)}")
    if declared is None:
        return
    meta, names = declared
    for path, part in _walk({"model": tree.get("model")}):
        encoders = part.get("encoders")
        if not isinstance(encoders, Mapping):
            continue
        for name in encoders:
            if name in names:
                continue
            hint = _did_you_mean(str(name), names) or (
                "; an encoder inherited from a _base_ config stays unless the dict is replaced: "
                "encoders=dict(_delete_=True, ...) keeps only the ones you list")
            raise ConfigError(f"{source}: {path}.encoders.{name}: an encoder for modality {name!r}, which "
                              f"{meta} does not have (it has {names}){hint}")


def require_keys(cfg, keys: tuple[str, ...], purpose: str) -> None:
    """One error for the first of ``keys`` the config lacks (or sets to None), saying what needs them."""
    for key in keys:
        if cfg.get(key) is None:
            raise ConfigError(f"{_source(cfg)}: {key}: required key missing; {purpose} needs "
                              f"{', '.join(keys)}")
