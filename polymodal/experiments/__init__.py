"""Studies built from the recipes: ``compare`` (fusions x robustness) and the ``demo``."""
