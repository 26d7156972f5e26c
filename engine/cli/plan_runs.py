"""`python -m engine plan-runs`: which runs to do next (engine/plan_runs.py)."""
from __future__ import annotations

from pathlib import Path

SCRATCH_SCALE = 5e6  # fits whose largest model is below this were made on the from-scratch ladder


def register(subparsers) -> None:
    p = subparsers.add_parser("plan-runs", help="choose the next runs that most narrow the decision's interval")
    p.add_argument("--law", required=True,
                   help="a fit JSON from `laws fit --law joint`, a saved fit's id, or 'store': fit Eq. 8 to the "
                        "store's completed runs of the data set now")
    p.add_argument("--dataset", required=True, type=Path, help="data set folder: its train pairs bound D")
    p.add_argument("--out", type=Path, default=Path("plan.toml"), help="sweep file to write (default plan.toml)")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    target = p.add_argument_group("the decision (default: the N* interval at --budget)")
    target.add_argument("--budget", type=float, default=10_000.0, help="$ for the final model and its data")
    target.add_argument("--with-inference", action="store_true", help="the budget also pays for encoding the corpus")
    target.add_argument("--price-per-pair", type=float, default=0.6, help="$ per annotated pair")
    target.add_argument("--corpus-pages", type=float, default=30e12, help="pages encoded at inference")
    target.add_argument("--target-n", type=float, help="instead: the predicted loss at this N ...")
    target.add_argument("--target-d", type=float, help="... and this D")
    target.add_argument("--level", type=float, default=0.95, help="level of the interval that is narrowed")
    grid = p.add_argument_group("candidate runs")
    grid.add_argument("--family", choices=("auto", "bert", "ernie", "scratch"), default="auto",
                      help="ladder family (auto: scratch for fits below 5M parameters, else bert or ernie by "
                           "the data set's language)")
    grid.add_argument("--models", nargs="+", help="ladder models instead of a whole family")
    grid.add_argument("--d-values", type=int, nargs="+", help="data sizes instead of a log grid")
    grid.add_argument("--d-min", type=int, help="smallest data size (default: the fit's smallest, else 500)")
    grid.add_argument("--d-points", type=int, default=6, help="log-spaced data sizes up to all pairs")
    grid.add_argument("--annotation", default="human", help="annotation type written into the sweep")
    cost = p.add_argument_group("what a run costs")
    cost.add_argument("--experiment-budget", type=float,
                      help="cost the planned runs may spend, in --unit (default: half of every candidate's)")
    cost.add_argument("--unit", choices=("gpu-hours", "dollars"), default="gpu-hours")
    cost.add_argument("--peak-flops", type=float, default=312e12, help="peak FLOP/s of one GPU")
    cost.add_argument("--mfu", type=float, default=0.3, help="achieved fraction of the peak")
    cost.add_argument("--gpu-price-per-hour", type=float, default=3.93, help="$ per GPU-hour (--unit dollars)")
    cost.add_argument("--steps", type=int, default=10_000, help="training steps of every run")
    cost.add_argument("--batch-size", type=int, default=128, help="queries per step")
    cost.add_argument("--negatives", type=int, default=256, help="shared random negatives per step")
    cost.add_argument("--query-tokens", type=int, default=32, help="max query length")
    cost.add_argument("--passage-tokens", type=int, default=180, help="max passage length")
    method = p.add_argument_group("method")
    method.add_argument("--noise", type=float, help="run-to-run scatter of log L (default: from the fit's residuals)")
    method.add_argument("--min-gain", type=float, default=0.05,
                        help="narrowing below this fraction counts as no help (the stop rule)")
    method.add_argument("--bootstrap", type=int, default=300, help="bootstrap refits for --law store")
    p.add_argument("--store", type=Path, help="results store (default: $WORKBENCH_STORE or .store/)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine.errors import InputError
    from engine.paths import check_output_path, store_files, store_path, write_output
    from engine.plan_runs import (Hardware, PlanConfig, RunSettings, candidates, data_sizes, json_records,
                                  ladder_rungs, plan_runs, plan_sweep)

    protected = {"the data set": args.dataset, **store_files(args.store or store_path()),
                 **({"the --law file": args.law} if Path(args.law).is_file() else {})}
    check_output_path(args.out, protected=protected)
    fit = load_fit(args)
    available = available_pairs(args.dataset, fit)
    settings = RunSettings(args.steps, args.batch_size, args.negatives, args.query_tokens, args.passage_tokens)
    hardware = Hardware(args.peak_flops, args.mfu, args.gpu_price_per_hour, args.unit)
    if args.d_min is not None and not 1 <= args.d_min <= available:  # not the default in its place, not clamped
        raise InputError(f"--d-min is the smallest data size planned, from 1 to the {available:,} training pairs of "
                         f"{args.dataset}; got {args.d_min:,}")
    d_values = sorted(set(args.d_values)) if args.d_values else data_sizes(
        available, _smallest_d(fit) if args.d_min is None else args.d_min, args.d_points)
    if min(d_values) < 1:
        raise InputError(f"--d-values are numbers of training pairs, at least 1; got {min(d_values)}")
    if max(d_values) > available:
        raise InputError(f"--d-values: {args.dataset} has {available:,} training pairs; {max(d_values):,} is more")
    rungs = ladder_rungs(_family(args, fit), args.models)
    config = PlanConfig(args.experiment_budget, args.level, args.noise, args.min_gain)
    plan = plan_runs(fit, _target(args), candidates(rungs, d_values, settings, hardware), config, args.unit)
    written = None
    if plan.runs:
        sweep, text = plan_sweep(plan, args.dataset, args.out, settings, available, args.annotation)
        write_output(args.out, text)
        written = str(args.out)
    result = {**plan.to_dict(), "sweep_file": written, "dataset": str(args.dataset), "available_pairs": available}
    if args.json:
        from store.json_values import to_json
        print(to_json(result))
        return 0
    print(format_plan(plan, json_records(plan.table())))
    if written:
        print(f"wrote {written} ({len(plan.runs)} runs); check it: python -m engine sweep {written} --dry-run")
    return 0


def load_fit(args):
    """--law as a LawFit: a fit JSON, a saved fit's id, or a fresh fit to the store's runs."""
    from engine.charts import law_fit_from_record
    from engine.errors import InputError
    from engine.fit_files import load_law
    from engine.laws import PRESETS, LawFit

    if args.law in PRESETS:
        raise InputError(f"--law {args.law} is a published law without bootstrap laws; planning needs a fit "
                         f"with its uncertainty: a fit JSON, a saved fit's id, or 'store'")
    if Path(args.law).is_file():
        return load_law(args.law)
    from store import Store

    store = Store(args.store)
    if args.law == "store":
        from engine.plan_runs import fit_store_runs

        return fit_store_runs(store, args.dataset.name, args.bootstrap)
    record = store.fit(args.law)
    if record is None:
        raise InputError(f"--law {args.law!r}: no such fit file or saved fit id (see `python -m store info`)")
    fit = law_fit_from_record(record)
    assert isinstance(fit, LawFit)
    return fit


def available_pairs(dataset: Path, fit) -> int:
    """The training pairs a run of the fit's protocol can draw D from: the train split,
    less the pairs of the passages its evaluation holds out (eval.held_out_negatives)."""
    from engine.data import held_out_passages, load_retrieval_data, training_pairs
    from engine.eval_protocol import fingerprints_of

    data = load_retrieval_data(dataset)
    fingerprint = next((f for f in fingerprints_of(fit.points) if f), None) if len(fit.points) else None
    if fingerprint and fingerprint.get("negative_pool") == "held-out":
        held_out = held_out_passages(data, fingerprint["pool"], fingerprint.get("pool_seed", 0))
        return training_pairs(data, held_out=held_out).n_available
    return len(data.pairs("train"))


def _smallest_d(fit) -> int:
    points = fit.points
    return int(points["d"].min()) if "d" in points and len(points) else 500


def _family(args, fit) -> str:
    if args.family != "auto":
        return args.family
    points = fit.points
    if "n" in points and len(points) and points["n"].max() < SCRATCH_SCALE:
        return "scratch"
    from engine.data import load_retrieval_data

    return "ernie" if load_retrieval_data(args.dataset).language() == "zh" else "bert"


def _target(args):
    from engine.budget import BudgetQuestion, CostAssumptions
    from engine.plan_runs import PlanTarget

    if args.target_n is not None or args.target_d is not None:
        return PlanTarget(n=args.target_n, d=args.target_d)
    costs = CostAssumptions(price_per_pair=args.price_per_pair, gpu_price_per_hour=args.gpu_price_per_hour,
                            corpus_pages=args.corpus_pages)
    return PlanTarget(BudgetQuestion(args.budget, args.with_inference, costs))


def format_plan(plan, rows: list[dict]) -> str:
    lines = [f"target: {plan.target.describe()}; {plan.config.level:.0%} interval width now "
             f"{plan.width_now:.3g} (log10), over {plan.laws} bootstrap laws; run noise {plan.noise:.3g} (log L)",
             f"{'rank':>4}  {'model':<40} {'N':>10} {'D':>9} {'gain':>8} {'width':>8} {'cost':>10}"]
    for row in rows:
        lines.append(f"{row['rank']:>4}  {row['model']:<40} {row['n']:>10.3g} {row['d']:>9,} "
                     f"{row['expected_gain']:>8.3g} {row['width_after']:>8.3g} {row['cost']:>10.3g}"
                     + ("  (measured)" if row["measured"] else ""))
    lines.append(f"total {plan.total_cost:.3g} of {plan.budget:.3g} {plan.unit}; every ladder run once would "
                 f"leave a width of {plan.ladder_width:.3g}")
    lines.append(plan.message())
    return "\n".join(lines)
