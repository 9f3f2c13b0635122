"""Checkpoints that resume exactly: trainable weights, optimizer, scheduler, every RNG, and the data position.

Layout: `OUT/checkpoints/step-00000120/` with trainable.pt, optimizer.pt, scheduler.pt, rng-<rank>.pt and
state.json. A checkpoint is written into a hidden temporary directory and renamed into place only when
complete, so a process killed mid-save leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.distributed import DistContext, barrier
from trainer.errors import TrainerError

CHECKPOINTS = "checkpoints"
_PREFIX = "step-"


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # global batches of `epoch` already trained on
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    # --keep-best / --early-stopping-patience: the best held-out loss so far, the step that reached it (its
    # checkpoint is kept) and how many evaluations since have not beaten it.
    best_loss: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0


def checkpoint_name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()[:16]


def base_fingerprint(model: nn.Module) -> str:
    """A cheap hash of the weights before training: tells two checkpoints of one architecture apart."""
    parts = []
    for name, p in sorted(model.state_dict().items()):
        flat = p.detach().reshape(-1)[:64].to("cpu", torch.float32)
        parts += [name.encode(), flat.numpy().tobytes()]
    return _digest(parts)


def data_fingerprint(examples) -> str:
    """Which training examples, in which order: a resumed run's data position means nothing on other data."""
    return _digest([f"{len(e)}:{e.n_targets}:{e.poem_index}:{e.fmt};".encode() for e in examples])


def content_fingerprint(examples) -> str:
    """The examples' tokens and targets: tells apart data of the same shape (another file, another seed's
    split) that the order-and-length fingerprint above cannot."""
    h = hashlib.sha256()
    for e in examples:
        h.update(np.asarray(e.input_ids, dtype=np.int64).tobytes())
        h.update(np.asarray(e.targets, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


# What decides which examples each step trains on: a resumed run that changes one of these would silently skip
# or repeat examples, so it is refused rather than continued.
RUN_SETTINGS = ("batch_size", "grad_accum", "seed", "packing", "group_by_length")


def run_settings(cfg) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in RUN_SETTINGS}


def model_identity(model_name: str, model: nn.Module, base_print: str) -> dict[str, Any]:
    named = list(model.named_parameters())
    return {
        "model": model_name,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for _, p in named),
        "structure": _digest([f"{n}:{tuple(p.shape)}".encode() for n, p in named]),
        "trainable": _digest([n.encode() for n, p in named if p.requires_grad]),
        "base": base_print,
    }


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if d.is_dir() and d.name.startswith(_PREFIX) and (d / "state.json").is_file()]
    return sorted(found, key=lambda d: int(d.name[len(_PREFIX):]))


def latest_checkpoint(out_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(out_dir)
    return dirs[-1] if dirs else None


def resolve_resume(resume: str | None, out_dir: Path) -> Path | None:
    if not resume:
        return None
    if resume == "latest":
        path = latest_checkpoint(out_dir)
        if path is None:
            raise TrainerError(f"--resume: no checkpoint under {Path(out_dir) / CHECKPOINTS} to continue from")
        return path
    path = Path(resume)
    if path.is_dir() and not (path / "state.json").is_file():
        latest = latest_checkpoint(path)
        if latest is not None:
            return latest
    if not (path / "state.json").is_file():
        raise TrainerError(f"--resume {resume}: not a checkpoint directory (no state.json)")
    return path


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: Path, state: TrainState, model: nn.Module, optimizer, scheduler,
                    identity: dict[str, Any], config: dict[str, Any], ctx: DistContext, keep: int) -> Path:
    """Save atomically; keep the `keep` latest checkpoints, and the best one (state.best_step) with them."""
    root = Path(out_dir) / CHECKPOINTS
    final = root / checkpoint_name(state.step)
    tmp = root / f".{final.name}.tmp"
    if ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(ctx)
    torch.save(_rng_state(), tmp / f"rng-{ctx.rank}.pt")
    if ctx.is_main:
        torch.save({n: p.detach().to("cpu", copy=True) for n, p in _trainable(model).items()}, tmp / "trainable.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        meta = {"state": asdict(state), "identity": identity, "world_size": ctx.world_size, "config": config}
        (tmp / "state.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    barrier(ctx)
    if ctx.is_main:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        best_name = None if state.best_step is None else checkpoint_name(state.best_step)
        for old in checkpoint_dirs(out_dir)[:-keep]:
            if old.name != best_name:
                shutil.rmtree(old, ignore_errors=True)
    barrier(ctx)
    return final


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(path) / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainerError(f"cannot read checkpoint {path}: {exc}") from exc


def check_identity(path: Path, stored: dict[str, Any], current: dict[str, Any]) -> None:
    same_model = stored.get("structure") == current["structure"] and stored.get("base") == current["base"]
    if not same_model:
        raise TrainerError(
            f"cannot resume: {path} is a checkpoint of {stored.get('model')!r} ({stored.get('architecture')}, "
            f"{stored.get('parameters')} parameters), but this run trains {current['model']!r} "
            f"({current['architecture']}, {current['parameters']} parameters). Resume with the model (and LoRA "
            f"settings) that made it, or give another --out to start afresh.")
    settings = stored.get("settings", {})
    changed = [f"--{name.replace('_', '-')} {_flag(settings[name])} (now {_flag(current['settings'][name])})"
               for name in RUN_SETTINGS if name in settings and settings[name] != current["settings"][name]]
    if changed:
        raise TrainerError(f"cannot resume: {path} was written with {', '.join(changed)}; a resumed run must "
                           f"take the same steps over the same examples, so resume with the settings that made "
                           f"it, or give another --out to start afresh")
    same_content = "content" not in stored or stored["content"] == current.get("content")
    if stored.get("data") != current.get("data") or not same_content:
        raise TrainerError(f"cannot resume: {path} was trained on other examples; resume with the same --data, "
                           f"--formats, --max-length, --eval-split and --seed as the run that wrote it")
    if stored.get("trainable") != current["trainable"]:
        raise TrainerError(f"cannot resume: {path} trained a different set of parameters; use the same "
                           f"--lora / --train-top-layers settings as the run that wrote it")


def _flag(value: Any) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def load_trainable(path: Path, model: nn.Module) -> None:
    """Put a checkpoint's trainable weights into `model` (the rest of the model is the same base)."""
    saved = torch.load(Path(path) / "trainable.pt", map_location="cpu", weights_only=True)
    params = _trainable(model)
    if set(saved) != set(params):
        raise TrainerError(f"cannot resume: {path} holds different trainable parameters than this model")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, identity: dict[str, Any],
                    ctx: DistContext) -> TrainState:
    path = Path(path)
    meta = read_checkpoint_meta(path)
    check_identity(path, meta.get("identity", {}), identity)
    load_trainable(path, model)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng_file = path / f"rng-{ctx.rank}.pt"
    if not rng_file.is_file():  # resumed on more processes than saved it; rank 0's state is as good as any
        rng_file = path / "rng-0.pt"
    # Our own file: it holds Python's and NumPy's RNG tuples, which the weights-only loader refuses.
    _set_rng_state(torch.load(rng_file, weights_only=False))
    return TrainState(**meta["state"])
