"""reasonlens: study how language models plan and reason, from the inside."""

__version__ = "0.1.0"
