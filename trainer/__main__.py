"""`python -m trainer --model ID_OR_DIR --data FILE --out DIR [...]` (also under torchrun), and
`python -m trainer --from-server-db DATA_DIR --out chats.jsonl` (the server's chats as training data)."""

from __future__ import annotations

import sys

from trainer.errors import TrainerError


def main(argv: list[str] | None = None) -> int:
    from trainer.config import parse_args

    argv = sys.argv[1:] if argv is None else argv
    try:
        if any(a == "--from-server-db" or a.startswith("--from-server-db=") for a in argv):
            from trainer.server_chats import main as export_main

            return export_main(argv)
        config = parse_args(argv)
        from transformers.utils import logging as hf_logging

        from trainer.loop import train

        # Our own bar shows progress; transformers' per-file load/save bars would interleave with it.
        hf_logging.disable_progress_bar()

        result = train(config)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted by a second Ctrl-C; the last periodic checkpoint is the one to resume from", file=sys.stderr)
        return 130
    if result.interrupted:
        return 130
    if result.model_dir is not None:
        summary = f"done: {result.steps} steps; model saved to {result.model_dir}"
        if result.eval_loss is not None:
            before = f"{result.initial_eval_loss:.4f} -> " if result.initial_eval_loss is not None else ""
            summary += f"; held-out loss {before}{result.eval_loss:.4f}"
        print(summary, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
