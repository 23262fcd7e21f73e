"""No bad input gets a traceback: a corpus of bad inputs for every command, run in-process.

Each case is (argv, files to create, a fragment of the expected message). Every one must exit
with code 2 and print exactly one line on stderr, ``error: ...``, saying what was wrong, and
write nothing: no output directory, no file changed in the working directory.

Placeholders in argv: ``TINY`` is a tiny saved model directory, ``OUT`` an output path that
must not appear, any other word naming a key of the case's files is that file's path.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from reasonlens.tasks.blocksworld import make_example, make_problem, optimal_plan
from reasonlens.testing import run_cli

# --- files the cases are made of ----------------------------------------------------------

_PROBLEM = make_problem([["red", "blue"], ["green"]], [["blue", "red", "green"]], slots=3)
GOOD = make_example(_PROBLEM, optimal_plan(_PROBLEM)).to_record()
PROMPT = GOOD["prompt"]


def bw_line(completion: str) -> str:
    """A paper-layout Blocksworld record of the problem above with this plan."""
    return json.dumps({"prompt": PROMPT, "completion": completion}) + "\n"


ILLEGAL = bw_line("step 1: pick-up red\nstep 2: stack red on-top-of table")  # blue is on red
# with a key only a Blocksworld record has, so training reads it as one (not prompt/completion)
ILLEGAL_BW = ILLEGAL.replace('{"prompt"', '{"format": "paper", "prompt"', 1)
SHORT = bw_line("step 1: pick-up blue\nstep 2: stack blue on-top-of table")  # legal, no goal
DEEP = "[" * 100_000 + "]" * 100_000 + "\n"
PAIR = '{"prompt": "Q: one plus one?\\nA:", "completion": " 2"}\n'
NOT_UTF8 = b'{"text": "caf\xe9"}\n'


def model_copy(change: Callable[[Path], None]) -> Callable[[Path, str], None]:
    """A copy of the tiny model directory, then `change(copy)`."""

    def make(path: Path, tiny: str) -> None:
        shutil.copytree(tiny, path)
        change(path)

    return make


def _garbage_weights(path: Path) -> None:
    (path / "model.safetensors").write_bytes(b"not a safetensors file at all" * 10)


def _truncated_weights(path: Path) -> None:
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])


def _corrupt_config(path: Path) -> None:
    (path / "config.json").write_text("{not json")


def _unknown_architecture(path: Path) -> None:
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "no-such-model"}))


def _corrupt_tokenizer(path: Path) -> None:
    (path / "tokenizer.json").write_text("{not json")


def _letters_merged_with_newline(path: Path) -> None:
    """A tokenizer that merges "\n" with the letter after it: "A" is no token of its own at
    the preferences study's answer position."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from reasonlens.models.tiny import SPECIALS

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    vocab["\u010aA"], vocab["\u010aB"] = len(vocab), len(vocab) + 1
    core = Tokenizer(models.BPE(vocab=vocab, merges=[("\u010a", "A"), ("\u010a", "B")]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    ).save_pretrained(path)


def gguf_file(truncate: bool) -> Callable[[Path, str], None]:
    """A small well-formed GGUF file (one tensor, no model in it), optionally cut short."""

    def make(path: Path, _tiny: str) -> None:
        import numpy as np
        from gguf import GGUFWriter

        writer = GGUFWriter(str(path), "llama")
        writer.add_tensor("token_embd.weight", np.zeros((64, 16), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        if truncate:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) - 1000])

    return make


def directory(files: dict[str, str] | None = None) -> Callable[[Path, str], None]:
    def make(path: Path, _tiny: str) -> None:
        path.mkdir()
        for name, text in (files or {}).items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)

    return make


def study_run(study: str, stages, files: dict[str, str | bytes] | None = None, **config):
    """A hand-made run directory of `study` (run.json with `config`, the preset `quick`),
    holding `stages` as its stages.json (text or bytes as is) and `files`."""

    def make(path: Path, tiny: str) -> None:
        record = {"preset": "quick", "model": tiny, "seed": 0, "options": {}, **config}
        path.mkdir()
        (path / "run.json").write_text(
            json.dumps({"kind": f"study-{study}", "config": record, "produces": {}})
        )
        for name, content in {"stages.json": stages, **(files or {})}.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (path / name).write_bytes(content)
            else:
                (path / name).write_text(content)

    return make


