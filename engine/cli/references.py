"""`python -m engine references`: measure BM25 on every data set and evaluation protocol
of the store's runs that has no reference yet (engine/lexical.py), and list them all."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("references", help="BM25 beside the store's runs, under each of their protocols")
    p.add_argument("--store", type=Path, help="results store (default: $WORKBENCH_STORE or .store/)")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine.lexical import measure_references
    from store import Store

    store = Store(args.store)
    added = measure_references(store)
    table = store.references()
    if args.json:
        from store.json_values import to_json

        print(to_json({"added": len(added), "references": table.drop(columns=["recorded_at"]).to_dict("records")}))
        return 0
    print(f"{len(added)} reference(s) measured now; {len(table)} in the store")
    for row in table.to_dict("records"):
        metrics = row["metrics"]
        print(f"{row['dataset']} {row['eval_protocol']} {row['method']}: raw {metrics.get('contrastive_entropy'):.3f}, "
              f"calibrated {metrics.get('calibrated_entropy'):.3f}, MRR@10 {metrics.get('mrr@10'):.3f}")
    return 0
