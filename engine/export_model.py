"""A trained bi-encoder as a sentence-transformers model folder.

A run's model folder (`runs_dir()/<run_id>/model`, written by `BiEncoder.save`)
holds the encoder and tokenizer (`encoder/`, loadable by `AutoModel`), the
projection's weights (`projection.safetensors`, keys `weight`, `bias`, and a cosine
model's learned scale `log_scale`) and the pooling and similarity (`bi_encoder.json`).
sentence-transformers expresses the same model, v = Pooling(Transformer(x)) W + b
(a cosine model: v / |v| times the constant sqrt(exp(log_scale)), which ranks as v / |v|
does), as a pipeline of modules listed in `modules.json`, each in its own folder:

    modules.json                        [{idx, name, path, type}, ...] in order
    config_sentence_transformers.json   similarity_fn_name "dot" (Eq. 1 is an inner product),
                                        "cosine" for a cosine model
    0_Transformer/                      config.json, model.safetensors, tokenizer files,
                                        sentence_bert_config.json {max_seq_length, do_lower_case}
    1_Pooling/config.json               mean (or cls) over the attention mask
    2_Dense/config.json, model.safetensors   the 768-d projection (keys linear.weight, linear.bias),
                                        identity activation
    3_Normalize/                        a cosine model only: unit vectors (no files, as the library
                                        saves it); 2_Normalize when there is no projection

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

from engine.checks import is_positive_whole
from engine.errors import InputError
from engine.paths import check_not_protected, make_output_folder, runs_dir, store_files, store_path, validate_name

MODEL_CONFIG = "bi_encoder.json"        # engine.model.CONFIG_FILE
PROJECTION_WEIGHTS = "projection.safetensors"  # engine.model.PROJECTION_FILE
IDENTITY = "torch.nn.modules.linear.Identity"
FORMATS = ("sentence-transformers",)
POOLINGS = ("mean", "cls")  # engine.model's poolings, as sentence-transformers names its modes
SIMILARITIES = ("dot", "cosine")  # engine.model.SIMILARITIES, as sentence-transformers names its functions
LOG_SCALE = "log_scale"  # a cosine model's learned scale in projection.safetensors: not the projection's


@dataclass(frozen=True)
class TrainedModel:
    folder: Path             # a run's model folder
    pooling: str             # "mean" | "cls"
    projection_dim: int | None
    hidden_size: int
    max_seq_length: int      # the passage length the run trained with
    similarity: str = "dot"  # "dot" | "cosine" (a model saved before cosine existed: dot)


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
    """The model in `folder`, its settings checked against each other and its weights:
    an export sentence-transformers would load and then compute wrong is refused."""
    try:
        settings = json.loads((folder / MODEL_CONFIG).read_text())
        encoder_config = json.loads((folder / "encoder" / "config.json").read_text())
        train_config_file = folder / "train_config.json"
        train_config = json.loads(train_config_file.read_text()) if train_config_file.is_file() else {}
        length = train_config.get("max_passage_length") or encoder_config.get("max_position_embeddings", 512)
        model = TrainedModel(folder, settings["pooling"], settings["projection_dim"], encoder_config["hidden_size"],
                             length, settings.get("similarity", "dot"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:  # missing, truncated
        raise InputError(f"{folder}: not a complete trained model ({type(err).__name__}: {err}); "
                         "export a run that finished training") from None
    problem = _inconsistency(model)
    if problem:
        raise InputError(f"{folder}: {problem}; the export would load and compute wrong vectors, so nothing was "
                         "written (retrain, or restore the run's files)")
    return model


def _inconsistency(model: TrainedModel) -> str | None:
    """What in the model's settings contradicts the rest, or None."""
    if model.pooling not in POOLINGS:
        return f"{MODEL_CONFIG} pooling is {model.pooling!r}, not one of {', '.join(POOLINGS)}"
    if not is_positive_whole(model.hidden_size):
        return f"encoder/config.json hidden_size is {model.hidden_size!r}, not a whole number > 0"
    if not is_positive_whole(model.max_seq_length):
        return f"the maximum sequence length is {model.max_seq_length!r}, not a whole number > 0"
    if model.similarity not in SIMILARITIES:
        return f"{MODEL_CONFIG} similarity is {model.similarity!r}, not one of {', '.join(SIMILARITIES)}"
    projection = model.folder / PROJECTION_WEIGHTS
    shapes = _weight_shapes(projection) if projection.exists() else {}
    if shapes is None:
        return f"{PROJECTION_WEIGHTS} holds no readable weights"
    scale = shapes.pop(LOG_SCALE, None)
    if model.similarity == "cosine" and scale != [1]:
        return f"{MODEL_CONFIG} similarity is cosine, but {PROJECTION_WEIGHTS} holds no {LOG_SCALE} of shape [1]"
    if model.similarity == "dot" and scale is not None:
        return f"{MODEL_CONFIG} similarity is dot, but {PROJECTION_WEIGHTS} holds a cosine model's {LOG_SCALE}"
    if model.projection_dim is None or type(model.projection_dim) is int and model.projection_dim == 0:
        return f"{MODEL_CONFIG} says no projection, but {PROJECTION_WEIGHTS} is there with {shapes}" if shapes else None
    if not is_positive_whole(model.projection_dim):
        return f"{MODEL_CONFIG} projection_dim is {model.projection_dim!r}, not a whole number >= 0 or null"
    expected = {"weight": [model.projection_dim, model.hidden_size], "bias": [model.projection_dim]}
    if shapes.get("weight") != expected["weight"] or shapes.get("bias", expected["bias"]) != expected["bias"]:
        return (f"{PROJECTION_WEIGHTS} holds {shapes or 'no projection weights'}, not the {expected['weight']} "
                f"projection that projection_dim {model.projection_dim} and hidden_size {model.hidden_size} give")
    return None


