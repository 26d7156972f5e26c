"""`python -m engine tune-lr SWEEP.toml`: the learning rate each rung is best at, from
a sweep with an `lr` axis (engine/lr_tuning.py)."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("tune-lr", help="each model's best learning rate from a sweep with an lr axis")
    p.add_argument("file", type=Path, help="the sweep file (its [grid] has lr = [...])")
    p.add_argument("--store", type=Path, help="results store (default: $WORKBENCH_STORE or .store/)")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine.errors import InputError
    from engine.lr_tuning import chosen_rates, markdown, rate_table
    from engine.sweep import load_sweep
    from store import Store

    sweep = load_sweep(args.file)
    if "lr" not in sweep.spec.get("grid", {}):
        raise InputError(f"{args.file}: its [grid] has no lr axis, so there are no rates to choose between")
    run_ids = {run.run_id for run in sweep.runs} | {run.legacy_run_id for run in sweep.runs if run.legacy_run_id}
    store = Store(args.store)
    table = rate_table(store.runs(), store.points(), run_ids)
    choices = chosen_rates(table)  # before anything is printed: a model with no chosen rate is an InputError
    if args.json:
        from store.json_values import to_json
        print(to_json({"table": table.to_dict("records"),
                          "chosen": {c.model: {"lr": c.lr, "trained_calibrated_entropy": c.trained_calibrated_entropy,
                                               "best_calibrated_entropy": c.best_calibrated_entropy,
                                               "at_grid_edge": c.at_grid_edge} for c in choices}}))
        return 0
    print(markdown(table))
    print()
    for choice in choices:
        edge = " (the grid's edge: the best may lie beyond it)" if choice.at_grid_edge else ""
        print(f"{choice.model}: lr {choice.lr:g}, calibrated entropy after step 0 "
              f"{choice.trained_calibrated_entropy:.3f} (with step 0: {choice.best_calibrated_entropy:.3f}){edge}")
    return 0
