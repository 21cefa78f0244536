"""Training data for the tca long-context model (no torch here: unit-testable with plain python3).

Sources (tools/train/README.md):
  * natural text (data/text/*.txt[.gz]): split into sentences like `tca eval --haystack` does,
    each sentence tokenized once as " " + sentence, so a haystack built from consecutive
    sentences has exactly the tokens the evaluation's joined text has;
  * task items exported by `tca eval --export-train` (data/tasks/*.jsonl[.gz]) from the SAME
    generators as the evaluation: their needles are re-placed at random depths into natural
    text (or the generated filler) of the stage's length, token by token;
  * dense associative recall (`--task assoc_recall`): used as exported (answers marked).

A sequence is (ids[T + 1], answer_mask[T + 1]): inputs ids[:-1], targets ids[1:], and the mask
marks answer targets (the answer-only loss). The tokenizer only needs encode(text) -> ids.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
from typing import Callable, Iterable, Sequence

Encode = Callable[[str], list]


def open_text(path: str):
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def split_sentences(text: str) -> list:
    """Whitespace collapsed, split after . ! ? followed by a space (as src/eval load_haystack)."""
    text = " ".join(text.split())
    out, start = [], 0
    for m in re.finditer(r"[.!?] ", text):
        out.append(text[start:m.end() - 1])
        start = m.end()
    if start < len(text):
        out.append(text[start:])
    return [s for s in out if s]


def read_jsonl(path: str) -> list:
    with open_text(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------- prompts of the eval tasks

NEEDLE_RE = re.compile(r"^(One of the special magic .* is: .*\.|VAR [A-Z]+ = .*\.)$")


def split_prompt(prompt: str):
    """instruction, context sentences, tail ("\\n\\nQuestion: ...\\nAnswer: prefix")."""
    a = prompt.index("\n\n")
    b = prompt.rindex("\n\nQuestion: ")
    return prompt[:a], split_sentences(prompt[a + 2:b] + " "), prompt[b:]


def needles_of(prompt: str) -> list:
    """The needle / chain statements of an item's context, in order."""
    _, sentences, _ = split_prompt(prompt)
    return [s for s in sentences if NEEDLE_RE.match(s)]


def filler_of(prompt: str) -> list:
    _, sentences, _ = split_prompt(prompt)
    return [s for s in sentences if not NEEDLE_RE.match(s)]


class Haystack:
    """Sentences tokenized once (" " + sentence) for token-level context building."""

    def __init__(self, sentences: Sequence[str], encode_batch: Callable[[list], list]):
        self.sentences = list(sentences)
        self.ids = encode_batch([" " + s for s in self.sentences])
        self.n_tokens = sum(len(x) for x in self.ids)

    def run(self, rng: random.Random, n_tokens: int) -> list:
        """Indices of consecutive sentences (wrapping) from a random start, about n_tokens."""
        out, total = [], 0
        i = rng.randrange(len(self.sentences))
        while total < n_tokens and len(out) <= n_tokens:  # wraps around a short text
            out.append(i)
            total += len(self.ids[i])
            i = (i + 1) % len(self.sentences)
        return out


class TaskItem:
    """An exported eval-task item, tokenized in parts for re-placement at any length."""

    def __init__(self, rec: dict, encode: Encode):
        self.task = rec["task"]
        instruction, _, tail = split_prompt(rec["prompt"])
        # "\n\n" is tokenized with the first body sentence: alone at the end of a string the
        # GPT-2 regex keeps it as one piece, before a word it splits it ("\n", "\n").
        self.head = encode(instruction)
        self.needles = needles_of(rec["prompt"])
        self.needle_ids = [encode(" " + s) for s in self.needles]
        self.first_needle_ids = [encode("\n\n" + s) for s in self.needles]  # first in the body
        self.tail = encode(tail)
        self.answer = encode(rec["answer"])
        self.verbatim = None
        if self.task == "common_words" or not self.needles:
            # A word list: used as exported (no haystack to re-place).
            self.verbatim = encode(rec["prompt"])

    def build(self, n_tokens: int, hay: Haystack, rng: random.Random, encode: Encode):
        """ids, answer mask of one item of about n_tokens (prompt + answer), needles at random
        depths in consecutive haystack sentences (chain order kept). None when it cannot fit."""
        if self.verbatim is not None:
            ids = self.verbatim + self.answer
            if len(ids) > n_tokens:
                return None
            return ids, [0] * len(self.verbatim) + [1] * len(self.answer)
        fixed = len(self.head) + len(self.tail) + len(self.answer) + sum(len(x) for x in self.needle_ids)
        room = n_tokens - fixed
        if room < 0:
            return None
        sent = hay.run(rng, room)
        # Drop sentences from the end until the haystack fits.
        total = sum(len(hay.ids[i]) for i in sent)
        while sent and total > room:
            total -= len(hay.ids[sent.pop()])
        slots = sorted(rng.randint(0, len(sent)) for _ in self.needles)
        body, k = [], 0
        for pos in range(len(sent) + 1):
            while k < len(slots) and slots[k] == pos:
                body.append(self.first_needle_ids[k] if not body else self.needle_ids[k])
                k += 1
            if pos < len(sent):
                body.append(encode("\n\n" + hay.sentences[sent[pos]]) if not body else hay.ids[sent[pos]])
        prompt = list(self.head)
        for part in body:
            prompt.extend(part)
        prompt.extend(self.tail)
        return prompt + self.answer, [0] * len(prompt) + [1] * len(self.answer)


