"""Training of the compact default model (issue 5): a from-scratch CNN image tower aligned by
InfoNCE with a frozen all-MiniLM-L6-v2 text tower plus a learned projection.

Entry points: `python -m opensearch_cir.training.train --config CONFIG --out DIR` (train),
`python -m opensearch_cir.training.export --run DIR --out onnx_models/default` (export and measure).
"""
