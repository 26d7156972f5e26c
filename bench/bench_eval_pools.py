"""The same models measured against two pools of evaluation negatives (issue 27): the
paper's (passages relevant to no test query, which on squad-dev are all training
positives) and 300 held-out passages no run trains on. For one trained run: its
untrained start (step 0, rebuilt from its config) and its best weights (runs/<id>/best).

    .venv/bin/python bench/bench_eval_pools.py RUN_DIR
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from engine.data import load_retrieval_data
    from engine.evaluate import build_eval_set, evaluate
    from engine.model import BiEncoder
    from engine.run_folder import BEST_DIR, stored_config
    from engine.tokenize_cache import tokenize_cached
    from engine.train import prepare, resolve_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = resolve_config(stored_config(args.run_dir))
    untrained = prepare(cfg).model
    best, tokenizer = BiEncoder.load(args.run_dir / BEST_DIR)
    step = json.loads((args.run_dir / BEST_DIR / "best.json").read_text())["step"]
    data = load_retrieval_data(cfg.dataset)
    queries = tokenize_cached(data.queries, tokenizer, cfg.max_query_length)
    passages = tokenize_cached(data.passages, tokenizer, cfg.max_passage_length)
    print(f"{cfg.run_id}: {cfg.model}, D = {cfg.train_pairs or 'all'}, best weights of step {step}")
    print("| pool | training positives in it | model | raw entropy | calibrated entropy | MRR@10 |")
    print("|---|---|---|---|---|---|")
    for held_out in (0, cfg.eval.held_out_negatives or 300):
        eval_set = build_eval_set(data, queries, passages, replace(cfg.eval, held_out_negatives=held_out))
        name = f"{eval_set.negative_pool} ({eval_set.pool_size} passages)"
        for label, model in (("untrained (step 0)", untrained), (f"best (step {step})", best)):
            m = evaluate(model, eval_set, batch_size=cfg.eval_batch_size, ranking=True)
            print(f"| {name} | {eval_set.pool_training_positives} | {label} | {m['contrastive_entropy']:.3f} | "
                  f"{m['calibrated_entropy']:.3f} | {m['mrr@10']:.3f} |")


if __name__ == "__main__":
    main()
