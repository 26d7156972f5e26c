"""Where a training run reports, from its main process: the progress file (step, loss,
MFU against the device's stated peak, ETA, the latest evaluation), the log, the best
weights, and the store (the run, each evaluation point, its end)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from engine.batches import negatives_per_process
from engine.evaluate import evaluate
from engine.flops import device_peak, mfu, train_step_flops
from engine.run_status import PROGRESS_INTERVAL_S, ProgressFile
from engine.eval_protocol import eval_set_pairs, evaluation_fingerprint
from engine.run_folder import BEST_DIR, code_version
from engine.run_state import PreparedRun, TrainerState

log = logging.getLogger("engine.train")
POINT_COLUMNS = ("contrastive_entropy", "calibrated_entropy", "temperature")  # a point's own columns, not its metrics


class RunRecorder:
    """Where a run reports: progress file, log, and store (main process only)."""

    def __init__(self, cfg, prepared: PreparedRun, accelerator, store, run_dir: Path, resumed_from, end_step: int):
        self.cfg, self.prepared, self.accelerator, self.store, self.run_dir = cfg, prepared, accelerator, store, run_dir
        self.main = accelerator.is_main_process
        self._logged = time.monotonic()  # the first progress write comes a progress interval in
        self.progress_file = ProgressFile(
            run_dir / "progress.json", run_id=cfg.run_id, total_steps=end_step, pid=os.getpid(),
            resumed_from_step=resumed_from, n_params=prepared.n_params, train_pairs=len(prepared.pairs.pairs),
        )
        config = prepared.model.encoder.config
        # nominal FLOPs of a step (sequences at their max lengths, this process), as nanoGPT logs them:
        # its queries, its positives and its block of the k negatives (TrainingBatches)
        passages = cfg.batch_size + negatives_per_process(cfg.negatives, accelerator.num_processes)
        self.step_flops = train_step_flops(
            prepared.n_params, config.num_hidden_layers, config.hidden_size,
            [(cfg.batch_size, cfg.max_query_length), (passages, cfg.max_passage_length)],
        ) * cfg.grad_accum
        if not self.main:
            return
        self.progress_file.update(force=True, status="running", step=resumed_from or 0)
        if store is not None:
            self._start_in_store()

    def _start_in_store(self) -> None:
        cfg, data, pairs = self.cfg, self.prepared.data, self.prepared.pairs
        self.store.register_dataset(
            data.name, language=data.language(), format=data.format, path=str(data.path),
            n_passages=len(data.passages), n_queries=len(data.queries),
            n_train_pairs=len(data.pairs("train")) if "train" in data.qrels else 0,
            n_test_pairs=len(data.pairs(data.test_split)),
        )
        if cfg.train_data is not None:
            self.store.register_dataset(
                pairs.source.name, language=data.language(), format="beir", path=str(pairs.source),
                n_passages=len(pairs.extra_passages), n_queries=len(pairs.query_texts),
                n_train_pairs=pairs.n_available, n_test_pairs=0, annotation=cfg.annotation,
            )
        self.store.start_run(
            config=asdict(cfg), model_name=cfg.model, n_params=self.prepared.n_params,
            n_params_strict=self.prepared.n_params_strict, train_pairs=len(pairs.pairs),
            annotation=cfg.annotation, dataset=data.name, seed=cfg.seed, device=_device_name(self.accelerator),
            code_version=code_version(), run_id=cfg.run_id, source="engine", label=cfg.label,
            eval_fingerprint=evaluation_fingerprint(
                cfg, split=data.test_split, pairs=eval_set_pairs(self.prepared.eval_set),
                pool_training_positives=self.prepared.eval_set.pool_training_positives),
        )

    def logging_due(self) -> bool:
        """True on the main process once a progress interval has passed since the last write."""
        return self.main and time.monotonic() - self._logged >= PROGRESS_INTERVAL_S

    def progress(self, state: TrainerState, loss: float, seconds_per_step: float) -> None:
        if self.main:
            self._logged = time.monotonic()
            peak = device_peak(str(self.accelerator.device), self.cfg.precision)
            self.progress_file.update(
                force=True, step=state.step, loss=loss, seconds_per_step=seconds_per_step,
                flops_per_s=self.step_flops / seconds_per_step, peak_flops=peak,
                mfu=mfu(self.step_flops, seconds_per_step, peak),
                eta_s=seconds_per_step * (state.end_step - state.step), wall_time_s=state.wall_time_s,
                best_contrastive_entropy=state.best_contrastive_entropy, best_step=state.best_step,
            )

    def stopped_early(self, state: TrainerState) -> None:
        if self.main:
            self.progress_file.update(force=True, total_steps=state.end_step, stopped_early_at=state.stopped_early_at)

    def evaluate(self, model, state: TrainerState, final: bool) -> None:
        """Evaluate on the main process while the others wait."""
        if self.main:
            ranking = self.cfg.eval.ranking == "every" or (final and self.cfg.eval.ranking == "final")
            metrics = evaluate(
                self.accelerator.unwrap_model(model), self.prepared.eval_set, device=self.accelerator.device,
                batch_size=self.cfg.eval_batch_size, ranking=ranking,
            )  # in fp32 whatever the run's precision, as engine evaluate does
            state.record(state.step, metrics)
            if state.best_step == state.step:
                self._save_best(model, state)
            log.info("%s step %d: %s", self.cfg.run_id, state.step,
                     {k: round(v, 4) for k, v in metrics.items()})
            self.progress_file.update(force=True, latest_eval={"step": state.step, **metrics},
                                      best_contrastive_entropy=state.best_contrastive_entropy,
                                      best_step=state.best_step)
            if self.store is not None:
                self.store.add_point(
                    self.cfg.run_id, step=state.step, contrastive_entropy=metrics["contrastive_entropy"],
                    calibrated_entropy=metrics.get("calibrated_entropy"), temperature=metrics.get("temperature"),
                    metrics={k: v for k, v in metrics.items() if k not in POINT_COLUMNS},
                    wall_time_s=state.wall_time_s,
                )
        self.accelerator.wait_for_everyone()

    def _save_best(self, model, state: TrainerState) -> None:
        """The weights of the best evaluation so far, in `run_dir/best` (safetensors, as
        `model/`), with best.json naming its step; written beside, then swapped in."""
        best, partial = self.run_dir / BEST_DIR, self.run_dir / f"{BEST_DIR}.{os.getpid()}.tmp"
        shutil.rmtree(partial, ignore_errors=True)
        self.accelerator.unwrap_model(model).save(partial, self.prepared.tokenizer)
        (partial / "best.json").write_text(json.dumps(
            {"step": state.best_step, "contrastive_entropy": state.best_contrastive_entropy}, indent=1))
        shutil.rmtree(best, ignore_errors=True)
        os.replace(partial, best)

    def finish(self, state: TrainerState, status: str, error: str | None = None) -> None:
        if not self.main:
            return
        self.progress_file.update(force=True, status=status, step=state.step, error=error,
                                  best_contrastive_entropy=state.best_contrastive_entropy)
        if self.store is not None:
            final = state.curve[-1] if state.curve else {}
            self.store.finish_run(
                self.cfg.run_id, status=status, best_contrastive_entropy=state.best_contrastive_entropy,
                best_calibrated_entropy=state.best_calibrated_entropy, stopped_early_at=state.stopped_early_at,
                metrics={k: v for k, v in final.items() if k != "step"} or None,  # with the entropy they go with
                wall_time_s=state.wall_time_s,
            )


def _device_name(accelerator) -> str:
    device = accelerator.device
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{accelerator.num_processes}"
    return f"{device.type} x{accelerator.num_processes} ({os.cpu_count()} cores)"