def _weight_shapes(path: Path) -> dict[str, list[int]] | None:
    """name -> shape of each tensor in a safetensors file, read from its header; None
    when it is missing or no safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as weights:
            return {name: list(weights.get_slice(name).get_shape()) for name in weights.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, ValueError):
        return None


def export_sentence_transformers(run: str, out: Path) -> dict:
    """Write `run`'s model to `out` (which must not exist or be empty); returns a summary."""
    model = read_model(find_model(run))
    out = Path(out).expanduser().absolute()
    check_not_protected(out, protected={**store_files(store_path()), "the run's model folder": model.folder},
                        name="--out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out} exists and is not an empty folder; choose a new folder")
    make_output_folder(out.parent, out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        modules = _write_modules(model, staging)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)       # a half-written export is never left under the final name
    except OSError as err:             # a full disk, a folder made read-only meanwhile
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"--out {out}: cannot write the export ({err.strerror or err}); nothing was left there, "
                         "free space or choose a place you can write to") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"format": "sentence-transformers", "out": str(out), "model_folder": str(model.folder),
            "modules": [m["type"].rsplit(".", 1)[-1] for m in modules], "pooling": model.pooling,
            "similarity": model.similarity,
            "dimension": model.projection_dim or model.hidden_size, "max_seq_length": model.max_seq_length}


def _write_modules(model: TrainedModel, folder: Path) -> list[dict]:
    modules = [_transformer(model, folder / "0_Transformer"), _pooling(model, folder / "1_Pooling")]
    if model.projection_dim:
        modules.append(_dense(model, folder / "2_Dense"))
    if model.similarity == "cosine":  # unit vectors: the learned scale is one constant and changes no ranking
        modules.append(_normalize(folder / f"{len(modules)}_Normalize"))
    listed = [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (path, kind) in enumerate(modules)]
    _write_json(folder / "modules.json", listed)
    _write_json(folder / "config_sentence_transformers.json",
                {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": model.similarity})
    return listed


def _transformer(model: TrainedModel, folder: Path) -> tuple[str, str]:
    _copy_own_files(model.folder / "encoder", folder)   # config.json, model.safetensors, tokenizer files
    if not (folder / "model.safetensors").is_file():
        raise InputError(f"{model.folder / 'encoder'}: no model.safetensors (only safetensors weights are exported)")
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": model.max_seq_length, "do_lower_case": False})
    return folder.name, "sentence_transformers.models.Transformer"


def _copy_own_files(source: Path, folder: Path) -> None:
    """Copy the regular files under `source` into `folder`. A symbolic link or other
    special file is refused: copying it would copy what it points to, a file from
    outside the run (a key, another user's data) shipped inside the model."""
    _own(source)
    for here, folders, files in os.walk(source):   # never descends into a linked folder
        for name in sorted([*folders, *files]):
            _own(Path(here) / name)
        target = folder / Path(here).relative_to(source)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copyfile(Path(here) / name, target / name, follow_symlinks=False)


def _own(path: Path) -> Path:
    """`path` if it is a regular file or folder of the run, not a link to elsewhere."""
    if path.is_symlink() or not (path.is_dir() or path.is_file()):
        raise InputError(f"{path} is a symbolic link or special file, not one of the run's own files; "
                         "an export copies only regular files (replace it by the file itself)")
    return path


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
    projection = load_file(str(_own(model.folder / PROJECTION_WEIGHTS)))   # {"weight": (dim, h), "bias": (dim,)}
    projection.pop(LOG_SCALE, None)                                           # a cosine model's scale: not the layer's
    save_file({f"linear.{name}": tensor.contiguous() for name, tensor in projection.items()},
              str(folder / "model.safetensors"))
    _write_json(folder / "config.json", {"in_features": model.hidden_size, "out_features": model.projection_dim,
                                         "bias": "bias" in projection, "activation_function": IDENTITY})
    return folder.name, "sentence_transformers.models.Dense"


def _normalize(folder: Path) -> tuple[str, str]:
    folder.mkdir()  # no settings: sentence-transformers 2.x to 5.x save it as an empty folder
    return folder.name, "sentence_transformers.models.Normalize"


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2))
