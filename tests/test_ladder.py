"""The model ladder: N from the config alone, checked against the paper's numbers
and against counting the parameters of the built model."""
import json
import math

import pytest

from engine.ladder import (
    LADDER,
    MEBI,
    _named_parameter_sizes,
    ladder_model,
    non_embedding_params,
    strict_non_embedding_params,
)

BERT = [m for m in LADDER.values() if m.family == "bert"]


def test_the_24_google_bert_checkpoints():
    assert len(BERT) == 24
    assert {(m.layers, m.hidden) for m in BERT} == {(l, h) for l in (2, 4, 6, 8, 10, 12) for h in (128, 256, 512, 768)}
    for m in BERT:
        assert m.name == f"google/bert_uncased_L-{m.layers}_H-{m.hidden}_A-{m.hidden // 64}"
        config = m.config()
        assert (config.intermediate_size, config.num_attention_heads, config.vocab_size) == (4 * m.hidden, m.hidden // 64, 30522)
    assert ladder_model("bert_uncased_L-2_H-128_A-2") is LADDER["google/bert_uncased_L-2_H-128_A-2"]


def test_n_matches_the_papers_range():
    """The paper: 0.5M (BERT-Tiny) to 82M (BERT-Base) non-embedding parameters, in 2^20."""
    sizes = {m.name: non_embedding_params(m.config()) / MEBI for m in BERT}
    assert round(sizes["google/bert_uncased_L-2_H-128_A-2"], 1) == 0.5
    assert round(sizes["google/bert_uncased_L-12_H-768_A-12"]) == 82
    assert min(sizes.values()) == sizes["google/bert_uncased_L-2_H-128_A-2"]
    assert max(sizes.values()) == sizes["google/bert_uncased_L-12_H-768_A-12"]
    # exact counts: 2 layers of 198,272, pooler 16,512, projection 128*768+768
    assert non_embedding_params(LADDER["google/bert_uncased_L-2_H-128_A-2"].config()) == 512_128
    assert non_embedding_params(LADDER["google/bert_uncased_L-12_H-768_A-12"].config()) == 86_235_648
    assert strict_non_embedding_params(LADDER["google/bert_uncased_L-12_H-768_A-12"].config()) == 86_235_648 - 590_592


@pytest.mark.parametrize("name", sorted(LADDER))
def test_closed_form_equals_counting_the_built_model(name):
    """Every rung: the count from the config equals counting the parameters of
    AutoModel.from_config (on the meta device) by the paper's rule."""
    config = LADDER[name].config()
    sizes = _named_parameter_sizes(config)
    counted = sum(s for n, s in sizes if "embedding" not in n) + config.hidden_size * 768 + 768
    pooler = sum(s for n, s in sizes if "pooler" in n)
    assert non_embedding_params(config) == counted
    assert strict_non_embedding_params(config) == counted - pooler
    assert non_embedding_params(config, projection_dim=None) == counted - config.hidden_size * 768 - 768


def test_ernie_series_and_scratch_ladder():
    ernie = [m for m in LADDER.values() if m.family == "ernie"]
    assert {m.name for m in ernie} >= {f"nghuyong/ernie-3.0-{s}-zh" for s in ("nano", "micro", "mini", "base", "xbase")}
    assert all(m.language == "zh" and m.config().model_type == "ernie" for m in ernie)
    scratch = [m for m in LADDER.values() if m.family == "scratch"]
    assert len(scratch) >= 6 and all(m.scratch for m in scratch)
    sizes = [non_embedding_params(m.config()) for m in scratch]
    assert math.log10(max(sizes) / min(sizes)) >= 1.5
    assert sizes == sorted(sizes)


def test_models_json_contract():
    from engine.cli import main
    from tests.in_process import run_main

    out = run_main(main, "models", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == len(LADDER)
    for row in rows:
        assert {"name", "layers", "hidden", "scratch", "n_params"} <= set(row)
        assert isinstance(row["scratch"], bool) and isinstance(row["n_params"], int)
    by_name = {row["name"]: row for row in rows}
    assert by_name["google/bert_uncased_L-2_H-128_A-2"]["n_params"] == 512_128
    assert by_name["scratch-L2-H64"]["scratch"] is True
