"""Training of the compact default model (issue 5): a from-scratch CNN image tower aligned by
InfoNCE with a frozen all-MiniLM-L6-v2 text tower plus a learned projection.

    python -m opensearch_cir.training.train --config opensearch_cir/training/config.json --out runs/default
    python -m opensearch_cir.training.train --config opensearch_cir/training/config-restart.json \\
        --init runs/default/best.pt --out runs/default-restart          # second cosine cycle
    python -m opensearch_cir.training.export --checkpoint runs/default-restart/best.pt --out onnx_models/default
    python -m opensearch_cir.training.evaluate --model onnx_models/default --json eval.json

See onnx_models/default/MODEL_CARD.md for the data, the recipe and the measured numbers.
"""
