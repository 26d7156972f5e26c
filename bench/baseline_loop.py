"""The baseline the engine is timed against (issue 5): a straightforward loop of the
kind the paper's released code uses. Every step tokenises its batch and its random
negatives, runs fp32 with dropout on and Hugging Face defaults, and pads to the
longest text in the batch. Same bi-encoder as the engine (mean pooling + linear
projection to 768, Eq. 2) and same loss (Eq. 3: shared random negatives plus
in-batch negatives).
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def read_squad_pairs(data_dir: Path = SHARED / "data" / "squad-dev"):
    corpus = {}
    with open(data_dir / "corpus.jsonl") as f:
        for line in f:
            row = json.loads(line)
            corpus[row["_id"]] = (row.get("title", "") + " " + row["text"]).strip()
    queries = {}
    with open(data_dir / "queries.jsonl") as f:
        for line in f:
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    pairs = []
    with open(data_dir / "qrels" / "train.tsv") as f:
        next(f)
        for line in f:
            qid, pid, _ = line.rstrip("\n").split("\t")
            pairs.append((queries[qid], corpus[pid]))
    return pairs, list(corpus.values())


class BaselineEncoder(torch.nn.Module):
    def __init__(self, layers: int, hidden: int):
        super().__init__()
        config = BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=max(hidden // 64, 1),
                            intermediate_size=4 * hidden, vocab_size=30522)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.projection = torch.nn.Linear(hidden, 768)

    def forward(self, batch):
        states = self.bert(**batch).last_hidden_state                  # (batch, seq, hidden)
        mask = batch["attention_mask"].unsqueeze(-1).float()           # (batch, seq, 1)
        pooled = (states * mask).sum(1) / mask.sum(1)                  # (batch, hidden)
        return self.projection(pooled)                                 # (batch, 768)


def time_baseline(layers: int, hidden: int, batch_size: int, negatives: int, q_len: int, p_len: int,
                  steps: int, seed: int = 0) -> dict:
    """Seconds per training step (median of `steps` after 2 warm-up steps)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    pairs, passages = read_squad_pairs()
    tokenizer = BertTokenizerFast(vocab_file=str(SHARED / "vocab" / "bert-base-uncased-vocab.txt"))
    model = BaselineEncoder(layers, hidden).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        batch = rng.sample(pairs, batch_size)
        negative_texts = rng.sample(passages, negatives)
        q = tokenizer([b[0] for b in batch], padding=True, truncation=True, max_length=q_len, return_tensors="pt")
        p = tokenizer([b[1] for b in batch] + negative_texts, padding=True, truncation=True, max_length=p_len,
                      return_tensors="pt")
        q_reps, p_reps = model(q), model(p)                            # (B, 768), (B + k, 768)
        scores = q_reps @ p_reps.T                                     # (B, B + k)
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(batch_size))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step >= 2:
            times.append(time.perf_counter() - start)
    times.sort()
    return {"seconds_per_step": times[len(times) // 2], "q_padded": q["input_ids"].shape[1],
            "p_padded": p["input_ids"].shape[1]}
