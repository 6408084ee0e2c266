"""TorchSession: a PyTorch model behind the same ``run`` interface as :class:`OnnxSession`.

With it, dev-set evaluation during training and the PyTorch benchmark engine go
through :class:`serving.predictor.Predictor` unchanged: same windows, same decoding.
"""

from __future__ import annotations

import numpy as np
import torch

from training.model import KhabarModel


class TorchSession:
    """Runs a :class:`KhabarModel` in eval mode without gradients."""

    def __init__(self, model: KhabarModel, threads: int | None = None) -> None:
        """Wrap ``model``; ``threads`` sets torch's intra-op threads when given."""
        self.model = model
        if threads:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()

    @torch.inference_mode()
    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        """Forward one padded batch and return numpy outputs by name."""
        was_training = self.model.training
        self.model.eval()
        outputs = self.model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        if was_training:
            self.model.train()
        return {name: value.float().numpy() for name, value in outputs.items()}
