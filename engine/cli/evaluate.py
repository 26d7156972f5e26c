"""`python -m engine evaluate`: measure a saved bi-encoder (a run's `model/` folder) or
a plain pretrained encoder on a data set's test split: contrastive entropy (Eq. 5) and
MRR@10, nDCG@10, MAP@10, Recall@1000 on the sub-corpus. `--record` adds the result to
the store as a run of source `evaluate`."""
from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
from pathlib import Path

from engine.errors import InputError


def register(subparsers) -> None:
    from engine.cli.train import add_dataclass_arguments
    from engine.config import DEFAULT_MAX_PASSAGE_LENGTH, DEFAULT_MAX_QUERY_LENGTH, EvalConfig

    parser = subparsers.add_parser("evaluate", help="measure a trained or pretrained encoder", description=__doc__)
    parser.add_argument("--dataset", required=True, help="data set folder; evaluated on its one split other than "
                        "train, or the one --test-split names")
    parser.add_argument("--checkpoint", required=True, help="a run's model/ folder, or an encoder folder or hub name")
    parser.add_argument("--pooling", default="mean", choices=("mean", "cls"), help="for a plain encoder")
    parser.add_argument("--max-query-length", type=int, default=DEFAULT_MAX_QUERY_LENGTH)
    parser.add_argument("--max-passage-length", type=int, default=DEFAULT_MAX_PASSAGE_LENGTH)
    parser.add_argument("--eval-batch-size", type=int, default=128, help="texts per encoding batch")
    parser.add_argument("--lenient-qrels", action="store_true", help="drop judgments with unknown ids (counted)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    add_dataclass_arguments(parser, EvalConfig, prefix="eval_")
    parser.add_argument("--json", action="store_true", help="print one JSON object of metrics")
    parser.add_argument("--record", action="store_true", help="add the result to the store")
    parser.add_argument("--store", default=None, help="results store (default: $WORKBENCH_STORE or .store/)")
    parser.add_argument("--label", default=None, help="label of the recorded run")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    from engine.cli.train import given_values, refused_pickle
    from engine.evaluate import EvalConfig, evaluate_checkpoint

    config = EvalConfig(**given_values(EvalConfig, args, prefix="eval_"))
    if args.record:
        from engine.paths import validate_text
        from store import Store

        if args.label is not None:
            validate_text("--label", args.label)  # refused now, not after the evaluation

        Store(args.store).ingest()  # a --store that is no store fails before the evaluation, not after
    from engine.annotate.local_model import resolve_device
    from engine.paths import resolved

    if args.eval_batch_size < 1:  # the lengths are checked with the evaluation's settings
        raise InputError(f"--eval-batch-size must be at least 1, got {args.eval_batch_size}")
    device = resolve_device(args.device or "auto")
    resolved(args.dataset, "--dataset")  # a link loop is one line here, not a RuntimeError deep in the data reader
    try:
        metrics, model = evaluate_checkpoint(
            args.checkpoint, args.dataset, config, max_query_length=args.max_query_length,
            max_passage_length=args.max_passage_length, pooling=args.pooling, device=device,
            strict=not args.lenient_qrels, batch_size=args.eval_batch_size,
        )
    except pickle.UnpicklingError as err:
        raise refused_pickle(f"--checkpoint {args.checkpoint}", err) from None
    if args.record:
        metrics["run_id"] = _record(args, config, metrics, model, device)
    if args.json:
        from store.json_values import to_json
        print(to_json(metrics))  # strict JSON: NaN is null
    else:
        for name, value in metrics.items():
            print(f"{name:22} {value}")
    return 0


def _record(args, config, metrics: dict, model, device: str) -> str:
    """One store run holding this evaluation as its only point (step 0)."""
    import dataclasses

    from engine.ladder import non_embedding_params, strict_non_embedding_params
    from engine.run_folder import code_version
    from store import Store

    store = Store(args.store)
    train_config = _model_json(Path(args.checkpoint) / "train_config.json")
    train_pairs = _model_json(Path(args.checkpoint) / "result.json").get("train_pairs", 0)
    dim = model.projection_dim
    run_id = store.start_run(
        config={"checkpoint": str(args.checkpoint), "eval": dataclasses.asdict(config), "train": train_config},
        model_name=train_config.get("model", str(args.checkpoint)),
        n_params=non_embedding_params(model.encoder.config, dim),
        n_params_strict=strict_non_embedding_params(model.encoder.config, dim),
        train_pairs=train_pairs, annotation=train_config.get("annotation") or "none",
        dataset=Path(args.dataset).expanduser().resolve().name, seed=train_config.get("seed", 0), device=device, code_version=code_version(),
        source="evaluate", label=args.label,
    )
    ce, calibrated = metrics.get("contrastive_entropy"), metrics.get("calibrated_entropy")
    others = {k: v for k, v in metrics.items() if k != "contrastive_entropy"}
    store.add_point(run_id, step=0, contrastive_entropy=ce, calibrated_entropy=calibrated,
                    temperature=metrics.get("temperature"),
                    metrics={k: v for k, v in others.items() if k not in ("calibrated_entropy", "temperature")},
                    wall_time_s=metrics["eval_seconds"])
    store.finish_run(run_id, status="completed", best_contrastive_entropy=ce, best_calibrated_entropy=calibrated,
                     metrics=others, wall_time_s=metrics["eval_seconds"])
    return run_id


def _model_json(path: Path) -> dict:
    """A JSON object the model folder keeps beside the weights ({} where it has none);
    InputError when it is no readable JSON object."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise InputError(f"{path}: not a readable JSON file ({type(err).__name__}: {err}); restore it or evaluate "
                         "without --record") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: holds {type(value).__name__}, not a JSON object")
    return value
