"""A trained bi-encoder as a sentence-transformers model folder.

A run's model folder (`runs_dir()/<run_id>/model`, written by `BiEncoder.save`)
holds the encoder and tokenizer (`encoder/`, loadable by `AutoModel`), the
projection's weights (`projection.safetensors`, keys `weight`, `bias`) and the
pooling (`bi_encoder.json`). sentence-transformers expresses the same model,
v = Pooling(Transformer(x)) W + b, as a pipeline of modules listed in
`modules.json`, each in its own folder:

    modules.json                        [{idx, name, path, type}, ...] in order
    config_sentence_transformers.json   similarity_fn_name "dot" (Eq. 1 is an inner product)
    0_Transformer/                      config.json, model.safetensors, tokenizer files,
                                        sentence_bert_config.json {max_seq_length, do_lower_case}
    1_Pooling/config.json               mean (or cls) over the attention mask
    2_Dense/config.json, model.safetensors   the 768-d projection (keys linear.weight, linear.bias),
                                        identity activation

The folder is written in the layout sentence-transformers 2.x to 5.x saves (class
names `sentence_transformers.models.*`), which newer versions still load. Files are
copied, never unpickled: weights move from safetensors to safetensors.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.paths import runs_dir, store_files, store_path, validate_name

MODEL_CONFIG = "bi_encoder.json"        # engine.model.CONFIG_FILE
PROJECTION_WEIGHTS = "projection.safetensors"  # engine.model.PROJECTION_FILE
IDENTITY = "torch.nn.modules.linear.Identity"
FORMATS = ("sentence-transformers",)


@dataclass(frozen=True)
class TrainedModel:
    folder: Path             # a run's model folder
    pooling: str             # "mean" | "cls"
    projection_dim: int | None
    hidden_size: int
    max_seq_length: int      # the passage length the run trained with


def find_model(run: str) -> Path:
    """The model folder of `run`: a run id (under runs_dir()), a run folder, or a model folder."""
    path = Path(run).expanduser()
    if len(run) > 4096 or any(len(part) > 255 for part in path.parts):
        raise InputError(f"{run[:80]}...: too long for a run id or a path; give a run id or a run's model folder")
    for candidate in (path, path / "model"):
        if (candidate / MODEL_CONFIG).is_file():
            return candidate
    if path.exists():
        raise InputError(f"{run}: no trained model there (no {MODEL_CONFIG}); give a run id or a run's model folder")
    folder = runs_dir() / validate_name("run id", run) / "model"
    if not (folder / MODEL_CONFIG).is_file():
        raise InputError(f"run {run!r} has no trained model in {folder}: has it finished training?")
    return folder


def read_model(folder: Path) -> TrainedModel:
    try:
        settings = json.loads((folder / MODEL_CONFIG).read_text())
        encoder_config = json.loads((folder / "encoder" / "config.json").read_text())
        train_config_file = folder / "train_config.json"
        train_config = json.loads(train_config_file.read_text()) if train_config_file.is_file() else {}
        length = train_config.get("max_passage_length") or encoder_config.get("max_position_embeddings", 512)
        return TrainedModel(folder, settings["pooling"], settings["projection_dim"], encoder_config["hidden_size"],
                            int(length))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:  # missing, truncated, other shape
        raise InputError(f"{folder}: not a complete trained model ({type(err).__name__}: {err}); "
                         "export a run that finished training") from None


def export_sentence_transformers(run: str, out: Path) -> dict:
    """Write `run`'s model to `out` (which must not exist or be empty); returns a summary."""
    model = read_model(find_model(run))
    out = Path(out).expanduser().absolute()
    _check_not_protected(out, {**store_files(store_path()), "the run's model folder": model.folder})
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out} exists and is not an empty folder; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        modules = _write_modules(model, staging)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)       # a half-written export is never left under the final name
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"format": "sentence-transformers", "out": str(out), "model_folder": str(model.folder),
            "modules": [m["type"].rsplit(".", 1)[-1] for m in modules], "pooling": model.pooling,
            "dimension": model.projection_dim or model.hidden_size, "max_seq_length": model.max_seq_length}


def _check_not_protected(out: Path, protected: dict[str, Path]) -> None:
    """InputError when the export folder `out` is one of the `protected` paths (what ->
    path: the store, its write-ahead log, its spool folder, the model read) or lies inside one."""
    target = out.resolve()
    for what, path in protected.items():
        kept = Path(path).expanduser().resolve()
        if target == kept or kept in target.parents:
            inside = "" if target == kept else " (inside it)"
            raise InputError(f"--out {out} would write into {what} {kept}{inside}; choose a folder outside it")


def _write_modules(model: TrainedModel, folder: Path) -> list[dict]:
    modules = [_transformer(model, folder / "0_Transformer"), _pooling(model, folder / "1_Pooling")]
    if model.projection_dim:
        modules.append(_dense(model, folder / "2_Dense"))
    listed = [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (path, kind) in enumerate(modules)]
    _write_json(folder / "modules.json", listed)
    _write_json(folder / "config_sentence_transformers.json",
                {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "dot"})
    return listed


def _transformer(model: TrainedModel, folder: Path) -> tuple[str, str]:
    shutil.copytree(model.folder / "encoder", folder)   # config.json, model.safetensors, tokenizer files
    if not (folder / "model.safetensors").is_file():
        raise InputError(f"{model.folder / 'encoder'}: no model.safetensors (only safetensors weights are exported)")
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": model.max_seq_length, "do_lower_case": False})
    return folder.name, "sentence_transformers.models.Transformer"


def _pooling(model: TrainedModel, folder: Path) -> tuple[str, str]:
    folder.mkdir()
    _write_json(folder / "config.json", {
        "word_embedding_dimension": model.hidden_size,
        "pooling_mode_cls_token": model.pooling == "cls",
        "pooling_mode_mean_tokens": model.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })
    return folder.name, "sentence_transformers.models.Pooling"


def _dense(model: TrainedModel, folder: Path) -> tuple[str, str]:
    from safetensors.torch import load_file, save_file

    folder.mkdir()
    projection = load_file(str(model.folder / PROJECTION_WEIGHTS))   # {"weight": (dim, h), "bias": (dim,)}
    save_file({f"linear.{name}": tensor.contiguous() for name, tensor in projection.items()},
              str(folder / "model.safetensors"))
    _write_json(folder / "config.json", {"in_features": model.hidden_size, "out_features": model.projection_dim,
                                         "bias": "bias" in projection, "activation_function": IDENTITY})
    return folder.name, "sentence_transformers.models.Dense"


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2))
