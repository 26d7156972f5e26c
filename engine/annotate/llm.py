"""LLM query generation with the paper's appendix prompt (Section 4.3, Appendix A).

One answer per distinct human-annotated positive passage of the train split, through
a local causal LM (transformers; the tokenizer's chat template when it has one) or
an OpenAI-compatible chat completions endpoint. Each answer should hold five queries
(JSON keys query1..query5); a passage with k human pairs gets k of its distinct
usable queries, chosen by a generator seeded with (seed, passage id), or all of them
with `keep_all`. Sampling defaults are ChatGLM3's (temperature 0.8, top-p 0.8), the
model the paper used.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from engine.annotate.cache import OutputCache, cache_file, cached_outputs, text_hash
from engine.annotate.endpoint import ChatEndpoint, EndpointConfig
from engine.annotate.local_model import LocalGenerator
from engine.annotate.output import TrainingSet, check_out_dir, manifest, write_training_set
from engine.annotate.parsing import Tally, parse_llm_answer
from engine.annotate.source import load_source, passage_text, positive_demand, stable_seed
from engine.errors import InputError

# Listing 1 of the paper, verbatim (the PDF's wrapped lines joined).
PROMPT = """Please generate 5 relevant queries according to the given passage for search purpose.
1. Each query should be relevant to the passage.
2. Each query should be around 10 to 20 words.
3. Please generate diverse queries.
4. Output in JSON format, with keys: "query1", "query2", "query3", "query4", "query5".
5. Please respond in English. DO NOT use Chinese.
Passage: {}"""


@dataclass(frozen=True)
class LLMConfig:
    dataset: str                       # source data set folder (human annotations)
    out: str                           # folder of the generated training set
    model: str                         # local folder / hub name, or the endpoint's model name
    base_url: str | None = None        # OpenAI-compatible endpoint; None: run `model` locally
    api_key_env: str = "OPENAI_API_KEY"
    split: str = "train"               # whose positive passages get queries
    keep_all: bool = False             # every usable query, not one per human pair
    temperature: float = 0.8           # 0: greedy decoding
    top_p: float = 0.8
    max_new_tokens: int = 256
    max_passage_chars: int = 4000      # longer passages are cut before prompting
    batch_size: int = 8                # prompts per generate() call / concurrent requests
    timeout_s: float = 60.0            # endpoint: per request
    max_tries: int = 6                 # endpoint: tries per prompt before failing
    backoff_s: float = 1.0             # endpoint: first retry wait, doubled each time
    device: str = "auto"               # local model: auto | cpu | cuda | cuda:N
    seed: int = 0

    def __post_init__(self):
        for name in ("max_new_tokens", "max_passage_chars", "batch_size", "max_tries"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise InputError(f"--base-url must start with http:// or https://; got {self.base_url!r}")
        if not 0 <= self.temperature < math.inf or not 0.0 < self.top_p <= 1.0:  # NaN fails both
            raise InputError(f"need temperature >= 0 and top_p in (0, 1]; got {self.temperature}, {self.top_p}")
        if not 0 < self.timeout_s < math.inf:
            raise InputError(f"--timeout is the seconds a request may take, a number > 0; got {self.timeout_s}")
        if not 0 <= self.backoff_s < math.inf:
            raise InputError(f"--backoff is the first retry wait in seconds, a number >= 0; got {self.backoff_s}")

    @property
    def generator(self) -> str:
        return "llm-http" if self.base_url else "llm-local"

    def cache_settings(self) -> dict:
        """The settings that change what the model answers (the cache key)."""
        return {"generator": self.generator, "base_url": self.base_url, "prompt": text_hash(PROMPT),
                "temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens,
                "max_passage_chars": self.max_passage_chars, "seed": self.seed}


def build_prompt(passage: str, max_chars: int) -> str:
    return PROMPT.format(passage[:max_chars])


class LocalChatModel(LocalGenerator):
    """A local causal LM answering the prompt once per passage: yields (passage id, [answer])."""

    model_class = "AutoModelForCausalLM"
    what = "causal LM"

    def _load(self) -> None:
        super()._load()
        self.tokenizer.padding_side = "left"   # generation continues the right end
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise InputError(f"{self.config.model}: tokenizer has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def render(self, prompt: str) -> str:
        if not self.tokenizer.chat_template:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                  add_generation_prompt=True, tokenize=False)

    def generate(self, batch: list[tuple[str, str]]):
        import torch

        c = self.config
        prompts = [self.render(build_prompt(text, c.max_passage_chars)) for _, text in batch]
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True,
                                 add_special_tokens=not self.tokenizer.chat_template).to(self.device)
        sampling = {"do_sample": True, "temperature": c.temperature, "top_p": c.top_p} if c.temperature > 0 \
            else {"do_sample": False}
        torch.manual_seed(stable_seed(c.seed, batch[0][0]))
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                max_new_tokens=c.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling)
        answers = self.tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1]:],   # (B, new)
                                              skip_special_tokens=True)
        for (pid, _), answer in zip(batch, answers):
            yield pid, [answer]


def endpoint_generator(config: LLMConfig):
    """The endpoint as a cache generator: one request per passage, seeded per passage."""
    endpoint = ChatEndpoint(
        EndpointConfig(config.base_url, config.model, config.api_key_env, config.timeout_s,
                       config.max_tries, config.backoff_s),
        {"temperature": config.temperature, "top_p": config.top_p, "max_tokens": config.max_new_tokens})

    def generate(batch: list[tuple[str, str]]):
        requests = [(pid, build_prompt(text, config.max_passage_chars), stable_seed(config.seed, pid) % 2**31)
                    for pid, text in batch]
        for pid, answer in endpoint.answer(requests):
            yield pid, [answer]

    return generate


def select_queries(passage_id: str, parsed: list[tuple[int, str]], k: int, config: LLMConfig,
                   tally: Tally) -> list[tuple[int, str]]:
    """k distinct queries of one passage (seeded), or all with keep_all."""
    if config.keep_all:
        return parsed
    chosen = random.Random(stable_seed(config.seed, passage_id)).sample(parsed, min(k, len(parsed)))
    tally.skipped["shortfall"] += k - len(chosen)
    return chosen


def generate_llm(config: LLMConfig) -> dict:
    """Write the LLM training set of `config.dataset` to `config.out`; return its manifest."""
    started = time.time()
    out = check_out_dir(config.out, config.dataset)
    data = load_source(config.dataset)
    demand = positive_demand(data, config.split)
    passages = [(pid, passage_text(data, pid)) for pid in demand]
    generate = endpoint_generator(config) if config.base_url else LocalChatModel(config)
    cache = OutputCache(cache_file("llm", config.model, config.cache_settings()))
    answers = cached_outputs(passages, generate, cache, config.batch_size, desc=config.generator)
    tally, pairs = Tally(), TrainingSet()
    for pid, text in passages:
        parsed = parse_llm_answer(answers[pid][0], tally)
        for index, query in select_queries(pid, parsed, demand[pid], config, tally):
            pairs.add(f"llm-{pid}-q{index + 1}", query, pid, text)
    return write_training_set(out, pairs, manifest("llm", config.generator, config.model, config, data, tally,
                                                   started, prompt=PROMPT, cache=str(cache.path)))
