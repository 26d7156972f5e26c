"""The local transformers model behind the docT5query-style and LLM generators: one
loader, loaded on first use so a fully cached run never loads a model."""
from __future__ import annotations

from engine.errors import InputError


def resolve_device(device: str) -> str:
    """`device` (auto: cuda when present, else cpu) if this machine has it; else
    InputError naming what it has (cuda:7 on a machine with 2 GPUs, cuda on a CPU)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"--device {device!r} is not a torch device ({err}); use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"--device {device}: no CUDA device is available here; use cpu or auto")
        if parsed.index is not None and parsed.index >= count:
            raise InputError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to "
                             f"cuda:{count - 1}; choose one of them or auto")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: no Apple GPU (MPS) is available here; use cpu or auto")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {device}: the workbench runs on cpu, cuda or mps; use one of them or auto")
    return device


class LocalGenerator:
    """Called with a batch of (passage id, text), yields (passage id, outputs) from
    `generate`. `config` names the model (`model`: a local folder or hub name) and
    the `device`; the tokenizer and model load on the first call."""

    model_class = ""  # the transformers auto class, e.g. "AutoModelForSeq2SeqLM"
    what = ""         # what the model is, for error messages

    def __init__(self, config):
        self.config = config
        self.model = None

    def _load(self) -> None:
        import transformers

        self.device = resolve_device(self.config.device)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.config.model)
            model = getattr(transformers, self.model_class).from_pretrained(self.config.model)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot load {self.what} {self.config.model!r}: {err}") from err
        self.model = model.to(self.device).eval()

    def __call__(self, batch: list[tuple[str, str]]):
        if self.model is None:
            self._load()
        yield from self.generate(batch)

    def generate(self, batch: list[tuple[str, str]]):
        raise NotImplementedError
