"""engine/dropout.py: the cheap masks keep nn.Dropout's rate, scaling and seeding, and
an encoder using them gives the same outputs as the stock one when dropout is off."""
import torch
from torch import nn
from transformers import BertConfig, BertModel

from engine.dropout import FastDropout, apply_dropout, keep_mask, use_fast_dropout


def test_mask_rate_and_expectation():
    torch.manual_seed(0)
    x = torch.ones(2_000_000)
    kept = keep_mask(x.shape, 0.1, x.device).float().mean().item()
    assert abs(kept - 0.9) < 0.001  # 2e6 draws: standard error 2e-4
    assert abs(apply_dropout(x, 0.1, True).mean().item() - 1.0) < 0.002  # inverted dropout keeps the mean


def test_mask_follows_the_seed_and_eval_is_identity():
    x = torch.randn(64, 33)
    torch.manual_seed(3)
    first = apply_dropout(x, 0.25, True)
    torch.manual_seed(3)
    assert torch.equal(first, apply_dropout(x, 0.25, True))
    assert not torch.equal(first, apply_dropout(x, 0.25, True))
    assert apply_dropout(x, 0.25, False) is x
    kept = first != 0
    assert torch.allclose(first[kept] / x[kept], torch.tensor(1 / 0.75))  # survivors scaled by 1 / (1 - p)


def _tiny_bert(seed=0):
    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64), add_pooling_layer=False)


def test_encoder_swap_matches_stock_model_without_dropout_and_trains_with_it():
    stock, fast = _tiny_bert(), use_fast_dropout(_tiny_bert())
    assert not any(type(m) is nn.Dropout for m in fast.modules())
    assert sum(isinstance(m, FastDropout) for m in fast.modules()) == sum(isinstance(m, nn.Dropout) for m in stock.modules())
    ids = torch.randint(0, 100, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 7:] = 0  # padding goes through the attention mask
    stock.eval(), fast.eval()
    expected = stock(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(fast(input_ids=ids, attention_mask=mask).last_hidden_state, expected, atol=1e-5)
    fast.train()
    out = fast(input_ids=ids, attention_mask=mask).last_hidden_state  # (3, 12, 32)
    assert not torch.allclose(out, expected, atol=1e-3)  # dropout is on in training
    out.sum().backward()
    assert all(p.grad is not None for n, p in fast.named_parameters() if "embeddings" not in n)
