"""Task generators, text formats, parsers and validators (pure Python, no torch)."""
