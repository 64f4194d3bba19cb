"""Package data: the paper's published numbers (published_results.yaml)."""
