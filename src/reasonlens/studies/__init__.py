"""Studies: compositions of task -> model -> train -> evaluate -> trace -> analyse -> report."""
