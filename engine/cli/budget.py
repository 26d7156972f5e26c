"""`python -m engine budget`: optimal model and data size for a budget (Section 5)."""
from __future__ import annotations

from dataclasses import asdict, fields

from engine.formatting import format_count

FLAG_HELP = {
    "price_per_pair": "$ per annotated pair (Z_data)",
    "gpu_price_per_hour": "$ per GPU hour",
    "peak_flops": "peak FLOP/s of one GPU",
    "utilisation": "achieved fraction of peak",
    "steps": "training steps",
    "batch_size": "queries per step",
    "query_tokens": "tokens per query",
    "passage_tokens": "tokens per passage",
    "passages_per_query": "passages encoded per query in training",
    "train_flops_per_token": "training FLOPs per parameter per token",
    "infer_flops_per_token": "inference FLOPs per parameter per token",
    "corpus_pages": "pages encoded at inference",
    "tokens_per_page": "tokens per page",
}


def register(subparsers) -> None:
    from engine.budget import CostAssumptions

    parser = subparsers.add_parser("budget", help="optimal N and D for a budget (Eq. 11-14)")
    parser.add_argument("--budget", type=float, required=True, help="dollars")
    parser.add_argument("--with-inference", action="store_true", help="include the cost of encoding the corpus")
    parser.add_argument("--law", default="paper-joint", help="a preset name or a fit JSON from `laws fit`")
    parser.add_argument("--n-min", type=float, default=1e3, help="smallest model size considered")
    parser.add_argument("--band-tolerance", type=float, default=0.01,
                        help="near-optimal band: loss within this fraction of the optimum")
    parser.add_argument("--level", type=float, default=0.95,
                        help="confidence level of the N* and D* intervals over a fit's bootstrap laws")
    for field in fields(CostAssumptions):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                            default=field.default, help=f"{FLAG_HELP[field.name]} (default {field.default:g})")
    parser.add_argument("--hardware-from-store", metavar="STORE", help="price training and inference on the device "
                        "that trained this store's runs: its measured throughput (the largest model's runs, step "
                        "time as measured) and their step shape replace --peak-flops, --utilisation, --steps, "
                        "--batch-size and the token counts; --gpu-price-per-hour is then that device's hourly price")
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    parser.set_defaults(handler=run_budget)


def measured_costs(store_path: str, args):
    """(costs, hardware): the CostAssumptions of the device that trained the store's runs."""
    from engine.budget import store_hardware
    from store import Store

    hardware = store_hardware(Store(store_path))
    return hardware.costs(args.gpu_price_per_hour, price_per_pair=args.price_per_pair,
                          corpus_pages=args.corpus_pages, tokens_per_page=args.tokens_per_page), hardware


def run_budget(args) -> int:
    from engine.budget import BudgetQuestion, CostAssumptions, decision_uncertainty, extrapolation, optimise
    from engine.checks import check_level
    from engine.fit_files import load_law
    from engine.laws import LawFit

    level = check_level(args.level)
    costs = CostAssumptions(**{f.name: getattr(args, f.name) for f in fields(CostAssumptions)})
    hardware = None
    if args.hardware_from_store:
        costs, hardware = measured_costs(args.hardware_from_store, args)
    question = BudgetQuestion(args.budget, args.with_inference, costs, args.n_min, args.band_tolerance)
    law = load_law(args.law)
    answer = optimise(law, question)
    fitted = isinstance(law, LawFit)
    uncertainty = decision_uncertainty(law, question, level) if fitted and len(law.bootstrap_params) else None
    reach = extrapolation(law, answer.n_opt, answer.d_opt) if fitted else None
    result = {"law": args.law, **answer.to_dict(), **UNKNOWN_DECISION,
              **(uncertainty.to_dict() if uncertainty else {}),
              "extrapolation": reach.to_dict() if reach else None,
              "measured_hardware": asdict(hardware) if hardware else None}
    if args.json:
        from store.json_values import to_json
        print(to_json(result))
        return 0
    interval = answer.loss_interval
    print(f"budget ${args.budget:,.0f} {'with' if args.with_inference else 'without'} inference cost, law {args.law}")
    print(f"Z_data = {costs.z_data:.4g} $/pair, Z_train = {costs.z_train:.4g} $/param, Z_infer = {costs.z_infer:.4g} $/param")
    print(f"optimal model size N* = {format_count(answer.n_opt)} non-embedding parameters")
    print(f"data size D* = {format_count(answer.d_opt)} annotated pairs")
    print(f"predicted contrastive entropy = {answer.loss:.4f}"
          + (f"  (prediction interval [{interval[0]:.4f}, {interval[1]:.4f}])" if interval else ""))
    print(f"within {100 * question.band_tolerance:g}% of the optimum for N in "
          f"[{format_count(answer.band[0])}, {format_count(answer.band[1])}]")
    if hardware:
        print(f"device: {hardware.flops_per_s:.3g} FLOP/s achieved by {hardware.runs} run(s) of N = "
              f"{format_count(hardware.n)} ({hardware.steps} steps of {hardware.batch_size} queries), "
              f"${args.gpu_price_per_hour:g} per hour")
    hours = answer.device_hours
    print("spend: " + ", ".join(f"{k} ${v:,.2f}" + (f" ({hours[k]:,.3g} device hours)" if k in hours else "")
                                for k, v in answer.spend.items()))
    if uncertainty:
        print(format_uncertainty(uncertainty))
    print(reach.describe() if reach else "extrapolation: unknown (this law keeps no fitted points; a preset)")
    return 0


# keys of `budget --json` that need a fit's bootstrap laws; null for a preset
UNKNOWN_DECISION = {key: None for key in ("n_opt_interval", "d_opt_interval", "n_robust", "d_robust",
                                          "regret", "regret_relative", "regret_robust")}


def format_uncertainty(u) -> str:
    level = f"{100 * u.level:g}%"
    return "\n".join([
        f"N* over {u.laws} bootstrap laws: {level} interval [{format_count(u.n_opt_interval[0])}, "
        f"{format_count(u.n_opt_interval[1])}]; D* [{format_count(u.d_opt_interval[0])}, "
        f"{format_count(u.d_opt_interval[1])}]",
        f"robust choice (lowest expected loss over the bootstrap laws): N = {format_count(u.n_robust)}, "
        f"D = {format_count(u.d_robust)}",
        f"expected regret of building N*: {u.regret:.4g} nats ({100 * u.regret_relative:.3g}% of the loss); "
        f"of the robust choice: {u.regret_robust:.4g} nats",
    ])