# a finished run on a user's chains: the chains stage comes first
FILE_CHAINS = {"chains": "c.json", "chains_sha256": "0" * 64, "label": "backtracking"}
FINISHED = json.dumps(
    {n: {"inputs": {}, "state": "finished"} for n in ("chains", "activations", "analysis")}
)

CHAIN = (
    "Okay, so I need to add the numbers one at a time and see where that leads me in the end. "
    "First two plus two is four, then four plus three is seven, and seven plus one is eight. "
    "Wait, I added the three twice, so I should go back and start again from the top here. "
    "Two plus two is four, four plus one is five, so the answer is five and I am done now."
)


def chains_file(n: int) -> str:
    """`n` chains in the plain layout (JSON list), each with one backtracking span."""
    start, end = CHAIN.index("Wait"), CHAIN.index("here.") + len("here.")
    span = {"start": start, "end": end, "label": "backtracking"}
    return json.dumps([{"id": i, "text": CHAIN, "spans": [span]} for i in range(n)])


def backtracking(*extra: str) -> list[str]:
    """`study backtracking` on the tiny model into OUT, with EXTRA."""
    return ["study", "backtracking", "-m", "TINY", "-o", "OUT", *extra]


ATTRS = [{"name": f"a{i}", "units": "u", "range": [0, 10]} for i in range(1, 6)]
PREF_SCENARIOS = json.dumps([{"short_name": "s1", "question": "Which one?", "attributes": ATTRS}])
PREF_TARGETS = "scenario,attr1,attr2,attr3,attr4,attr5\ns1,10,-20,30,-40,100\n"
PREF_HEADER = (
    "scenario,selection,"
    + ",".join(f"A_attribute_{i}" for i in range(1, 6))
    + ","
    + ",".join(f"B_attribute_{i}" for i in range(1, 6))
    + "\n"
)


def pref_decisions(*rows: str) -> str:
    return PREF_HEADER + "".join(f"{r}\n" for r in rows)


def analyse(decisions: str = "d.csv") -> list[str]:
    return [
        "preferences",
        "analyse",
        "--scenarios",
        "s.json",
        "--targets",
        "t.csv",
        "--decisions",
        decisions,
        "--out",
        "OUT",
    ]


def trace(*extra: str) -> list[str]:
    return ["trace", "-m", "TINY", "-o", "OUT", *extra]


def train(*extra: str) -> list[str]:
    return ["train", "-m", "TINY", "-o", "OUT", "-d", "pairs.jsonl", *extra]


def case(argv, fragment, files=None, id=None):
    return pytest.param(argv, files or {}, fragment, id=id)


def train_flags(*flags: str, fragment: str, id=None):
    """A `train` case with good data and model and bad FLAGS."""
    return case(train(*flags), fragment, {"pairs.jsonl": PAIR}, id=id)


def grpo(*flags: str, fragment: str, id=None, data: str = "bw"):
    """A `train --method grpo` case: Blocksworld prompts (or prompt/completion pairs)."""
    files = {"bw.jsonl": json.dumps(GOOD) + "\n"} if data == "bw" else {"bw.jsonl": PAIR}
    argv = ["train", "-m", "TINY", "-o", "OUT", "-d", "bw.jsonl", "--method", "grpo", *flags]
    return case(argv, fragment, files, id=id)


