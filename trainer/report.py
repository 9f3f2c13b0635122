"""What a run reports (main process only): events to the caller, metrics.jsonl (machine-readable, one JSON
object per line), loss.png, TensorBoard event files with --report-to tensorboard, and for people a progress bar
with tokens/s and news lines, all on stderr so that stdout stays free for whatever a caller pipes."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "loss.png"
TENSORBOARD_DIR = "runs"
# metrics.jsonl record fields that TensorBoard plots, under these tags.
_SCALARS = {"train": ("loss", "lr", "grad_norm", "tokens_per_s", "scheduled_sampling_rate"),
            "eval": ("eval_loss", "perplexity")}

EventHandler = Callable[[dict[str, Any]], Any]


class MetricsLog:
    """Append-only JSONL of train/eval records, one object per line."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("", encoding="utf-8")
        else:
            # Drop what a killed run logged after its last checkpoint: those steps are about to be redone.
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(_dumps(r) for r in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(_dumps(record))


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
    return records


def plot_loss_curve(metrics_path: Path, png_path: Path) -> Path | None:
    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if r.get("type") == "train"]
    evals = [(r["step"], r["eval_loss"]) for r in records if r.get("type") == "eval"]
    if not train and not evals:
        return None
    # The object-oriented API with the Agg canvas leaves pyplot's global backend alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="held-out loss", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / poem token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    return Path(png_path)


class Progress:
    """tqdm bar over optimizer steps; silent where disabled (other ranks, tests, --no-progress)."""

    def __init__(self, enabled: bool, total: int, initial: int):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, loss: float, lr: float, tokens_per_s: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            self.bar.update(1)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 50 else float("inf")


class TensorBoard:
    """Scalars of each metrics record in TensorBoard's event format under OUT/runs (tensorboardX: no
    TensorFlow, nothing leaves the machine); `tensorboard --logdir OUT/runs` shows them."""

    def __init__(self, log_dir: Path, resume_step: int | None):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            from trainer.errors import TrainerError

            raise TrainerError("--report-to tensorboard needs the tensorboardX package (pip install "
                               "tensorboardX)") from exc
        # purge_step drops what a killed run logged after its last checkpoint, as metrics.jsonl does.
        self.writer = SummaryWriter(str(log_dir), purge_step=resume_step)

    def write(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        for name in _SCALARS.get(kind, ()):
            value = record.get(name)
            if isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(f"{kind}/{name}", value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Reporter:
    """Where a run's news goes. Only the main process reports, so that N processes make one log, not N."""

    def __init__(self, out: Path, is_main: bool, show_progress: bool, on_event: EventHandler | None):
        self.out = Path(out)
        self.is_main = is_main
        self.show_progress = show_progress
        self.on_event = on_event
        self.progress = Progress(False, 0, 0)
        self.metrics: MetricsLog | None = None
        self.tensorboard: TensorBoard | None = None

    def open_metrics(self, resume_step: int | None, tensorboard: bool = False) -> None:
        self.metrics = MetricsLog(self.out / METRICS_FILE, resume_step)
        if tensorboard:
            self.tensorboard = TensorBoard(self.out / TENSORBOARD_DIR, resume_step)

    def start_progress(self, total_steps: int, step: int) -> None:
        self.progress = Progress(self.show_progress and self.is_main, total_steps, step)

    def emit(self, kind: str, **fields: Any) -> None:
        if self.on_event is not None and self.is_main:
            self.on_event({"type": kind, **fields})

    def say(self, text: str) -> None:
        """A line for people, on stderr (--no-progress hides only the bar)."""
        if self.is_main:
            # Through the bar while there is one, or the line would tear it.
            if self.progress.bar is not None:
                self.progress.write(text)
            else:
                print(text, file=sys.stderr, flush=True)

    def log(self, record: dict[str, Any]) -> None:
        """A metrics.jsonl line, also sent to the caller as a `<type>_metrics` event."""
        if self.metrics is not None:
            self.metrics.write(record)
        if self.tensorboard is not None:
            self.tensorboard.write(record)
        self.emit(record["type"] + "_metrics", **{k: v for k, v in record.items() if k != "type"})

    def plot(self) -> None:
        if self.is_main:
            plot_loss_curve(self.out / METRICS_FILE, self.out / CURVE_FILE)

    def close(self) -> None:
        self.progress.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