def assoc_segments(rec: dict):
    """(text, is_answer) segments of an exported assoc_recall record."""
    prompt, segs, at = rec["prompt"], [], 0
    for b, e in rec.get("answer_spans", []):
        segs.append((prompt[at:b], False))
        segs.append((prompt[b:e], True))
        at = e
    segs.append((prompt[at:], False))
    segs.append((rec["answer"], True))
    return [(t, a) for t, a in segs if t]


def tokenize_segments(segs, encode: Encode):
    ids, mask = [], []
    for text, is_answer in segs:
        t = encode(text)
        ids.extend(t)
        mask.extend([int(is_answer)] * len(t))
    return ids, mask


def trim_to_last_answer(ids: list, mask: list, n: int):
    """The longest prefix of at most n tokens that ends right after an answer token."""
    end = min(n, len(ids))
    while end > 0 and not mask[end - 1]:
        end -= 1
    return ids[:end], mask[:end]


# ---------------------------------------------------------------- sequences of one stage

class Mixer:
    """Builds training sequences of length T + 1 for one curriculum stage.

    weights: {"assoc": w, "tasks": w, "text": w}. A sequence starts with one document of the
    drawn kind and is filled up with further documents (BOS-separated: EOS, BOS between), text
    filling the rest, so no token is padding. A task document's length is uniform between
    task_len_frac (default 1/4) of the room left and all of it, and at least min_task_len.
    task_weights ({task name: w}, optional): a task document first draws its task by these
    weights, then an item of it (tasks left out are not drawn); without them every item is
    equally likely.
    """

    def __init__(self, *, seq_len: int, weights: dict, bos: int, eos: int, encode: Encode,
                 text: Haystack, fillers: Haystack | None, tasks: list, assoc: list,
                 filler_share: float, rng: random.Random, min_task_len: int = 0,
                 task_weights: dict | None = None, task_len_frac: float = 0.25):
        self.T = seq_len
        self.kinds = [k for k, w in weights.items() if w > 0]
        self.w = [weights[k] for k in self.kinds]
        self.bos, self.eos, self.encode = bos, eos, encode
        self.text, self.fillers = text, fillers
        self.tasks, self.assoc = tasks, assoc
        self.filler_share = filler_share
        self.rng = rng
        self.min_task_len = min_task_len
        if not 0.0 < task_len_frac <= 1.0:
            raise ValueError(f"task_len_frac must be in (0, 1], got {task_len_frac}")
        self.task_len_frac = task_len_frac
        self.by_task = None
        if task_weights:
            groups = {}
            for item in tasks:
                groups.setdefault(item.task, []).append(item)
            unknown = sorted(set(task_weights) - set(groups))
            if unknown:
                raise ValueError(f"task_weights names tasks with no loaded items: {', '.join(unknown)}")
            names = [t for t in sorted(task_weights) if task_weights[t] > 0]
            if not names:
                raise ValueError("task_weights gives every task weight 0")
            self.by_task = (names, [task_weights[t] for t in names], groups)
        if "tasks" in self.kinds and not tasks:
            raise ValueError("stage wants task items but none were loaded")
        if "assoc" in self.kinds and not assoc:
            raise ValueError("stage wants assoc_recall items but none were loaded")

    def _text_doc(self, n: int):
        ids = []
        for i in self.text.run(self.rng, n):
            ids.extend(self.text.ids[i])
        ids = ids[:n]
        return ids, [0] * len(ids)

    def _task_doc(self, n: int):
        for _ in range(8):
            if self.by_task is None:
                item = self.rng.choice(self.tasks)
            else:
                names, weights, groups = self.by_task
                item = self.rng.choice(groups[self.rng.choices(names, weights)[0]])
            # Item length uniform in [frac * room, room]: frac near 1 keeps every item about
            # as long as the sequence, so needles sit at every distance from the question.
            lo = min(n, max(self.min_task_len, int(n * self.task_len_frac)))
            target = self.rng.randint(lo, n)
            hay = self.fillers if (self.fillers is not None and self.rng.random() < self.filler_share) else self.text
            out = item.build(target, hay, self.rng, self.encode)
            if out is not None:
                return out
        return None

    def _assoc_doc(self, n: int):
        ids, mask = self.rng.choice(self.assoc)
        ids, mask = trim_to_last_answer(ids, mask, n)
        return (ids, mask) if ids else None

    def sequence(self):
        n = self.T + 1
        ids, mask = [], []
        while len(ids) < n:
            room = n - len(ids) - 2  # BOS before, EOS after
            if room < 16:
                doc = self._text_doc(n - len(ids))
                ids.extend(doc[0])
                mask.extend(doc[1])
                break
            kind = self.rng.choices(self.kinds, self.w)[0]
            doc = None
            if kind == "tasks":
                doc = self._task_doc(room)
            elif kind == "assoc":
                doc = self._assoc_doc(room)
            if doc is None:
                doc = self._text_doc(room)
            ids.append(self.bos)
            mask.append(0)
            ids.extend(doc[0])
            mask.extend(doc[1])
            ids.append(self.eos)
            mask.append(0)
        return ids[:n], mask[:n]


def load_text_sentences(paths: Iterable[str]) -> list:
    out = []
    for p in paths:
        with open_text(p) as f:
            out.extend(split_sentences(f.read()))
    return out


def list_files(folder: str, suffixes=(".txt", ".txt.gz", ".jsonl", ".jsonl.gz")) -> list:
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(suffixes))
