"""The bi-encoder (Eq. 2), the loss (Eq. 3) with its false-negative mask, loading
with from_pretrained from a folder, tokenizers and the token cache."""
import math

import numpy as np
import pytest
import torch

from engine import tokenize_cache
from engine.ladder import LADDER, non_embedding_params
from engine.model import (
    BiEncoder,
    ContrastiveLoss,
    false_negative_mask,
    pretrained_encoder,
    scratch_encoder,
)
from engine.paths import SHARED_VOCAB
from engine.tokenize_cache import (
    TokenizedTexts,
    tokenize_cached,
    tokenizer_from_vocab,
    trained_wordpiece,
)

CORPUS = [f"passage {i} about apples bananas cherries and the number {i * 7}" for i in range(60)]


@pytest.fixture(scope="module")
def tokenizer():
    return tokenize_cache._train_wordpiece(CORPUS, vocab_size=200)


def tiny_model(tokenizer, pooling="mean", seed=0) -> BiEncoder:
    return BiEncoder(scratch_encoder(LADDER["scratch-L1-H32"].config(vocab_size=len(tokenizer)), seed), pooling)


def test_mean_pooling_ignores_padding(tokenizer):
    model = tiny_model(tokenizer).eval()
    alone = tokenizer(["apples"], return_tensors="pt")
    batch = tokenizer(["apples", "a much longer passage about bananas and cherries"], padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        v_alone = model.encode(alone["input_ids"], alone["attention_mask"])
        v_batch = model.encode(batch["input_ids"], batch["attention_mask"])
    assert v_alone.shape == (1, 768)
    assert torch.allclose(v_alone[0], v_batch[0], atol=1e-5)
    cls = tiny_model(tokenizer, pooling="cls").eval()
    with torch.no_grad():
        assert not torch.allclose(cls.encode(alone["input_ids"], alone["attention_mask"]), v_alone)


def test_forward_returns_typed_output(tokenizer):
    model = tiny_model(tokenizer)
    q = tokenizer(["apples", "bananas"], padding=True, return_tensors="pt")
    p = tokenizer(CORPUS[:5], padding=True, return_tensors="pt")
    out = model(q["input_ids"], q["attention_mask"], p["input_ids"], p["attention_mask"])
    assert out.q_reps.shape == (2, 768) and out.p_reps.shape == (5, 768)
    assert out.scores.shape == (2, 5) and out.loss is None
    assert torch.allclose(out.scores, out.q_reps @ out.p_reps.T)
    batch = {"passage_identity": torch.arange(5), "query_positives": torch.tensor([[0], [1]])}
    trained = model(q["input_ids"], q["attention_mask"], p["input_ids"], p["attention_mask"], **batch)
    assert trained.loss.ndim == 0 and trained.loss.requires_grad  # Eq. 3, ready for backward
    expected = ContrastiveLoss.softmax_loss(trained.scores, torch.tensor([0, 1]), torch.zeros(2, 5, dtype=torch.bool))
    assert trained.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert BiEncoder(model.encoder, projection_dim=None).encode(q["input_ids"], q["attention_mask"]).shape == (2, 32)


def test_contrastive_loss_is_eq_3():
    scores = torch.tensor([[3.0, 1.0, 0.5, 2.0], [0.0, 2.0, 1.0, 1.0]])
    labels = torch.tensor([0, 1])
    none = torch.zeros_like(scores, dtype=torch.bool)
    expected = -np.mean([3 - math.log(sum(math.exp(s) for s in scores[0])),
                         2 - math.log(sum(math.exp(s) for s in scores[1]))])
    assert ContrastiveLoss.softmax_loss(scores, labels, none).item() == pytest.approx(expected, rel=1e-6)
    masked = none.clone()
    masked[0, 3] = True  # left out of query 0's softmax entirely
    expected_0 = -(3 - math.log(math.exp(3) + math.exp(1) + math.exp(0.5)))
    per_query = [expected_0, -(2 - math.log(sum(math.exp(s) for s in scores[1])))]
    assert ContrastiveLoss.softmax_loss(scores, labels, masked).item() == pytest.approx(np.mean(per_query), rel=1e-6)


def test_loss_masks_a_shared_paragraph():
    """Two queries with the same positive (squad-dev's five questions per paragraph):
    neither is pushed away from it, so perfect vectors give a loss near 0."""
    q = torch.tensor([[10.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    identity = torch.tensor([5, 5, 6, 7])
    scores, loss = ContrastiveLoss()(q, p, identity, torch.tensor([[5], [5], [6]]))
    assert scores.shape == (3, 4) and loss.item() < 1e-3
    assert ContrastiveLoss()(q, p, identity, torch.tensor([[-1], [-1], [6]]))[1].item() > 0.4  # unmasked


def test_loss_without_in_batch_negatives_leaves_other_positives_out():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    identity, positives = torch.tensor([0, 1, 2]), torch.tensor([[0], [1]])
    _, loss = ContrastiveLoss(in_batch_negatives=False)(q, p, identity, positives)
    expected = -np.mean([1 - math.log(math.exp(1) + math.exp(0.5))] * 2)  # each against the shared negative only
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_false_negative_mask():
    """Candidates: batch positives [7, 7, 9] (queries 0 and 1 share a paragraph, as
    squad-dev's questions do), then random negatives [9, 3]. Query 2 also has 3 as a
    positive."""
    identity = torch.tensor([7, 7, 9, 9, 3])
    positives = torch.tensor([[7, -1], [7, -1], [9, 3]])
    labels = torch.tensor([0, 1, 2])
    mask = false_negative_mask(identity, positives, labels)
    assert mask.tolist() == [
        [False, True, False, False, False],  # the same paragraph in column 1 is not a negative
        [True, False, False, False, False],
        [False, False, False, True, True],  # its positive 9 drawn again, and its other positive 3
    ]
    no_in_batch = false_negative_mask(identity, positives, labels, positive_columns=torch.tensor([0, 1, 2]))
    assert no_in_batch.tolist() == [
        [False, True, True, False, False],
        [True, False, True, False, False],
        [True, True, False, True, True],
    ]


def test_from_pretrained_folder_and_round_trip(tmp_path, tokenizer):
    """The real from_pretrained path, on a tiny model saved to a folder."""
    encoder = scratch_encoder(LADDER["scratch-L1-H64"].config(vocab_size=len(tokenizer)), seed=1)
    encoder.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    loaded, loaded_tokenizer = pretrained_encoder(str(tmp_path / "tiny"))
    assert len(loaded_tokenizer) == len(tokenizer)
    for (name, a), (_, b) in zip(encoder.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert non_embedding_params(loaded.config) == non_embedding_params(LADDER["scratch-L1-H64"].config())

    model = BiEncoder(loaded).eval()
    model.save(tmp_path / "bi", loaded_tokenizer)
    again, _ = BiEncoder.load(tmp_path / "bi")
    x = loaded_tokenizer(["apples and bananas"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model.encode(x["input_ids"], x["attention_mask"]),
                              again.eval().encode(x["input_ids"], x["attention_mask"]))
    plain, _ = BiEncoder.load(tmp_path / "tiny")  # a plain encoder: no projection
    assert plain.projection_dim is None


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from engine.errors import InputError

    with pytest.raises(InputError, match="not found locally"):
        pretrained_encoder(str(tmp_path / "no-such-model"))


@pytest.mark.skipif(not SHARED_VOCAB.exists(), reason="../shared/vocab not present")
def test_tokenizer_from_shared_vocab():
    tokenizer = tokenizer_from_vocab(SHARED_VOCAB / "bert-base-uncased-vocab.txt")
    assert len(tokenizer) == 30522
    assert tokenizer("Hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_bad_vocab_file(tmp_path):
    from engine.errors import InputError

    (tmp_path / "vocab.txt").write_text("hello\nworld\n")
    with pytest.raises(InputError, match="lacks the special tokens"):
        tokenizer_from_vocab(tmp_path / "vocab.txt")


def test_trained_wordpiece_is_cached():
    first = trained_wordpiece(CORPUS, vocab_size=150)
    second = trained_wordpiece(CORPUS, vocab_size=150)
    assert first.get_vocab() == second.get_vocab() and first.tokenize("Apples bananas") == ["apples", "bananas"]
    assert "[CLS]" in first.get_vocab()


def test_token_cache_tokenises_once(tokenizer, monkeypatch):
    first = tokenize_cached(CORPUS, tokenizer, max_length=8)
    assert len(first) == 60 and first.lengths().max() == 8  # truncated, [CLS] ... [SEP]

    def fail(*args):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(tokenize_cache, "_tokenize", fail)
    again = tokenize_cached(CORPUS, tokenizer, max_length=8)
    assert np.array_equal(first.ids, again.ids) and np.array_equal(first.offsets, again.offsets)
    with pytest.raises(AssertionError, match="tokenised again"):
        tokenize_cached(CORPUS, tokenizer, max_length=9)  # another max length is another entry


def test_tokenized_batch_and_concat(tokenizer):
    tokens = tokenize_cached(CORPUS[:3], tokenizer, max_length=16)
    ids, mask = tokens.batch(np.array([2, 0]))
    assert ids.shape[0] == 2 and mask.sum(1).tolist() == tokens.lengths(np.array([2, 0])).tolist()
    assert ids[0, 0].item() == tokenizer.cls_token_id
    both = TokenizedTexts.concat([tokens, tokens])
    assert len(both) == 6 and torch.equal(both.batch(np.array([4]))[0], tokens.batch(np.array([1]))[0])


def test_cosine_similarity_scores_a_learned_scale_times_the_cosine_and_round_trips(tmp_path, tokenizer):
    encoder = scratch_encoder(LADDER["scratch-L1-H32"].config(vocab_size=len(tokenizer)), seed=0)
    model = BiEncoder(encoder, similarity="cosine").eval()
    with torch.no_grad():
        model.log_scale.fill_(math.log(7.0))
    x = tokenizer(["apples and bananas", "the number 14"], padding=True, return_tensors="pt")
    with torch.no_grad():
        vectors = model.encode(x["input_ids"], x["attention_mask"])  # (2, 768)
        plain = BiEncoder(encoder).eval()
        plain.projection.load_state_dict(model.projection.state_dict())
        raw = plain.encode(x["input_ids"], x["attention_mask"])
    cosine = torch.nn.functional.cosine_similarity(raw[0], raw[1], dim=0)
    assert (vectors[0] @ vectors[1]).item() == pytest.approx(7.0 * cosine.item(), rel=1e-5)
    assert vectors.norm(dim=1).tolist() == pytest.approx([math.sqrt(7.0)] * 2, rel=1e-5)
    model.save(tmp_path / "bi", tokenizer)
    again, _ = BiEncoder.load(tmp_path / "bi")
    assert again.similarity == "cosine" and again.log_scale.item() == pytest.approx(math.log(7.0))
    with torch.no_grad():
        assert torch.allclose(again.eval().encode(x["input_ids"], x["attention_mask"]), vectors, atol=1e-6)


def test_the_word_embeddings_train_at_their_own_rate():
    from engine.config import TrainConfig
    from engine.train import TrainerState, _optimizer

    encoder = scratch_encoder(LADDER["scratch-L1-H32"].config(vocab_size=300), seed=0)
    model = BiEncoder(encoder)
    words = encoder.get_input_embeddings().weight
    optimizer, _ = _optimizer(model, TrainConfig(dataset="x", lr=1e-3, embedding_lr_scale=0.1), TrainerState(end_step=10))
    rates = {group["lr"] for group in optimizer.param_groups if any(p is words for p in group["params"])}
    assert len(rates) == 1 and rates.pop() == pytest.approx(1e-4)
    assert {group["lr"] for group in optimizer.param_groups if all(p is not words for p in group["params"])} == {1e-3}
    same, _ = _optimizer(model, TrainConfig(dataset="x", lr=1e-3), TrainerState(end_step=10))
    assert len(same.param_groups) == 2  # as checkpoints written before the option hold
