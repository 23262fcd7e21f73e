"""Reports: plots and run reports (Markdown and self-contained HTML)."""
