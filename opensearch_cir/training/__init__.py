"""Training of the compact default model (issue 5): a from-scratch CNN image tower aligned by
InfoNCE with a frozen all-MiniLM-L6-v2 text tower plus a learned projection.

    python -m opensearch_cir.training.train --out runs/default             # ~1 h on 2 CPU cores, ~1 min on a GPU
    python -m opensearch_cir.training.export --checkpoint runs/default/best.pt --out onnx_models/default
    python -m opensearch_cir.training.evaluate --model onnx_models/default --json eval.json

See onnx_models/default/MODEL_CARD.md for the data, the recipe and the measured numbers.
"""
