"""`python -m engine evaluate`: measure a saved bi-encoder (a run's `model/` folder) or
a plain pretrained encoder on a data set's test split: contrastive entropy (Eq. 5) and
MRR@10, nDCG@10, MAP@10, Recall@1000 on the sub-corpus. `--record` adds the result to
the store as a run of source `evaluate`."""
from __future__ import annotations

import argparse
import json
import logging
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
    import torch

    from engine.cli.train import given_values
    from engine.evaluate import EvalConfig, evaluate_checkpoint

    config = EvalConfig(**given_values(EvalConfig, args, prefix="eval_"))
    if args.record:
        from store import Store

        Store(args.store).ingest()  # a --store that is no store fails before the evaluation, not after
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(device)
    except RuntimeError as err:
        raise InputError(f"--device {device!r} is not a torch device ({err}); use cpu, cuda or cuda:N") from None
    metrics, model = evaluate_checkpoint(
        args.checkpoint, args.dataset, config, max_query_length=args.max_query_length,
        max_passage_length=args.max_passage_length, pooling=args.pooling, device=device,
        strict=not args.lenient_qrels, batch_size=args.eval_batch_size,
    )
    if args.record:
        metrics["run_id"] = _record(args, config, metrics, model, device)
    if args.json:
        from store.values import to_json
        print(to_json(metrics))  # strict JSON: NaN is null
    else:
        for name, value in metrics.items():
            print(f"{name:22} {value}")
    return 0


def _record(args, config, metrics: dict, model, device: str) -> str:
    """One store run holding this evaluation as its only point (step 0)."""
    import dataclasses

    from engine.ladder import non_embedding_params, strict_non_embedding_params
    from engine.train import code_version
    from store import Store

    store = Store(args.store)
    trained = Path(args.checkpoint) / "train_config.json"
    train_config = json.loads(trained.read_text()) if trained.is_file() else {}
    result_file = Path(args.checkpoint) / "result.json"
    train_pairs = json.loads(result_file.read_text())["train_pairs"] if result_file.is_file() else 0
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
