"""Pseudo-annotations for the paper's annotation-quality study (Section 4.3).

Three generators turn a human-annotated data set into a generated training set:

- `ict`: Inverse Cloze Task, a sentence of a passage is the query (engine/annotate/ict.py);
- `doc2query`: a seq2seq query generator samples queries for sampled passages
  (engine/annotate/doc2query.py);
- `llm`: the paper's appendix prompt through a local causal LM or an OpenAI-compatible
  endpoint (engine/annotate/llm.py, engine/annotate/endpoint.py).

Each writes a BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/train.tsv`) plus
`generation.json` (engine/annotate/output.py) that trains like a human training set.
Model outputs are cached per (generator, model, passage) so a run resumes
(engine/annotate/cache.py), and bad outputs are counted and skipped
(engine/annotate/parsing.py).
"""
