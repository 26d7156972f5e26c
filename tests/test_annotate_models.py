"""docT5query-style and local-LLM pipelines end to end with tiny random models
(T5 and GPT-2 built from a config). Random models emit garbage: the tests check
that it is counted and skipped, that the files are valid BEIR, and that a rerun
resumes from the cache."""
import json
import subprocess
import sys
from collections import Counter

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    BertTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from engine.annotate import doc2query
from engine.annotate.doc2query import Doc2QueryConfig, generate_doc2query
from engine.annotate.llm import LLMConfig, LocalChatModel, generate_llm
from engine.data import load_retrieval_data, nested_subset
from engine.paths import SHARED_VOCAB
from tests.conftest import ROOT
from tests.test_annotate_ict import PASSAGES, TRAIN, read_set, write_beir

WORDS = ("the a of passage query what who when where why how is was river city war king music science "
         "alpha beta gamma delta one two three four first second third end starts follows ask").split()
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def word_tokenizer(specials: list[str], **named) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained here on a few words (unknown words -> [UNK])."""
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.decoder = decoders.WordPiece()                           # joins words with spaces
    raw.train_from_iterator([" ".join(WORDS)] * 3, trainers.WordLevelTrainer(special_tokens=["[UNK]", *specials]))
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", **named)


def tiny_t5(tokenizer, folder):
    config = T5Config(vocab_size=len(tokenizer), d_model=16, d_ff=32, num_layers=1, num_decoder_layers=1,
                      num_heads=2, d_kv=8, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)        # spread the samples over the vocabulary
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    tokenizer = word_tokenizer(["<pad>", "</s>"], pad_token="<pad>", eos_token="</s>")
    return tiny_t5(tokenizer, tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    tokenizer = word_tokenizer(["<|endoftext|>", "<|user|>", "<|assistant|>"], eos_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def dataset(tmp_path):
    return write_beir(tmp_path / "data", PASSAGES, TRAIN)


def d2q_config(dataset, out, model, **kw):
    settings = {"n_passages": 3, "queries_per_passage": 3, "max_new_tokens": 6, "batch_size": 2, "device": "cpu"}
    return Doc2QueryConfig(str(dataset), str(out), model, **{**settings, **kw})


def test_doc2query_end_to_end(dataset, tmp_path, t5_folder):
    out = tmp_path / "d2q"
    result = generate_doc2query(d2q_config(dataset, out, t5_folder))
    counts = result["counts"]
    assert counts["outputs"] == counts["queries"] == 9
    assert counts["pairs"] + counts["skipped"].get("empty", 0) + counts["skipped"].get("duplicate", 0) == 9
    assert counts["pairs"] > 0
    queries, corpus, qrels = read_set(out)
    sampled = {list(PASSAGES)[i] for i in nested_subset(len(PASSAGES), 3, 0)}
    assert {p for _, p in qrels} <= sampled
    assert all(corpus[p] == {"_id": p, "title": "", "text": PASSAGES[p]} for _, p in qrels)
    assert max(Counter(p for _, p in qrels).values()) <= 3
    assert len(load_retrieval_data(out).pairs("train")) == len(qrels)
    assert result["model"] == t5_folder and result["settings"]["top_k"] == 10


def test_doc2query_resumes_from_the_cache(dataset, tmp_path, t5_folder, monkeypatch):
    generated = []
    call = doc2query.Seq2SeqSampler.__call__

    def counting(self, batch):
        generated.extend(pid for pid, _ in batch)
        yield from call(self, batch)

    monkeypatch.setattr(doc2query.Seq2SeqSampler, "__call__", counting)
    first = generate_doc2query(d2q_config(dataset, tmp_path / "a", t5_folder, n_passages=2))
    assert len(generated) == 2
    generate_doc2query(d2q_config(dataset, tmp_path / "b", t5_folder, n_passages=4))
    assert len(generated) == 4 and len(set(generated)) == 4             # only the 2 new passages
    cache = (tmp_path / "cache" / "annotate")
    assert [len(f.read_text().splitlines()) for f in cache.iterdir()] == [4]

    def no_model(self):
        raise AssertionError("a fully cached run must not load the model")

    monkeypatch.setattr(doc2query.Seq2SeqSampler, "_load", no_model)
    again = generate_doc2query(d2q_config(dataset, tmp_path / "c", t5_folder, n_passages=2))
    assert (tmp_path / "c" / "queries.jsonl").read_text() == (tmp_path / "a" / "queries.jsonl").read_text()
    assert again["counts"] == first["counts"]


@pytest.mark.skipif(not (SHARED_VOCAB / "bert-base-uncased-vocab.txt").is_file(), reason="../shared/vocab is absent")
def test_doc2query_with_the_bert_vocabulary(dataset, tmp_path):
    from transformers.models.bert.tokenization_bert import load_vocab

    tokenizer = BertTokenizer(vocab=load_vocab(str(SHARED_VOCAB / "bert-base-uncased-vocab.txt")))
    tokenizer.eos_token = "[SEP]"
    model = tiny_t5(tokenizer, tmp_path / "t5-bert")
    result = generate_doc2query(d2q_config(dataset, tmp_path / "out", model, n_passages=2, queries_per_passage=2,
                                           max_new_tokens=3))
    assert result["counts"]["outputs"] == 4
    queries, corpus, qrels = read_set(tmp_path / "out")
    assert len(qrels) == result["n_pairs"] and set(queries) == {q for q, _ in qrels}


def test_local_llm_end_to_end(dataset, tmp_path, gpt2_folder):
    out = tmp_path / "llm"
    config = LLMConfig(str(dataset), str(out), gpt2_folder, max_new_tokens=8, batch_size=2, device="cpu")
    result = generate_llm(config)
    demand = Counter(p for _, p in TRAIN)
    counts = result["counts"]
    assert result["generator"] == "llm-local"
    assert counts["outputs"] == len(demand)                              # one answer per positive passage
    parsed = counts["outputs"] - counts["skipped"].get("not_json", 0)
    assert counts["skipped"].get("shortfall", 0) + result["n_pairs"] == len(TRAIN)
    assert result["n_pairs"] <= 5 * parsed
    queries, corpus, qrels = read_set(out)
    assert len(qrels) == result["n_pairs"]
    cache = next((tmp_path / "cache" / "annotate").glob("llm-*.jsonl"))
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert sorted(r["passage_id"] for r in rows) == sorted(demand)
    assert all(len(r["outputs"]) == 1 and isinstance(r["outputs"][0], str) for r in rows)


def test_local_llm_uses_the_chat_template_when_there_is_one(gpt2_folder, tmp_path):
    chat = LocalChatModel(LLMConfig("d", "o", gpt2_folder, device="cpu"))
    chat._load()
    assert chat.tokenizer.padding_side == "left" and chat.tokenizer.pad_token == "<|endoftext|>"
    assert chat.render("hi there") == "<|user|> hi there <|assistant|>"
    chat.tokenizer.chat_template = None
    assert chat.render("hi there") == "hi there"


@pytest.mark.slow
def test_annotate_doc2query_cli(dataset, tmp_path, t5_folder):
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "engine", "annotate", "doc2query", "--dataset", str(dataset), "--out", str(out),
         "--model", t5_folder, "--passages", "2", "--queries-per-passage", "2", "--max-new-tokens", "4",
         "--top-k", "5", "--top-p", "0.9", "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "doc2query (doc2query):" in result.stdout and "4 outputs" in result.stdout
    settings = json.loads((out / "generation.json").read_text())["settings"]
    assert (settings["n_passages"], settings["top_k"], settings["top_p"]) == (2, 5, 0.9)
