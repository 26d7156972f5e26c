"""Resumable checkpoints without pickle.

A checkpoint is a folder `checkpoints/step-XXXXXXXX/` of tensors in safetensors files
and everything else in JSON, so resuming one never runs code from disk (accelerate's
`load_state` unpickles the scheduler and RNG files: a crafted checkpoint ran code):

- `model.safetensors`: the bi-encoder's weights (encoder, projection)
- `optimizer.safetensors` + `optimizer.json`: AdamW's moment tensors; its parameter
  groups and any non-tensor state
- `scheduler.json`: the learning-rate schedule's state (step counts, base rates)
- `rng-<rank>.safetensors`: each process's torch generator states (dropout masks;
  batches are a pure function of seed and step and need none)
- `scaler.json`: fp16's loss scale, where one is used
- `train_config.json`, `trainer_state.json`: the run's config and where it stands;
  `trainer_state.json` is written last and marks the checkpoint complete.

Folders written by earlier versions (accelerate's pickled files) are refused, never
loaded.
"""
from __future__ import annotations

import json
import shutil
import types
import typing
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from engine.errors import InputError

STATE_FILE = "trainer_state.json"
_OPTIMIZER_JSON = "optimizer.json"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (its trainer_state.json is written last)."""
    folders = sorted((run_dir / "checkpoints").glob("step-[0-9]*"))
    complete = [f for f in folders if f.name[5:].isdigit() and (f / STATE_FILE).is_file()]
    return complete[-1] if complete else None


def save_checkpoint(accelerator, folder: Path, model, optimizer, scheduler, *, config: dict, state: dict,
                    keep: int) -> None:
    """Write `folder` (via `<folder>.partial`, renamed when complete) from every
    process; keep the `keep` newest checkpoints beside it."""
    partial = folder.with_name(folder.name + ".partial")
    if accelerator.is_main_process:
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        save_model(accelerator.unwrap_model(model), str(partial / "model.safetensors"))
        _save_optimizer(optimizer.state_dict(), partial)
        _write_json(partial / "scheduler.json", scheduler.state_dict())
        if accelerator.scaler is not None:
            _write_json(partial / "scaler.json", accelerator.scaler.state_dict())
    accelerator.wait_for_everyone()
    save_file(_rng_states(), str(partial / f"rng-{accelerator.process_index}.safetensors"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_json(partial / "train_config.json", config)
        _write_json(partial / STATE_FILE, state)
        if folder.exists():
            shutil.rmtree(folder)
        partial.replace(folder)
        older = sorted(p for p in folder.parent.glob("step-*") if p != folder)
        for old in older[: max(0, len(older) - keep + 1)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator, folder: Path, model, optimizer, scheduler, state_type: type) -> dict:
    """Restore weights, optimizer, schedule, loss scale and this process's generators
    from `folder`; returns its trainer state, checked against the fields of the
    dataclass `state_type` (a key it has not, or a value of the wrong kind, is refused;
    a field an older checkpoint lacks is left out). Nothing is unpickled."""
    if not (folder / _OPTIMIZER_JSON).is_file():
        raise InputError(f"{folder}: a checkpoint of an earlier version (pickled optimizer and RNG files, "
                         "which are never loaded); delete its checkpoints folder to train the run again")
    try:
        # read to the CPU, copied into the parameters wherever they live
        missing, unexpected = load_model(accelerator.unwrap_model(model), str(folder / "model.safetensors"),
                                         strict=False, device="cpu")
    except (SafetensorError, OSError, RuntimeError) as err:
        raise InputError(f"{folder}: weights not readable or not this model's ({type(err).__name__}: {err}); "
                         "delete the checkpoint to resume from an earlier one or start again") from None
    if missing or unexpected:
        raise InputError(f"{folder}: weights do not fit the model (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}); delete the checkpoint to resume from an earlier one or start again")
    try:
        optimizer.load_state_dict(_load_optimizer(folder))
        scheduler.load_state_dict(_read_json(folder / "scheduler.json"))
        if accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(_read_json(folder / "scaler.json"))
        _set_rng_states(load_file(str(folder / f"rng-{accelerator.process_index}.safetensors")))
        return _checked_state(_read_json(folder / STATE_FILE), state_type)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise InputError(f"{folder}: not a readable checkpoint ({type(err).__name__}: {err}); delete it to "
                         "resume from an earlier one or start again") from None


def _checked_state(state: dict, state_type: type) -> dict:
    """`state` unchanged; ValueError naming a key the dataclass `state_type` has not, or
    a value not of its field's type (a trainer_state.json edited or written by another program)."""
    hints = typing.get_type_hints(state_type)
    for name, value in state.items():
        if name not in hints:
            raise ValueError(f"{STATE_FILE} has '{name}', which {state_type.__name__} has not")
        if not _holds(value, hints[name]):
            kind = hints[name].__name__ if isinstance(hints[name], type) else hints[name]  # int, list[dict], ...
            raise ValueError(f"{STATE_FILE} has {name} = {value!r}, not of its type {kind}")
    return state


def _holds(value, hint) -> bool:
    """Whether the JSON value `value` is of the annotation `hint` (int, float, list[dict],
    X | None, ...); true/false are not numbers, a whole number is a float."""
    if isinstance(hint, types.UnionType):
        return any(_holds(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool) and hint is not bool:
        return False
    if hint is float:
        return isinstance(value, (int, float))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_holds(v, item) for v in value)
    return isinstance(value, typing.get_origin(hint) or hint)


def _save_optimizer(state_dict: dict, folder: Path) -> None:
    tensors, other = {}, {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                other.setdefault(str(index), {})[name] = value
    save_file(tensors, str(folder / "optimizer.safetensors"))
    _write_json(folder / _OPTIMIZER_JSON, {"param_groups": state_dict["param_groups"], "state": other})


def _load_optimizer(folder: Path) -> dict:
    saved = _read_json(folder / _OPTIMIZER_JSON)
    state: dict[int, dict] = {int(i): dict(values) for i, values in saved["state"].items()}
    for key, tensor in load_file(str(folder / "optimizer.safetensors")).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    groups = [{**group, "betas": tuple(group["betas"])} if "betas" in group else group
              for group in saved["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_states() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states


def _set_rng_states(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"])
    cuda = [states[f"cuda.{i}"] for i in range(len(states) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1))


def _read_json(path: Path) -> dict:
    """The JSON object in `path`; ValueError when it holds anything else (a list, a
    number: a checkpoint file overwritten by hand)."""
    value = json.loads(path.read_text())
    if not isinstance(value, dict):
        raise ValueError(f"{path.name} holds {type(value).__name__}, not the JSON object a checkpoint writes")
    return value
