"""The local transformers model behind the docT5query-style and LLM generators: one
loader, loaded on first use so a fully cached run never loads a model."""
from __future__ import annotations

from engine.errors import InputError


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is available here; use cpu or auto")
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
