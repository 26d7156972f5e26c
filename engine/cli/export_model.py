"""`python -m engine export-model RUN --format sentence-transformers --out DIR`: a
trained retriever as a folder another library loads as it is (engine/export_model.py)."""
from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("export-model", help="write a trained run's model for sentence-transformers")
    parser.add_argument("run", help="run id (under $WORKBENCH_RUNS), a run folder, or a run's model folder")
    parser.add_argument("--format", choices=("sentence-transformers",), default="sentence-transformers")
    parser.add_argument("--out", type=Path, required=True, help="new folder to write (must not exist or be empty)")
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from engine.export_model import export_sentence_transformers

    summary = export_sentence_transformers(args.run, args.out)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['out']}: {' -> '.join(summary['modules'])}, {summary['dimension']}-d, "
              f"{summary['pooling']} pooling; load it with SentenceTransformer({summary['out']!r})")
    return 0
