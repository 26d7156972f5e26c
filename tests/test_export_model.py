"""`engine export-model`: a trained run as a sentence-transformers folder. The layout
is checked file by file against the library's documented format, the exported files
alone (transformers + mean pooling + the Dense weights) give the workbench's own
vectors, and where sentence-transformers is installed it loads the folder as it is
and encodes the same vectors."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from engine.config import EvalConfig
from engine.errors import InputError
from engine.export_model import export_sentence_transformers
from engine.model import BiEncoder
from engine.train import TrainConfig, train
from tests.conftest import ROOT
from tests.helpers import write_synthetic

pytestmark = pytest.mark.slow  # trains a model and starts `python -m engine export-model`

TEXTS = ["w1 w2 w3 w4", "w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20 w21 w22 w23", "w5"]


def train_tiny(tmp_path_factory, similarity: str):
    """A scratch model trained for a few steps (its run folder in a private runs dir)."""
    root = tmp_path_factory.mktemp(f"trained-{similarity}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WORKBENCH_RUNS", str(root / "runs"))
        env.setenv("WORKBENCH_CACHE", str(root / "cache"))
        env.setenv("WORKBENCH_STORE", str(root / "store.duckdb"))
        config = TrainConfig(dataset=str(write_synthetic(root / "syn")), model="scratch-L1-H32", run_id="tiny",
                             tokenizer_vocab_size=400, steps=6, batch_size=16, negatives=16, lr=3e-3,
                             similarity=similarity, max_query_length=16, max_passage_length=32, eval_every=6,
                             checkpoint_every=0, eval=EvalConfig(repeats=1, ranking="never"))
        train(config)
    return root / "runs" / "tiny" / "model"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory, "dot")


@pytest.fixture(scope="module")
def trained_cosine(tmp_path_factory):
    """As `trained`, with cosine similarity and a learned scale (the scratch rungs' default)."""
    return train_tiny(tmp_path_factory, "cosine")


def workbench_vectors(model_folder, texts):
    model, tokenizer = BiEncoder.load(model_folder)
    model.eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        return model.encode(batch["input_ids"], batch["attention_mask"])  # (texts, 768)


def export(*argv):
    return subprocess.run([sys.executable, "-m", "engine", "export-model", *map(str, argv)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_export_writes_the_documented_layout(trained, tmp_path):
    out = tmp_path / "st"
    result = export(trained, "--format", "sentence-transformers", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["modules"] == ["Transformer", "Pooling", "Dense"] and summary["dimension"] == 768
    modules = json.loads((out / "modules.json").read_text())
    assert [(m["idx"], m["name"], m["path"], m["type"]) for m in modules] == [
        (0, "0", "0_Transformer", "sentence_transformers.models.Transformer"),
        (1, "1", "1_Pooling", "sentence_transformers.models.Pooling"),
        (2, "2", "2_Dense", "sentence_transformers.models.Dense")]
    transformer = out / "0_Transformer"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in transformer.iterdir()}
    assert json.loads((transformer / "sentence_bert_config.json").read_text()) == {
        "max_seq_length": 32, "do_lower_case": False}                        # the run's passage length
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 32 and pooling["pooling_mode_mean_tokens"] is True
    assert not any(v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens")
    dense = json.loads((out / "2_Dense" / "config.json").read_text())
    assert dense == {"in_features": 32, "out_features": 768, "bias": True,
                     "activation_function": "torch.nn.modules.linear.Identity"}
    weights = load_file(str(out / "2_Dense" / "model.safetensors"))
    projection = load_file(str(trained / "projection.safetensors"))
    assert weights["linear.weight"].shape == (768, 32) and torch.equal(weights["linear.weight"], projection["weight"])
    assert json.loads((out / "config_sentence_transformers.json").read_text())["similarity_fn_name"] == "dot"

    # the exported files alone, read as the format says, give the workbench's vectors
    vectors = vectors_from_the_files(out)                                         # (texts, 768)
    expected = workbench_vectors(trained, TEXTS)
    assert expected.abs().max() > 0
    torch.testing.assert_close(vectors, expected, atol=1e-5, rtol=1e-5)


def vectors_from_the_files(out) -> torch.Tensor:
    """(texts, 768): TEXTS through an export's Transformer, mean pooling and Dense layer,
    read with transformers and safetensors alone, as the format describes them."""
    from transformers import AutoModel, AutoTokenizer

    transformer = out / "0_Transformer"
    weights = load_file(str(out / "2_Dense" / "model.safetensors"))
    encoder, tokenizer = AutoModel.from_pretrained(str(transformer)).eval(), AutoTokenizer.from_pretrained(str(transformer))
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state                               # (texts, len, hidden)
    mask = batch["attention_mask"].unsqueeze(-1).float()                          # (texts, len, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1)                                 # (texts, hidden)
    return pooled @ weights["linear.weight"].T + weights["linear.bias"]


def test_sentence_transformers_loads_the_export_as_it_is(trained, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    out = tmp_path / "st"
    export_sentence_transformers(str(trained), out)
    model = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    assert model.max_seq_length == 32
    vectors = model.encode(TEXTS, convert_to_tensor=True)                  # (texts, 768)
    torch.testing.assert_close(vectors, workbench_vectors(trained, TEXTS), atol=1e-5, rtol=1e-5)
    scores = model.similarity(vectors[:1], vectors)                   # inner products, as Eq. 1
    torch.testing.assert_close(scores[0], vectors @ vectors[0], atol=1e-4, rtol=1e-5)


def test_bad_runs_and_outputs_are_explained(trained, tmp_path):
    result = export("no-such-run", "--out", tmp_path / "x")
    assert result.returncode == 2 and "no trained model" in result.stderr and "Traceback" not in result.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not an empty folder"):
        export_sentence_transformers(str(trained), taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    with pytest.raises(InputError, match="not a safe name"):
        export_sentence_transformers("../escape", tmp_path / "y")


def test_a_cosine_model_exports_with_normalize_and_cosine_similarity(trained_cosine, tmp_path):
    """Before: the Dense layer got the learned scale as linear.log_scale and the folder said
    "dot" with no Normalize, so it ranked by unnormalised inner products."""
    out = tmp_path / "st"
    summary = export_sentence_transformers(str(trained_cosine), out)
    assert summary["modules"] == ["Transformer", "Pooling", "Dense", "Normalize"]
    modules = json.loads((out / "modules.json").read_text())
    assert (modules[3]["path"], modules[3]["type"]) == ("3_Normalize", "sentence_transformers.models.Normalize")
    assert (out / "3_Normalize").is_dir()
    assert json.loads((out / "config_sentence_transformers.json").read_text())["similarity_fn_name"] == "cosine"
    weights = load_file(str(out / "2_Dense" / "model.safetensors"))
    assert sorted(weights) == ["linear.bias", "linear.weight"]
    assert "log_scale" in load_file(str(trained_cosine / "projection.safetensors"))

    # the exported files alone, read as the format says, give the workbench's unit vectors
    vectors = torch.nn.functional.normalize(vectors_from_the_files(out), dim=-1)  # (texts, 768)
    expected = workbench_vectors(trained_cosine, TEXTS)                           # (texts, 768), scaled unit vectors
    torch.testing.assert_close(vectors, torch.nn.functional.normalize(expected, dim=-1), atol=1e-5, rtol=1e-5)


def test_sentence_transformers_ranks_a_cosine_export_as_the_workbench_does(trained_cosine, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    out = tmp_path / "st"
    export_sentence_transformers(str(trained_cosine), out)
    model = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    vectors = model.encode(TEXTS, convert_to_tensor=True)                  # (texts, 768), unit vectors
    expected = workbench_vectors(trained_cosine, TEXTS)                     # the same times one learned constant
    torch.testing.assert_close(vectors, torch.nn.functional.normalize(expected, dim=-1), atol=1e-5, rtol=1e-5)
    scores = model.similarity(vectors[:1], vectors)[0]                      # cosine: the workbench's scores / scale
    torch.testing.assert_close(scores, torch.nn.functional.cosine_similarity(expected, expected[:1]),
                               atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("similarity, drop_scale, message", [
    ("cosine", True, "similarity is cosine, but projection.safetensors holds no log_scale"),
    ("dot", False, "similarity is dot, but projection.safetensors holds a cosine model's log_scale"),
    ("angle", False, "similarity is 'angle', not one of dot, cosine"),
])
def test_a_similarity_its_weights_contradict_is_refused(trained_cosine, tmp_path, similarity, drop_scale, message):
    import shutil

    from safetensors.torch import save_file

    model = shutil.copytree(trained_cosine, tmp_path / "model")
    settings = json.loads((model / "bi_encoder.json").read_text())
    (model / "bi_encoder.json").write_text(json.dumps({**settings, "similarity": similarity}))
    if drop_scale:
        tensors = load_file(str(model / "projection.safetensors"))
        save_file({k: v for k, v in tensors.items() if k != "log_scale"}, str(model / "projection.safetensors"))
    with pytest.raises(InputError, match=message):
        export_sentence_transformers(str(model), tmp_path / "st")
    assert not (tmp_path / "st").exists()

