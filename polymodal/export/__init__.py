"""Export a trained net to ONNX (one graph for every subset of modalities) and an onnxruntime backend."""
