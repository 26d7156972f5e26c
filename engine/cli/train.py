"""`python -m engine train`: one training run from the command line. Every field of
`TrainConfig` is a flag (`--eval-negatives` for `TrainConfig.eval.negatives`); with
`--json` stdout carries exactly one JSON object, progress bars and logs go to stderr."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pickle
import signal
import sys
import types
import typing
from pathlib import Path

from engine.errors import InputError
from engine.paths import resolved, validate_text


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, prefix: str = "") -> None:
    """A `--flag` per field of the dataclass `cls` (a nested dataclass's fields get its
    name as a prefix; a field's metadata "flag" is a second, short name), with the
    field's help and choices. Flags not given stay out of
    the namespace, so they can be laid over a config file's values."""
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        dest = f"{prefix}{item.name}"
        if dataclasses.is_dataclass(kind):
            add_dataclass_arguments(parser, kind, prefix=f"{dest}_")
            continue
        flags = ["--" + dest.replace("_", "-")] + ([item.metadata["flag"]] if "flag" in item.metadata else [])
        default = "required" if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING \
            else f"default: {item.default}"
        options = {"help": f"{item.metadata.get('help', '')} ({default})", "dest": dest, "default": argparse.SUPPRESS}
        base = _base_type(kind)
        if base is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **options)
        else:
            parser.add_argument(*flags, type=base, choices=item.metadata.get("choices"), **options)


def _base_type(kind):
    """`int | None` -> int."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return kind


def given_values(cls, args: argparse.Namespace, prefix: str = "") -> dict:
    """The fields of `cls` given as flags, nested dataclasses as nested dicts."""
    hints = typing.get_type_hints(cls)
    values = {}
    for item in dataclasses.fields(cls):
        dest = f"{prefix}{item.name}"
        if dataclasses.is_dataclass(hints[item.name]):
            nested = given_values(hints[item.name], args, prefix=f"{dest}_")
            if nested:
                values[item.name] = nested
        elif hasattr(args, dest):
            values[item.name] = getattr(args, dest)
    return values


def train_config_from_args(args: argparse.Namespace):
    """`--config FILE` (a TrainConfig as JSON, e.g. a run's train_config.json) with
    the flags given laid over it."""
    from engine.train import TrainConfig

    values: dict = {}
    if args.config:
        try:
            values = json.loads(Path(args.config).read_text())
        except (OSError, ValueError, RecursionError) as err:  # ValueError: not JSON or not UTF-8
            raise InputError(f"{args.config}: not a readable JSON config ({type(err).__name__}: {err})") from None
        if not isinstance(values, dict) or not isinstance(values.get("eval", {}), dict):
            raise InputError(f"{args.config}: a config is one JSON object of TrainConfig settings (\"eval\" an "
                             f"object too), as a run's train_config.json")
    given = given_values(TrainConfig, args)
    values = {**values, **given, "eval": {**values.get("eval", {}), **given.get("eval", {})}}
    if "dataset" not in values:
        raise InputError("--dataset is required (or a --config file that names it)")
    return TrainConfig.from_dict(values)


def register(subparsers) -> None:
    from engine.train import TrainConfig

    parser = subparsers.add_parser("train", help="train and evaluate one dense retriever (Sections 3.4-3.5)",
                                   description=__doc__)
    parser.add_argument("--config", help="a TrainConfig as JSON; flags given override its values")
    add_dataclass_arguments(parser, TrainConfig)
    parser.add_argument("--json", action="store_true", help="print one JSON object with the result")
    parser.add_argument("--store", default=None, help="results store (default: $WORKBENCH_STORE or .store/)")
    parser.add_argument("--no-store", action="store_true", help="write nothing to the store")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    from engine.train import train

    cfg = train_config_from_args(args)
    _check_texts(cfg)
    for flag, path in (("--dataset", cfg.dataset), ("--train-data", cfg.train_data)):
        if path:
            resolved(path, flag)  # a link loop is one line here, not a RuntimeError deep in the data reader
    store = None
    if not args.no_store:
        from store import Store

        store = Store(args.store)
        store.ingest()  # opens the file now: a path that holds no store fails before training, not after
    # `kill` (the app's cancel button) ends the run as cancelled, not failed
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        result = train(cfg, store=store)
    except KeyboardInterrupt:
        print("error: run cancelled", file=sys.stderr)
        return 130
    except pickle.UnpicklingError as err:
        raise refused_pickle(f"--init {cfg.init}" if cfg.init != "auto" else f"--model {cfg.model}", err) from None
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0  # under `accelerate launch` one process reports
    if args.json:
        from store.json_values import to_json
        print(to_json(dataclasses.asdict(result)))  # strict JSON: a NaN entropy (a diverged run) is null
    else:
        done = " was already complete (nothing trained)" if result.already_complete else ""
        print(f"run {result.run_id}{done}: N = {result.n_params:,}, D = {result.train_pairs:,}, best contrastive "
              f"entropy {result.best_contrastive_entropy} at step {result.best_step}; model in {result.run_dir}/model")
    return 0


def refused_pickle(what: str, err: Exception) -> InputError:
    """The one line for weights torch refused to unpickle (a pytorch_model.bin holding
    more than tensors): the workbench loads no pickle it cannot trust."""
    first = str(err).split(".")[0]
    return InputError(f"{what}: its weights are a pickle (pytorch_model.bin) that torch refused to load ({first}); "
                      "the workbench never unpickles code: save the weights as model.safetensors")


def _check_texts(cfg, prefix: str = "--") -> None:
    """Every text setting (label, annotation, data set paths, model) is kept with the run:
    refuse one the store cannot hold (engine.paths.validate_text) before training."""
    for item in dataclasses.fields(cfg):
        value, flag = getattr(cfg, item.name), prefix + item.name.replace("_", "-")
        if dataclasses.is_dataclass(value):
            _check_texts(value, f"{flag}-")
        elif isinstance(value, str):
            validate_text(flag, value)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
