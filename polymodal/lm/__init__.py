"""Multimodal tokens into a causal language model: connectors, sequence building, training, generation."""
