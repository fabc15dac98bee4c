"""Self-supervised multimodal pre-training: masked any-to-any modelling (MultiMAE / 4M) on unlabelled tables."""
