"""Where an evaluation's time goes (issue 22 item 4), for one untrained rung on squad-dev
with the demo study's protocol: encoding, Eq. 5's margins, raw and calibrated entropy,
and the ranking metrics handed to ir-measures as the top 10 (a sub-corpus of at most
1,000 passages) against the full ranking, side by side in one process.

    .venv/bin/python bench/bench_eval_parts.py scratch-L1-H32
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(rung: str) -> None:
    import ir_measures
    import torch
    from ir_measures import AP, R, RR, nDCG

    from engine import evaluate as E
    from engine.config import EvalConfig, TrainConfig
    from engine.train import prepare, resolve_config

    torch.set_num_threads(1)
    flags = [line.split(":")[1] for line in open("/proc/cpuinfo") if line.startswith("flags")][0].split()
    print("CPU flags:", " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags))
    cfg = resolve_config(TrainConfig(dataset=str(ROOT.parent / "shared" / "data" / "squad-dev"), model=rung,
                                     max_query_length=32, max_passage_length=96, cpu=True,
                                     eval=EvalConfig(repeats=3, held_out_negatives=300)))
    prepared = prepare(cfg)
    es, model = prepared.eval_set, prepared.model
    clock = time.perf_counter
    t0 = clock(); q = E.encode_rows(model, es.query_tokens, es.query_rows, batch_size=128, device="cpu")
    t1 = clock(); p = E.encode_rows(model, es.passage_tokens, es.passage_rows, batch_size=128, device="cpu")
    t2 = clock(); margins = E.score_margins(q, p, es.pair_query, es.pair_passage, es.negatives)
    t3 = clock(); E.pair_entropies(margins).mean().item()
    t4 = clock(); E.calibrated_contrastive_entropy(margins, es.halves)
    t5 = clock(); fast = E.ranking_metrics(q, p, es)
    t6 = clock()
    measures = {"mrr@10": RR @ 10, "ndcg@10": nDCG @ 10, "map@10": AP @ 10, "recall@1000": R @ 1000}
    full = ir_measures.calc_aggregate(list(measures.values()), es.qrels, E._run(E.dense_scorer(q, p), len(p), es, 1000))
    t7 = clock()
    print(f"{rung}: {len(es.query_rows)} queries, {len(es.passage_rows)} passages, {len(es.pair_query)} pairs")
    print(f"encode queries {t1 - t0:.2f} s, passages {t2 - t1:.2f} s, margins {t3 - t2:.2f} s, raw {t4 - t3:.2f} s, "
          f"calibrated {t5 - t4:.2f} s, ranking top 10 {t6 - t5:.2f} s, ranking in full {t7 - t6:.2f} s")
    print("same values:", all(abs(fast[k] - float(full[m])) < 1e-12 for k, m in measures.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "scratch-L1-H64")