CASES = [
    # --- usage errors: one line, for every command ---
    case(["trace", "--bogus"], "No such option: --bogus", id="usage-unknown-option"),
    case(["generate"], "Missing argument", id="usage-missing-argument"),
    case(["generate", "hi", "--max-new-tokens", "x"], "Invalid value for '--max-new-tokens'"),
    case(["generate", "hi", "--max-new-tokens", "0"], "--max-new-tokens", id="usage-range"),
    case(["study", "nostudy"], "No such command 'nostudy'", id="usage-unknown-command"),
    case(["data", "blocksworld"], "Missing option '--out'", id="usage-missing-option"),
    case(["data", "blocksworld", "--out", "OUT", "--seed", "x"], "Invalid value for '--seed'"),
    case(["eval", "-d"], "requires an argument", id="usage-option-without-value"),
    case(["train-merge", "adapter"], "Missing option '--out'"),
    # --- models info: names, directories, weights, GGUF files, run directories ---
    case(["models", "info", ""], "no model given", id="model-empty-name"),
    case(["models", "info", "smollm2-135"], "did you mean 'smollm2-135m'", id="model-typo"),
    case(["models", "info", "gemma3-270"], "did you mean 'gemma3-270m'", id="model-typo-2"),
    case(
        ["models", "info", "bad_model"],
        "model.safetensors is not a readable safetensors file",
        {"bad_model": model_copy(_garbage_weights)},
        id="model-garbage-safetensors",
    ),
    case(
        ["models", "info", "cut_model"],
        "model.safetensors is not a readable safetensors file",
        {"cut_model": model_copy(_truncated_weights)},
        id="model-truncated-safetensors",
    ),
    case(
        ["models", "info", "m"],
        "config.json' is not a valid JSON file",
        {"m": model_copy(_corrupt_config)},
        id="model-corrupt-config",
    ),
    case(
        ["models", "info", "m"],
        "model type `no-such-model`",
        {"m": model_copy(_unknown_architecture)},
    ),
    case(
        ["models", "info", "m"],
        "could not load the tokenizer",
        {"m": model_copy(_corrupt_tokenizer)},
        id="model-corrupt-tokenizer",
    ),
    case(["models", "info", "x.gguf"], "is empty", {"x.gguf": b""}, id="gguf-empty"),
    case(
        ["models", "info", "x.gguf"],
        "does not start with the GGUF magic bytes",
        {"x.gguf": b"hello, world\n" * 50},
        id="gguf-garbage",
    ),
    case(
        ["models", "info", "x.gguf"],
        "truncated or corrupt",
        {"x.gguf": b"GGUF\x03\x00\x00\x00" + b"junk" * 20},
        id="gguf-corrupt",
    ),
    case(["models", "info", "x.gguf"], "truncated", {"x.gguf": gguf_file(True)}, id="gguf-cut"),
    case(
        ["models", "info", "x.gguf"],
        "cannot load",
        {"x.gguf": gguf_file(False)},
        id="gguf-not-a-model",
    ),
    case(
        ["models", "info", "dir.gguf"],
        "is a directory, not a .gguf file",
        {"dir.gguf": directory()},
        id="gguf-directory",
    ),
    case(["models", "info", "nope.gguf"], "GGUF file not found"),
    case(
        ["models", "info", "run"],
        "run.json is corrupt",
        {"run": directory({"run.json": "{not json"})},
        id="model-corrupt-run-json",
    ),
    case(
        ["models", "info", "run"],
        "run.json is corrupt",
        {"run": directory({"run.json": "[1, 2]"})},
        id="model-run-json-not-a-record",
    ),
    case(
        ["models", "info", "plain"],
        "not a model: it has no config.json",
        {"plain": directory({"notes.txt": "hi"})},
    ),
    case(["models", "info", "notes.txt"], "is a file, not a model", {"notes.txt": "hi"}),
    # --- generate ---
    case(["generate", "", "-m", "TINY"], "prompt 1 is empty", id="generate-empty-prompt"),
    case(["generate", "ok", "\udcff", "-m", "TINY"], "prompt 2 holds bytes that are not UTF-8"),
    case(["generate", "hi", "-m", "smolm2-135m"], "did you mean 'smollm2-135m'"),
    case(
        ["generate", "hi", "-m", "bad_model"],
        "is not a readable safetensors file",
        {"bad_model": model_copy(_garbage_weights)},
    ),
    case(["generate", "hi", "-m", "TINY", "--device", "tpu"], "unknown device 'tpu'"),
    case(["generate", "hi", "-m", "TINY", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    # --- data blocksworld ---
    case(["data", "blocksworld", "--out", "OUT", "--levels", "L9"], "unknown level 'L9'"),
    case(["data", "blocksworld", "--out", "OUT", "--preset", "papr"], "did you mean 'paper'"),
    case(["data", "blocksworld", "--out", "OUT", "--format", "x"], "unknown format 'x'"),
    case(["data", "blocksworld", "--out", "OUT", "--slots", "0"], "--slots"),
    case(["data", "blocksworld", "--out", "OUT", "--blocks", "99"], "99 blocks"),
    # --- validate ---
    case(["validate", "missing.jsonl"], "cannot read"),
    case(["validate", "folder"], "is a directory", {"folder": directory()}),
    case(["validate", "bad.jsonl"], "bad.jsonl:2: not UTF-8", {"bad.jsonl": b"\n" + NOT_UTF8}),
    case(["validate", "bw.jsonl", "--slots", "0"], "--slots", {"bw.jsonl": ILLEGAL}),
    # --- train: numbers, flags, config files, data, model ---
    train_flags("--learning-rate", "nan", fragment="learning_rate must be a finite number"),
    train_flags("--epochs", "inf", fragment="epochs must be a finite number"),
    train_flags("--max-grad-norm", "nan", fragment="max_grad_norm must be a finite"),
    train_flags("--weight-decay", "inf", fragment="weight_decay must be a finite"),
    train_flags("--warmup-ratio", "-inf", fragment="warmup_ratio must be a finite"),
    train_flags("--method", "lora", "--lora-dropout", "nan", fragment="lora_dropout must be"),
    train_flags("--batch-size", "0", fragment="batch_size must be a positive"),
    train_flags("--method", "lorra", fragment="did you mean 'lora'"),
    train_flags("--lr-scheduler", "cosin", fragment="did you mean 'cosine'"),
    case(
        train("--method", "lora", "--lora-target-modules", "q_proj,qkv"),
        "unknown LoRA target module 'qkv'",
        {"pairs.jsonl": PAIR},
        id="train-unknown-lora-target",
    ),
    case(
        train("--method", "lora", "--lora-target-modules", "mlp"),
        "not a layer LoRA can adapt",
        {"pairs.jsonl": PAIR},
        id="train-lora-target-not-linear",
    ),
    case(
        train("--method", "lora", "--lora-target-modules", "q_porj"),
        "unknown LoRA target module 'q_porj'",
        {"pairs.jsonl": PAIR},
        id="train-lora-target-typo",
    ),
    case(
        train("--lora-r", "4", "--lora-alpha", "8"),
        "--lora-r, --lora-alpha only apply to --method lora",
        {"pairs.jsonl": PAIR},
        id="train-lora-flags-with-full",
    ),
    case(
        train("--method", "full", "--lora-target-modules", "q_proj"),
        "--lora-target-modules only applies to --method lora",
        {"pairs.jsonl": PAIR},
    ),
    case(
        train("--config", "c.yaml"),
        "c.yaml:3: not valid YAML",
        {"pairs.jsonl": PAIR, "c.yaml": "epochs: 1\nlora_r: [1\nseed: 2\n"},
        id="train-yaml-syntax",
    ),
    case(
        train("--config", "c.yaml"),
        "is not a UTF-8 text file",
        {"pairs.jsonl": PAIR, "c.yaml": b"epochs: \xff\n"},
    ),
    case(
        train("--config", "c.yaml"),
        "learning_rate must be a finite number",
        {"pairs.jsonl": PAIR, "c.yaml": "learning_rate: .nan\n"},
        id="train-yaml-nan",
    ),
    case(
        train("--config", "c.yaml"),
        "epochs must be a finite number",
        {"pairs.jsonl": PAIR, "c.yaml": "epochs: 1e999\n"},
    ),
    case(
        train("--config", "c.yaml"),
        "did you mean 'epochs'",
        {"pairs.jsonl": PAIR, "c.yaml": "epoch: 2\n"},
    ),
    case(
        train("--config", "c.yaml"),
        "expects list[str]",
        {"pairs.jsonl": PAIR, "c.yaml": "lora_target_modules: [1, 2]\n"},
    ),
    case(train(), "nested too deeply", {"pairs.jsonl": DEEP}, id="train-deep-json"),
    case(train(), "pairs.jsonl:1: not UTF-8", {"pairs.jsonl": NOT_UTF8}, id="train-not-utf8"),
    case(train(), "is a directory", {"pairs.jsonl": directory()}, id="train-data-directory"),
    case(train(), "data file not found", id="train-data-missing"),
    case(
        train(),
        "lone surrogate",
        {"pairs.jsonl": '{"prompt": "\\ud800", "completion": " x"}\n'},
        id="train-lone-surrogate",
    ),
    case(
        train(),
        "pairs.jsonl:1: the gold plan step 1 is illegal",
        {"pairs.jsonl": ILLEGAL_BW},
        id="train-illegal-gold-plan",
    ),
    case(
        ["train", "-m", "bad_model", "-o", "OUT", "-d", "pairs.jsonl"],
        "is not a readable safetensors file",
        {"pairs.jsonl": PAIR, "bad_model": model_copy(_garbage_weights)},
    ),
    case(
        ["train", "-m", "m", "-o", "OUT", "-d", "pairs.jsonl"],
        "model type `no-such-model`",
        {"pairs.jsonl": PAIR, "m": model_copy(_unknown_architecture)},
    ),
    # --- train-merge ---
    case(
        ["train-merge", "missing", "-o", "OUT"],
        "adapter directory not found",
        id="merge-missing-adapter",
    ),
    case(["train-merge", "f.txt", "-o", "OUT"], "is a file, not a LoRA adapter", {"f.txt": "x"}),
    case(
        ["train-merge", "run", "-o", "OUT"],
        "it has no adapter_config.json (did you mean",
        {"run": directory({"run.json": "{}", "adapter/adapter_config.json": "{}"})},
    ),
    case(
        ["train-merge", "ad", "-o", "OUT"],
        "adapter_config.json is corrupt",
        {"ad": directory({"adapter_config.json": "{not json"})},
    ),
    # --- eval ---
    case(["eval", "-d", "folder", "-o", "OUT"], "is a directory", {"folder": directory()}),
    case(["eval", "-d", "missing.jsonl", "-o", "OUT"], "data file not found"),
    case(["eval", "-d", "bad.jsonl", "-o", "OUT"], "not UTF-8", {"bad.jsonl": NOT_UTF8}),
    case(["eval", "-d", "deep.jsonl", "-o", "OUT"], "nested too deeply", {"deep.jsonl": DEEP}),
    case(
        ["eval", "-d", "bw.jsonl", "-o", "OUT", "-m", "TINY"],
        "bw.jsonl:2: the gold plan step 1 is illegal",
        {"bw.jsonl": json.dumps(GOOD) + "\n" + ILLEGAL},
        id="eval-illegal-gold-plan",
    ),
    case(
        ["eval", "-d", "bw.jsonl", "-o", "OUT", "-m", "TINY"],
        "bw.jsonl:1: the gold plan does not reach the goal",
        {"bw.jsonl": SHORT},
        id="eval-gold-plan-misses-goal",
    ),
    case(
        ["eval", "-d", "bw.jsonl", "-o", "OUT", "-m", "TINY", "--mode", "gen"],
        "did you mean 'generate'",
        {"bw.jsonl": json.dumps(GOOD) + "\n"},
    ),
    case(
        ["eval", "-d", "bw.jsonl", "-o", "OUT", "-m", "bad_model"],
        "is not a readable safetensors file",
        {"bw.jsonl": json.dumps(GOOD) + "\n", "bad_model": model_copy(_garbage_weights)},
        id="eval-garbage-model",
    ),
    case(
        ["eval", "-d", "bw.jsonl", "-o", "OUT", "-m", "m"],
        "config.json' is not a valid JSON file",
        {"bw.jsonl": json.dumps(GOOD) + "\n", "m": model_copy(_corrupt_config)},
    ),
    # --- trace ---
    case(trace("-s", "layers.1-0.resid_post", "-t", "x"), "reversed layer range '1-0'"),
    case(trace("-s", "layers.0-999999999.k", "-t", "x"), "layer 999999999 does not exist"),
    case(trace("-s", "layers.0-99999999999.k", "-t", "x"), "bad layer '0-99999999999'"),
    case(trace("-s", "layers.x.k", "-t", "x"), "bad layer 'x'"),
    case(trace("-s", "layers.0.k", "-t", ""), "is empty", id="trace-empty-text"),
    case(
        trace("-s", "layers.0.k", "-i", "in.jsonl"),
        "in.jsonl:1: not UTF-8",
        {"in.jsonl": NOT_UTF8},
        id="trace-not-utf8",
    ),
    case(
        trace("-s", "layers.0.k", "-i", "in.jsonl"),
        "outside the model's vocabulary",
        {"in.jsonl": '{"input_ids": [999999]}\n'},
        id="trace-token-id-outside-vocabulary",
    ),
    case(
        trace("-s", "layers.0.k", "-i", "in.jsonl"),
        "in.jsonl:1: 'input_ids' must be a non-empty list of token ids",
        {"in.jsonl": '{"input_ids": [true, false, 5]}\n'},
        id="trace-boolean-token-ids",
    ),
    case(
        trace("-s", "layers.0.k", "-i", "in.jsonl"),
        "'input_ids' must be",
        {"in.jsonl": '{"input_ids": [1.0, 2]}\n'},
    ),
    case(
        trace("-s", "layers.0.k", "-i", "in.jsonl", "--positions", "given"),
        "in.jsonl:1: 'positions' is empty",
        {"in.jsonl": '{"text": "hi", "positions": []}\n'},
        id="trace-empty-positions",
    ),
    case(
        trace("-s", "layers.0.k", "-i", "in.jsonl"),
        "'positions' must be a list of integers",
        {"in.jsonl": '{"text": "hi", "positions": [true]}\n'},
    ),
    case(
        trace("-s", "layers.0.k", "-i", "in.jsonl"),
        "in.jsonl:1: JSON nested too deeply",
        {"in.jsonl": DEEP},
        id="trace-deep-json",
    ),
    case(
        trace("-s", "layers.0.k", "-i", "in.jsonl"),
        "lone surrogate",
        {"in.jsonl": '{"text": "\\ud800"}\n'},
    ),
    case(
        trace("-s", "layers.0.k", "-i", "in.jsonl"),
        "in.jsonl:1: 'text' is empty",
        {"in.jsonl": '{"text": ""}\n'},
    ),
    case(trace("-s", "layers.0.k", "-i", "folder"), "is a directory", {"folder": directory()}),
    case(trace("-s", "layers.0.k", "-t", "x", "--positions", "first"), "unknown positions"),
    case(
        ["trace", "-m", "TINY", "-o", "store", "-s", "layers.0.k", "-t", "x"],
        "meta.json",
        {"store": directory({"meta.json": "{not json"})},
        id="trace-corrupt-store-meta-json",
    ),
    # --- study planning, report ---
    case(["study", "planning", "--preset", "nope", "-o", "OUT"], "unknown planning preset"),
    case(["study", "planning", "-m", "smollm2-135", "-o", "OUT"], "did you mean 'smollm2-135m'"),
    case(["study", "planning", "-m", "TINY", "--device", "tpu", "-o", "OUT"], "unknown device"),
    case(["study", "planning", "--seed", "x", "-o", "OUT"], "Invalid value for '--seed'"),
    # --- study preferences ---
    case(["study", "preferences", "--preset", "nope", "-o", "OUT"], "unknown preferences preset"),
    case(["study", "preferences", "-m", "smollm2-135", "-o", "OUT"], "did you mean 'smollm2-135m'"),
    case(
        ["study", "preferences", "-m", "merged", "-o", "OUT"],
        "does not give 'A' a single token at the answer position",
        {"merged": model_copy(_letters_merged_with_newline)},
        id="preferences-letters-not-single-tokens",
    ),
    case(["report", "missing"], "not a reasonlens run directory"),
    case(["report", "run"], "not a reasonlens run directory", {"run": directory()}),
    case(
        ["report", "run"],
        "run",
        {"run": directory({"run.json": "{not json"})},
        id="report-corrupt-run-json",
    ),
    # --- a finished run's own files, damaged: read as carefully as user input ---
    case(
        ["report", "run"],
        "run/stages.json is not valid JSON",
        {"run": study_run("backtracking", "[1,")},
        id="state-stages-cut",
    ),
    case(
        ["report", "run"],
        "run/stages.json holds a JSON list, expected a JSON object",
        {"run": study_run("backtracking", "[]")},
        id="state-stages-list",
    ),
    case(
        ["report", "run"],
        "run/stages.json: stage 'chains' holds a JSON number, expected a JSON object",
        {"run": study_run("backtracking", '{"chains": 5}')},
        id="state-stages-entry-number",
    ),
    case(
        ["report", "run"],
        "run/stages.json is not UTF-8",
        {"run": study_run("backtracking", b'{"chains": "\xff"}')},
        id="state-stages-not-utf8",
    ),
    case(
        ["report", "run"],
        "run/chains/summary.json is not valid JSON",
        {
            "run": study_run(
                "backtracking",
                FINISHED,
                {"chains/labels.jsonl": "", "chains/summary.json": "{"},
                options=FILE_CHAINS,
            )
        },
        id="state-stage-summary-cut",
    ),
    case(
        ["study", "backtracking", "-m", "TINY", "-o", "run"],
        "run/stages.json is not valid JSON",
        {"run": study_run("backtracking", "[1,")},
        id="state-resume-stages-cut",
    ),
    case(
        ["study", "backtracking", "-m", "TINY", "-o", "run"],
        "run/stages.json: stage 'data' has no 'inputs' object",
        {"run": study_run("backtracking", '{"data": {"state": "finished"}}')},
        id="state-resume-stages-no-inputs",
    ),
    # --- study backtracking: what can be checked before the first stage is checked there ---
    case(
        backtracking("--chains", "c.json", "--template", "raw"),
        "c.json: 2 chains, need at least 3",
        {"c.json": chains_file(2)},
        id="backtracking-two-chains",
    ),
    case(
        backtracking("--chains", "c.json", "--template", "raw"),
        "c.json: 1 chain, need at least 3",
        {"c.json": chains_file(1)},
        id="backtracking-one-chain",
    ),
    case(
        backtracking("--chains", "c.json"),
        "c.json: expected a JSON list of chains (or JSONL, one chain a line), got an object",
        {"c.json": json.dumps({"chains": json.loads(chains_file(3))}, indent=2)},
        id="backtracking-chains-object",
    ),
    case(
        backtracking("--chains", "c.json"),
        "c.json: expected a JSON list of chains (or JSONL, one chain a line), got an object",
        {"c.json": json.dumps({"chains": json.loads(chains_file(3))})},
        id="backtracking-chains-object-one-line",
    ),
    case(
        backtracking("--chains", "c.json", "--template", "raw", "--label", ""),
        "--label is empty",
        {"c.json": chains_file(3)},
        id="backtracking-empty-label",
    ),
    case(
        ["study", "backtracking", "-m", "nobody/no-such-model", "-o", "OUT"],
        "'nobody/no-such-model' is not in the local Hugging Face cache",
        id="backtracking-hub-model-offline",
    ),
    case(
        ["study", "planning", "-m", "nobody/no-such-model", "-o", "OUT"],
        "'nobody/no-such-model' is not in the local Hugging Face cache",
        id="planning-hub-model-offline",
    ),
    # --- preferences analyse ---
    case(
        analyse(),
        "d.csv row 1 (scenario 's1'): column B_attribute_2 is 1e300, far outside the range "
        "[0, 10] of attribute 'a2'",
        {
            "s.json": PREF_SCENARIOS,
            "t.csv": PREF_TARGETS,
            "d.csv": pref_decisions("s1,A,1,2,3,4,5,5,1e300,3,2,1"),
        },
        id="preferences-value-far-outside-range",
    ),
    case(
        analyse(),
        "d.csv row 2 (scenario 's1'): column A_attribute_1 is -50, far outside",
        {
            "s.json": PREF_SCENARIOS,
            "t.csv": PREF_TARGETS,
            "d.csv": pref_decisions("s1,A,1,2,3,4,5,5,4,3,2,1", "s1,B,-50,2,3,4,5,5,4,3,2,1"),
        },
        id="preferences-value-outside-range",
    ),
    # --- train --method grpo: no verifier, no reward, options of the other method ---
    grpo(fragment="belong to no task reasonlens can verify", data="pairs", id="grpo-no-verifier"),
    grpo("--reward", "no_such_module:f", fragment="cannot import reward", id="grpo-no-import"),
    grpo("--reward", "nofunction", fragment="give a task's reward", id="grpo-reward-no-colon"),
    grpo("--max-length", "64", fragment="--max-length is an SFT option", id="grpo-sft-option"),
    grpo("--gradient-accumulation", "2", fragment="is an SFT option", id="grpo-sft-accum"),
    grpo("--max-completion-length", "0", fragment="at least 1 token", id="grpo-length-0"),
    grpo("--num-generations", "1", fragment="must be at least 2", id="grpo-group-1"),
    grpo("--batch-size", "3", fragment="must divide the completions", id="grpo-batch"),
    grpo("--weights", "full", "--lora-r", "4", fragment="applies to LoRA", id="grpo-full-lora"),
    grpo("--task", "maze", fragment="but --task is backtracking", id="grpo-task-mismatch"),
    train_flags("--reward", "blocksworld", fragment="--reward is a GRPO option", id="sft-grpo-opt"),
    # --- sharded models: devices that do not exist, memory that cannot hold the model ---
    case(
        trace("-s", "layers.0.k", "-t", "x", "--device-map", '{"": "cuda:1"}'),
        "device 'cuda:1' does not exist here",
        id="shard-no-such-gpu",
    ),
    case(
        trace("-s", "layers.0.k", "-t", "x", "--device-map", '{"model.layers.0": 3}'),
        "device 3 does not exist here",
        id="shard-no-such-gpu-index",
    ),
    case(
        trace("-s", "layers.0.k", "-t", "x", "--device-map", '{"": "tpu"}'),
        "unknown device 'tpu'",
        id="shard-unknown-device",
    ),
    case(
        trace("-s", "layers.0.k", "-t", "x", "--device-map", "auto", "--max-memory", "cpu=10KB"),
        "cannot hold model",
        id="shard-max-memory-too-small",
    ),
    case(
        trace("-s", "layers.0.k", "-t", "x", "--device-map", "auto", "--max-memory", "7=1GB"),
        "device '7' does not exist here",
        id="shard-max-memory-no-such-gpu",
    ),
    case(
        trace("-s", "layers.0.k", "-t", "x", "--device-map", "auto", "--max-memory", "cpu=lots"),
        "is not a size",
        id="shard-max-memory-not-a-size",
    ),
    case(
        trace("-s", "layers.0.k", "-t", "x", "--max-memory", "cpu=1GB"),
        "give --device-map auto too",
        id="shard-max-memory-without-map",
    ),
    case(
        trace("-s", "layers.0.k", "-t", "x", "--device-map", '{"": "disk"}'),
        "give --offload-folder",
        id="shard-disk-without-folder",
    ),
    case(
        trace("-s", "layers.0.k", "-t", "x", "--device-map", "{not json"),
        "--device-map must be auto",
        id="shard-map-not-json",
    ),
    case(
        ["eval", "-d", "bw.jsonl", "-m", "TINY", "-o", "OUT", "--device-map", '{"": "cuda:0"}'],
        "does not exist here",
        {"bw.jsonl": json.dumps(GOOD) + "\n"},
        id="shard-eval-no-such-gpu",
    ),
]


def _snapshot(root: Path) -> list[tuple[str, int]]:
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")
    )


@pytest.mark.parametrize(("argv", "files", "fragment"), CASES)
def test_bad_input_is_one_line_and_exit_2(
    argv, files, fragment, tiny_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("REASONLENS_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    for name, content in files.items():
        path = work / name
        if callable(content):
            content(path, tiny_dir)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    monkeypatch.chdir(work)
    out = work / "OUT"
    swap = {"TINY": tiny_dir, "OUT": str(out)}
    before = _snapshot(work)

    code, _, err = run_cli([swap.get(a, a) for a in argv], capsys)

    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert fragment in lines[0], err
    assert not out.exists(), f"{out} was created"
    assert _snapshot(work) == before, "a bad input changed the working directory"


# --- what is right stays right --------------------------------------------------------------


def test_help_still_works(capsys):
    code, out, err = run_cli(["trace", "--help"], capsys)
    assert code == 0 and "--sites" in out and not err


# A valid record holding a literal U+2028 (and U+0085) in a string: one line of JSONL, which
# str.splitlines would cut in two.
SEPARATORS = json.dumps({**GOOD, "note": "a\u2028b\x85c"}, ensure_ascii=False) + "\n"


def test_validate_reads_a_line_holding_u2028_as_one_line(tmp_path, capsys):
    path = tmp_path / "bw.jsonl"
    path.write_text(SEPARATORS, encoding="utf-8")
    code, out, err = run_cli(["validate", path, "--json"], capsys)
    assert code == 0, err
    totals = json.loads(out)
    assert totals["total"] == 1 and totals["legal"] == 1 and totals["with_issues"] == 0


def test_train_and_eval_readers_read_a_line_holding_u2028_as_one_line(tmp_path):
    from reasonlens.evaluate.task_eval import load_items
    from reasonlens.tasks import get_task
    from reasonlens.trace import JsonlInputs
    from reasonlens.train.data import read_pairs

    bw = tmp_path / "bw.jsonl"
    bw.write_text(SEPARATORS + SEPARATORS, encoding="utf-8")
    pairs, _ = read_pairs([bw])
    assert len(pairs) == 2 and pairs[0].prompt == PROMPT
    assert len(load_items(get_task("blocksworld"), [bw])) == 2

    generic = tmp_path / "qa.jsonl"
    generic.write_text(
        json.dumps({"prompt": "a\u2028b", "completion": " c\x85"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    pairs, _ = read_pairs([generic])
    assert [(p.prompt, p.completion) for p in pairs] == [("a\u2028b", " c\x85")]

    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"text": "x\u2028y"}, ensure_ascii=False) + "\n")
    assert [x.text for x in JsonlInputs(inputs)] == ["x\u2028y"]


def test_validate_reports_a_deeply_nested_line_as_a_finding(tmp_path, capsys):
    path = tmp_path / "bw.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + DEEP)
    code, out, _ = run_cli(["validate", path], capsys)
    assert code == 0 and f"{path}:2: invalid JSON: nested too deeply" in out
