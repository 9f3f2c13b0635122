"""Training configuration: one dataclass, filled from defaults < a TOML/YAML/JSON config file < command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainer.errors import TrainerError

FORMATS = ("raw", "chat")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
EXPORT_DTYPES = ("auto", "fp32", "bf16", "fp16")
LOAD_DTYPES = ("fp32", "bf16", "fp16")
REPORT_TO = ("none", "tensorboard")


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str | None = None
    from_scratch: str | None = None
    eval_data: str | None = None
    text_field: str | None = None  # None: "text", and a poem corpus's title/text pair still reads as poems
    messages_field: str = "messages"
    chat_template: str | None = None  # a Jinja file that replaces the tokenizer's chat template

    epochs: int = 1
    max_steps: int | None = None
    lr: float | None = None
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    momentum: float = 0.0
    schedule: str = "cosine"
    warmup_ratio: float = 0.03
    warmup_steps: int | None = None
    max_grad_norm: float | None = 1.0

    # The global batch: examples per optimizer step summed over accumulation and processes, so a run
    # means the same optimisation whatever --grad-accum and the number of torchrun processes are.
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 512
    formats: tuple[str, ...] = FORMATS
    packing: bool = False
    group_by_length: bool = True

    train_top_layers: int | None = None
    load_dtype: str = "fp32"
    gradient_checkpointing: bool = False
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = "all-linear"
    save_adapter: bool = False

    scheduled_sampling: float = 0.0
    scheduled_sampling_ramp: float = 1.0

    eval_split: float = 0.05
    eval_every: int = 200
    eval_samples: int = 2
    sample_tokens: int = 96
    save_every: int = 500
    keep_checkpoints: int = 2
    keep_best: bool = False
    early_stopping_patience: int | None = None
    log_every: int = 10
    report_to: str = "none"

    seed: int = 42
    device: str = "auto"
    precision: str = "auto"
    attn_implementation: str | None = None
    threads: int | None = None
    resume: str | None = None
    overwrite: bool = False
    export_dtype: str = "auto"
    progress: bool = True

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        # Random init tolerates (and needs) a far larger step than a pretrained model does.
        if self.from_scratch:
            return 1e-3
        return 2e-4 if self.lora else 5e-5

    def validate(self) -> TrainConfig:
        if bool(self.model) == bool(self.from_scratch):
            raise TrainerError("give exactly one of --model ID_OR_DIR or --from-scratch SIZE")
        if self.from_scratch:
            from trainer.scratch import SIZES

            if self.from_scratch not in SIZES:
                raise TrainerError(f"--from-scratch must be one of {', '.join(SIZES)}, not {self.from_scratch!r}")
            if self.lora or self.train_top_layers:
                raise TrainerError("--lora and --train-top-layers only make sense for a pretrained --model")
        if self.lora and self.train_top_layers:
            raise TrainerError("choose either --lora or --train-top-layers, not both")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("export-dtype", self.export_dtype, EXPORT_DTYPES)
        _check_choice("load-dtype", self.load_dtype, LOAD_DTYPES)
        _check_choice("report-to", self.report_to, REPORT_TO)
        self._validate_run_management()
        self.formats = tuple(self.formats)
        if not self.formats or any(f not in FORMATS for f in self.formats):
            raise TrainerError(f"--formats takes one or more of {', '.join(FORMATS)}, got {list(self.formats)}")
        for name in ("batch_size", "grad_accum", "max_length", "epochs", "eval_every", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise TrainerError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainerError("--max-steps must be at least 1")
        if self.batch_size < self.grad_accum:
            raise TrainerError(f"--batch-size {self.batch_size} is smaller than --grad-accum {self.grad_accum}")
        if not 0.0 <= self.eval_split < 1.0:
            raise TrainerError("--eval-split is a fraction in [0, 1)")
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            raise TrainerError("--scheduled-sampling is a probability in [0, 1]")
        if not 0.0 < self.scheduled_sampling_ramp <= 1.0:
            raise TrainerError("--scheduled-sampling-ramp is a fraction of training in (0, 1]")
        if self.train_top_layers is not None and self.train_top_layers < 1:
            raise TrainerError("--train-top-layers must be at least 1")
        if self.keep_checkpoints < 1:
            raise TrainerError("--keep-checkpoints must be at least 1")
        return self

    def _validate_run_management(self) -> None:
        if self.save_adapter and not self.lora:
            raise TrainerError("--save-adapter saves the LoRA adapter: it needs --lora")
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise TrainerError("--early-stopping-patience must be at least 1")
            # Stopping on a plateau only makes sense if the model kept is the best one seen.
            self.keep_best = True
        if self.keep_best and self.eval_split == 0 and not self.eval_data:
            raise TrainerError("--keep-best and --early-stopping-patience need held-out data: --eval-split or "
                               "--eval-data")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["formats"] = list(self.formats)
        return data


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise TrainerError(f"--{flag} must be one of {', '.join(choices)}, not {value!r}")


def _bool_flag(parser: argparse._ActionsContainer, name: str, help_text: str) -> None:
    parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                        help=help_text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Finetune a causal LM (or train a small one from scratch) on Su Shi's poems, chats, "
                    "prompt-completion pairs or text. `python -m trainer --from-server-db DATA_DIR --out FILE` "
                    "exports the chat server's stored conversations as training chats.",
        # Defaults are suppressed so that a config file's values survive unless a flag is really given.
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--config", help="TOML, YAML or JSON file whose keys are these flags' names (dashes or "
                   "underscores)")
    p.add_argument("--model", help="Hugging Face model id or local directory of any causal LM")
    p.add_argument("--from-scratch", metavar="SIZE", help="train a small Llama from random init: micro|tiny|small|base")
    p.add_argument("--data", help="poems.jsonl/html; a JSONL/JSON/parquet/CSV of chats ('messages'), prompt-"
                   "completion pairs or text; or a Hugging Face dataset directory (save_to_disk or data files)")
    p.add_argument("--eval-data", help="held-out records in any --data format (then --eval-split is not used)")
    p.add_argument("--out", help="output directory: the final HF model, checkpoints/, metrics.jsonl, loss.png")
    _optimisation_flags(p.add_argument_group("optimisation"))
    _batching_flags(p.add_argument_group("data and batching"))
    _training_flags(p.add_argument_group("what to train"))
    _reporting_flags(p.add_argument_group("evaluation, checkpoints, logging"))
    _hardware_flags(p.add_argument_group("hardware"))
    return p


def _optimisation_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--epochs", type=int, help="passes over the training split (default 1)")
    g.add_argument("--max-steps", type=int, help="optimizer steps; overrides --epochs")
    g.add_argument("--lr", type=float,
                   help="peak learning rate (default 5e-5 full finetune, 2e-4 LoRA, 1e-3 from scratch)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help="default adamw")
    g.add_argument("--weight-decay", type=float, help="decoupled weight decay on matrices (default 0)")
    g.add_argument("--momentum", type=float, help="SGD momentum (default 0)")
    g.add_argument("--schedule", choices=SCHEDULES, help="learning-rate decay after warmup (default cosine)")
    g.add_argument("--warmup-ratio", type=float, help="warmup as a fraction of all steps (default 0.03)")
    g.add_argument("--warmup-steps", type=int, help="warmup steps; overrides --warmup-ratio")
    g.add_argument("--max-grad-norm", type=float, help="gradient clipping norm, 0 to disable (default 1.0)")


def _batching_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--batch-size", type=int,
                   help="examples per optimizer step over all accumulation steps and processes (default 16)")
    g.add_argument("--grad-accum", type=int, help="micro-batches per step on each process (default 1)")
    g.add_argument("--max-length", type=int, help="tokens per example; the poem's end is cut, never the prompt")
    g.add_argument("--formats", nargs="+", choices=FORMATS, help="prompt formats to train on (default both)")
    _bool_flag(g, "packing", "pack several examples per row (per-example positions, no cross attention)")
    _bool_flag(g, "group-by-length", "batch examples of similar length together (default on)")
    g.add_argument("--text-field", help="column of plain text to train on (default text)")
    g.add_argument("--messages-field", help="column of chat message lists (default messages)")
    g.add_argument("--chat-template", metavar="FILE", help="Jinja chat template replacing the tokenizer's own; "
                   "saved with the exported tokenizer")


def _training_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--train-top-layers", type=int, metavar="N", help="freeze all but the top N transformer layers")
    g.add_argument("--load-dtype", choices=LOAD_DTYPES, help="dtype of the base weights (default fp32; bf16 halves "
                   "the memory of a LoRA run's frozen base)")
    _bool_flag(g, "gradient-checkpointing", "recompute activations in backward: less memory, ~30%% more time")
    _bool_flag(g, "lora", "train LoRA adapters (peft), merged into the exported model")
    g.add_argument("--lora-r", type=int, help="LoRA rank (default 16)")
    g.add_argument("--lora-alpha", type=int, help="LoRA alpha (default 32)")
    g.add_argument("--lora-dropout", type=float, help="LoRA dropout (default 0.05)")
    g.add_argument("--lora-targets", help="peft target_modules, comma separated or all-linear (default)")
    _bool_flag(g, "save-adapter", "also save the unmerged LoRA adapter in OUT/adapter (PEFT, or the server's "
               "LORA_DIR)")
    g.add_argument("--scheduled-sampling", type=float, metavar="P",
                   help="parallel scheduled sampling: replace up to this fraction of poem inputs by predictions")
    g.add_argument("--scheduled-sampling-ramp", type=float, metavar="F",
                   help="fraction of training over which the rate ramps linearly from 0 to P (default 1.0)")


def _reporting_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--eval-split", type=float, help="fraction of poems held out (default 0.05)")
    g.add_argument("--eval-every", type=int, help="steps between evaluations (default 200)")
    g.add_argument("--eval-samples", type=int, help="poems generated at each evaluation (default 2)")
    g.add_argument("--sample-tokens", type=int, help="max new tokens per sample poem (default 96)")
    g.add_argument("--save-every", type=int, help="steps between checkpoints (default 500)")
    g.add_argument("--keep-checkpoints", type=int, help="how many recent checkpoints to keep (default 2)")
    _bool_flag(g, "keep-best", "keep the checkpoint with the lowest held-out loss and export it")
    g.add_argument("--early-stopping-patience", type=int, metavar="N",
                   help="stop after N evaluations without a lower held-out loss (implies --keep-best)")
    g.add_argument("--report-to", choices=REPORT_TO, help="tensorboard: also write TensorBoard event files to "
                   "OUT/runs (offline); metrics.jsonl and loss.png are always written")
    g.add_argument("--log-every", type=int, help="steps between metrics lines (default 10)")
    g.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                   help="continue from the latest checkpoint in --out, or from the given checkpoint directory")
    _bool_flag(g, "overwrite", "start afresh even if --out already holds checkpoints")
    _bool_flag(g, "progress", "show a progress bar (default on)")


def _hardware_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--seed", type=int, help="seed for the split, data order, init and sampling (default 42)")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    g.add_argument("--precision", choices=PRECISIONS, help="auto: bf16 autocast on a GPU that has it, else fp32")
    g.add_argument("--attn-implementation", help="sdpa, eager, flash_attention_2, ... (default: the model's)")
    g.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--export-dtype", choices=EXPORT_DTYPES,
                   help="dtype of the exported model (auto: the base model's own, fp32 from scratch)")


def _normalise_keys(raw: dict[str, Any], source: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise TrainerError(f"{source}: unknown setting {key!r}")
        out[name] = value
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainerError(f"config file not found: {path}")
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".json":
            raw = json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        else:
            raise TrainerError(f"{path}: config files are .toml, .yaml/.yml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TrainerError(f"{path}: cannot parse config ({exc})") from exc
    if not isinstance(raw, dict):
        raise TrainerError(f"{path}: expected a table of settings")
    return _normalise_keys(raw, str(path))


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    config_path = args.pop("config", None)
    if config_path:
        values.update(load_config_file(config_path))
    values.update(args)
    if values.get("max_grad_norm") == 0:
        values["max_grad_norm"] = None
    missing = [flag for flag in ("data", "out") if not values.get(flag)]
    if missing:
        raise TrainerError("missing " + " and ".join(f"--{m}" for m in missing))
    if "formats" in values:
        values["formats"] = tuple(values["formats"])
    return TrainConfig(**values).validate()
