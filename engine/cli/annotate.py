"""`python -m engine annotate ict|doc2query|llm`: generate a pseudo-annotated training
set in BEIR form (the paper's Section 4.3) and register it in the store."""
from __future__ import annotations

import json
from pathlib import Path

from engine.errors import InputError


def register(subparsers) -> None:
    annotate = subparsers.add_parser("annotate", help="generate pseudo-annotations (ICT, docT5query, LLM)")
    actions = annotate.add_subparsers(dest="annotate_command", required=True)

    ict = actions.add_parser("ict", help="Inverse Cloze Task: a sentence of the positive passage is the query")
    _common(ict)
    ict.add_argument("--split", default="train", help="one query per positive pair of this split")
    ict.add_argument("--keep-sentence-prob", type=float, default=0.0,
                     help="chance the positive keeps the query sentence (1: always keep)")
    ict.set_defaults(handler=run_ict)

    d2q = actions.add_parser("doc2query", help="sample queries with a seq2seq generator (docT5query)")
    _common(d2q)
    d2q.add_argument("--model", required=True, help="seq2seq model: local folder or hub name")
    d2q.add_argument("--passages", type=int, default=500_000, help="corpus passages sampled (paper: 500,000)")
    d2q.add_argument("--queries-per-passage", type=int, default=5)
    d2q.add_argument("--top-k", type=int, default=10)
    d2q.add_argument("--top-p", type=float, default=1.0)
    d2q.add_argument("--max-input-tokens", type=int, default=512)
    d2q.add_argument("--max-new-tokens", type=int, default=64)
    d2q.add_argument("--batch-size", type=int, default=16)
    d2q.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    d2q.set_defaults(handler=run_doc2query)

    llm = actions.add_parser("llm", help="the paper's prompt through a local LM or an OpenAI-compatible endpoint")
    _common(llm)
    llm.add_argument("--model", required=True, help="local causal LM (folder or hub name) or the endpoint's model")
    llm.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                                        "(without it the model runs locally)")
    llm.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    llm.add_argument("--split", default="train", help="one query per positive pair of this split")
    llm.add_argument("--keep-all", action="store_true", help="keep every usable query, not one per human pair")
    llm.add_argument("--temperature", type=float, default=0.8)
    llm.add_argument("--top-p", type=float, default=0.8)
    llm.add_argument("--max-new-tokens", type=int, default=256)
    llm.add_argument("--batch-size", type=int, default=8, help="prompts per batch / concurrent requests")
    llm.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    llm.add_argument("--max-tries", type=int, default=6, help="tries per request before failing")
    llm.add_argument("--backoff", type=float, default=1.0, help="first retry wait in seconds, doubled each try")
    llm.add_argument("--device", default="auto", help="local model: auto | cpu | cuda | cuda:N")
    llm.set_defaults(handler=run_llm)


def _common(parser) -> None:
    parser.add_argument("--dataset", required=True, type=Path, help="human-annotated data set folder")
    parser.add_argument("--out", required=True, type=Path, help="folder for the generated BEIR training set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=None, help="register the set in this results store")
    parser.add_argument("--name", help="data set name in the store (default: the --out folder's name)")
    parser.add_argument("--json", action="store_true", help="print generation.json and nothing else")


def _check_outputs(args) -> None:
    """Before generating (which can take hours): the --name is text the store can keep,
    --out is not inside a store's files or the --dataset read, the folder that will hold
    it can be made, and the --store to register in is a store."""
    from engine.paths import check_not_protected, make_output_folder, store_files, store_path, validate_text

    if args.name is not None and not validate_text("--name", args.name).strip():
        raise InputError("--name must not be empty; leave it out to name the set after its --out folder")
    stores = {f"{what} ({flag})": path for flag, db in (("--store", args.store), ("default", store_path())) if db
              for what, path in store_files(db).items()}
    check_not_protected(args.out, protected={**stores, "the --dataset input": args.dataset}, name="--out")
    make_output_folder(args.out.expanduser().absolute().parent, args.out)
    if args.store:
        from store import Store

        Store(args.store).ingest()


def run_ict(args) -> int:
    from engine.annotate.ict import ICTConfig, generate_ict

    config = ICTConfig(str(args.dataset), str(args.out), args.split, args.keep_sentence_prob, args.seed)
    _check_outputs(args)
    return _finish(args, generate_ict(config))


def run_doc2query(args) -> int:
    from engine.annotate.doc2query import Doc2QueryConfig, generate_doc2query

    config = Doc2QueryConfig(str(args.dataset), str(args.out), args.model, args.passages,
                             args.queries_per_passage, args.top_k, args.top_p, args.max_input_tokens,
                             args.max_new_tokens, args.batch_size, args.device, args.seed)
    _check_outputs(args)
    return _finish(args, generate_doc2query(config))


def run_llm(args) -> int:
    from engine.annotate.llm import LLMConfig, generate_llm

    config = LLMConfig(str(args.dataset), str(args.out), args.model, args.base_url, args.api_key_env,
                       args.split, args.keep_all, args.temperature, args.top_p, args.max_new_tokens,
                       batch_size=args.batch_size, timeout_s=args.timeout, max_tries=args.max_tries,
                       backoff_s=args.backoff, device=args.device, seed=args.seed)
    _check_outputs(args)
    return _finish(args, generate_llm(config))


def _finish(args, result: dict) -> int:
    registered = _register(args, result) if args.store else None
    if args.json:
        print(json.dumps({**result, "registered_as": registered}))
        return 0
    from collections import Counter

    from engine.annotate.parsing import Tally

    counts = result["counts"]
    tally = Tally(counts["outputs"], counts["queries"], Counter(counts["skipped"]), Counter(counts["notes"]))
    print(f"{result['annotation']} ({result['generator']}): {result['n_pairs']} pairs, "
          f"{result['n_queries']} queries, {result['n_passages']} passages in {result['seconds']:.1f} s")
    print(tally.describe())
    if result["n_pairs"] == 0:
        print("warning: no pairs were written; see the skip counts above")
    print(f"written to {args.out.resolve()}" + (f"; registered as {registered!r}" if registered else ""))
    return 0


def _register(args, result: dict) -> str | None:
    """Record the set in the results store, when the store package is installed."""
    try:
        from store import Store
    except ImportError:
        print("note: the store package is not available; the set was not registered")
        return None
    return Store(args.store).register_dataset(
        args.name or args.out.resolve().name, language=result["source"]["language"], format="beir",
        path=str(args.out.resolve()), n_passages=result["n_passages"], n_queries=result["n_queries"],
        n_train_pairs=result["n_pairs"], n_test_pairs=0, annotation=result["annotation"],
        generator={k: result[k] for k in ("generator", "model", "settings", "source")})
