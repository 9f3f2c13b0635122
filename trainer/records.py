"""What `--data` holds, read into one of four kinds of training record.

- `poems`: the scraper's corpus (poems.jsonl / poems.html), trained in the raw and chat prompt formats;
- `messages`: conversations, `{"messages": [{"role", "content"}, ...]}` (system/user/assistant, any number of
  turns; ShareGPT's `{"conversations": [{"from", "value"}]}` too), loss on every assistant turn;
- `prompt`: `{"prompt", "completion"}` pairs, loss on the completion (either side may also be a message list,
  TRL's conversational prompt-completion, which becomes a conversation);
- `text`: plain text, loss on every token.

Files: JSONL/JSON (read here, so that an error names its line), poems.html, and parquet/CSV files or a
directory through Hugging Face `datasets` (`load_from_disk` for a saved dataset, `load_dataset` for a folder
of data files). The kind is told from the fields of the first record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scraper.corpus import CorpusError, Poem, read_corpus
from trainer.errors import TrainerError

KINDS = ("poems", "messages", "prompt", "text")
ROLES = ("system", "user", "assistant")
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
_DATA_FILE_TYPES = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json"}


@dataclass(frozen=True)
class Records:
    kind: str
    items: list[Any]  # Poem | list[message dict] | (prompt, completion) | str, by kind
    source: str

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Fields:
    """Which columns hold the data (--text-field / --messages-field)."""
    text: str = "text"
    messages: str = "messages"
    text_given: bool = False  # an explicit --text-field wins over a poem corpus's title/text pair


def load_records(path: str, fields: Fields = Fields()) -> Records:
    p = Path(path).expanduser()
    if p.is_dir():
        return _from_rows(_dataset_dir_rows(p), fields, str(p))
    if not p.is_file():
        raise TrainerError(f"data file not found: {path}")
    suffix = p.suffix.lower()
    if suffix in (".html", ".htm"):
        return Records("poems", _read_poems(p), str(p))
    if suffix in (".jsonl", ".json"):
        return _from_rows(_json_rows(p), fields, str(p))
    if suffix in (".parquet", ".csv"):
        return _from_rows(_load_dataset(_DATA_FILE_TYPES[suffix], [str(p)]), fields, str(p))
    raise TrainerError(f"--data {path}: expected .jsonl/.json, .parquet, .csv, poems.html or a dataset directory")


def _read_poems(path: Path) -> list[Poem]:
    try:
        return read_corpus(path)
    except CorpusError as exc:
        raise TrainerError(f"{exc} (--data takes the poems.jsonl or poems.html that python -m scraper "
                           f"writes, or chats / prompt-completion / text records)") from exc


def _json_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrainerError(f"{path}: not valid JSON ({exc})") from exc
        return _check_objects(rows, path)
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise TrainerError(f"{path}:{number}: not a JSON object ({exc})") from exc
    return _check_objects(rows, path)


def _check_objects(rows: Any, path: Path) -> list[dict[str, Any]]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TrainerError(f"{path}: expected one JSON object per record")
    if not rows:
        raise TrainerError(f"{path} contains no records")
    return rows


def _dataset_dir_rows(path: Path) -> list[dict[str, Any]]:
    import datasets

    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        try:
            loaded = datasets.load_from_disk(str(path))
        except (OSError, ValueError) as exc:
            raise TrainerError(f"--data {path}: cannot load the saved dataset ({exc})") from exc
        return _train_split(loaded, path)
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in _DATA_FILE_TYPES)
    types = {_DATA_FILE_TYPES[f.suffix.lower()] for f in files}
    if len(types) != 1:
        raise TrainerError(f"--data {path}: a directory must hold a dataset saved with save_to_disk, or data files "
                           f"of one type (.parquet, .csv or .json/.jsonl); found {sorted(types) or 'none'}")
    return _load_dataset(types.pop(), [str(f) for f in files])


def _load_dataset(builder: str, files: list[str]) -> list[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_dataset(builder, data_files={"train": files})
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as exc:
        raise TrainerError(f"--data {', '.join(files)}: cannot read ({exc})") from exc
    return _train_split(loaded, Path(files[0]))


def _train_split(loaded, path: Path) -> list[dict[str, Any]]:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise TrainerError(f"--data {path}: the dataset has no 'train' split (it has {list(loaded)})")
        loaded = loaded["train"]
    if len(loaded) == 0:
        raise TrainerError(f"--data {path} contains no records")
    return loaded.to_list()


def _from_rows(rows: list[dict[str, Any]], fields: Fields, source: str) -> Records:
    kind = _kind(rows[0], fields, source)
    parse = {"poems": _poem, "messages": _messages_of, "prompt": _prompt_pair, "text": _text}[kind]
    items = []
    for number, row in enumerate(rows, 1):
        try:
            items.append(parse(row, fields))
        except (KeyError, TypeError, ValueError) as exc:
            raise TrainerError(f"{source}: record {number} is not a {kind} record ({exc})") from exc
    if kind == "prompt" and any(isinstance(item, list) for item in items):
        # Conversational prompt-completion: one conversation per record, loss on the completion's turns.
        kind, items = "messages", [item if isinstance(item, list) else _pair_as_messages(item) for item in items]
    return Records(kind, items, source)


def _kind(first: dict[str, Any], fields: Fields, source: str) -> str:
    keys = set(first)
    if _messages_key(first, fields) is not None:
        return "messages"
    if {"prompt", "completion"} <= keys:
        return "prompt"
    if fields.text in keys and (fields.text_given or "title" not in keys):
        return "text"
    if {"title", "text"} <= keys:
        return "poems"
    raise TrainerError(
        f"{source}: cannot tell the records' format from their fields {sorted(keys)}: expected "
        f"'{fields.messages}' (chats; --messages-field names another), 'prompt' + 'completion', "
        f"'{fields.text}' (plain text; --text-field names another) or 'title' + 'text' (poems)")


def _poem(row: dict[str, Any], fields: Fields) -> Poem:
    return Poem(title=str(row["title"]), text=str(row["text"]), url=str(row.get("url") or ""),
                volume=row.get("volume"))


def _text(row: dict[str, Any], fields: Fields) -> str:
    value = row[fields.text]
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{fields.text}' must be a non-empty string")
    return value


def _messages_key(row: dict[str, Any], fields: Fields) -> str | None:
    return next((k for k in (fields.messages, "messages", "conversations") if k in row), None)


def _messages_of(row: dict[str, Any], fields: Fields) -> list[dict[str, str]]:
    key = _messages_key(row, fields)
    if key is None:
        raise KeyError(fields.messages)
    return check_messages(row[key])


def check_messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("messages must be a non-empty list")
    messages = []
    for m in raw:
        if not isinstance(m, dict):
            raise ValueError("each message is an object with 'role' and 'content'")
        if "from" in m and "role" not in m:  # ShareGPT
            role, content = _SHAREGPT_ROLES.get(str(m["from"]), ""), m.get("value")
        else:
            role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"a {role} message's content must be a string")
        message = {"role": role, "content": content}
        if role == "assistant" and m.get("weight", 1) == 0:  # axolotl's way to keep a turn as context only
            message["weight"] = 0
        messages.append(message)
    if not any(m["role"] == "assistant" and "weight" not in m for m in messages):
        raise ValueError("no assistant message to learn from")
    return messages


def _prompt_pair(row: dict[str, Any], fields: Fields) -> tuple[str, str] | list[dict[str, str]]:
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, str) and isinstance(completion, str):
        if not completion:
            raise ValueError("empty completion")
        return prompt, completion
    as_list = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    # Loss on the completion only, as for string pairs: assistant turns of the prompt are context.
    context = [{**m, "weight": 0} if isinstance(m, dict) else m for m in as_list]
    return check_messages(context + list(completion))


def _pair_as_messages(pair: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]


def record_texts(records: Records, indices: Sequence[int]) -> list[str]:
    """Every string of the given records: what a from-scratch tokenizer learns its vocabulary from."""
    texts: list[str] = []
    for i in indices:
        item = records.items[i]
        if records.kind == "poems":
            texts.append(item.title + "\n" + item.text)
        elif records.kind == "messages":
            texts += [m["content"] for m in item]
        elif records.kind == "prompt":
            texts += list(item)
        else:
            texts.append(item)
    return texts
