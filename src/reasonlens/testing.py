"""Helpers for tests of reasonlens and of code built on it: run the CLI, save a tiny model."""

from __future__ import annotations

from pathlib import Path


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    """Run `reasonlens ARGV` in-process; (exit code, stdout, stderr) via pytest's capsys."""
    from reasonlens.cli import main

    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def save_tiny_model(path: str | Path, arch: str = "llama", **kwargs) -> str:
    """A tiny random model of `arch` saved as a model directory (what --model takes)."""
    from reasonlens.models.tiny import tiny_model

    model = tiny_model(arch, **kwargs)
    model.hf.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return str(path)
