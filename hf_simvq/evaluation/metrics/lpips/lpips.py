"""LPIPS-VGG perceptual distance between reconstructed and original images, averaged over images."""

import datasets
import evaluate
import numpy as np
import torch

from hf_simvq.evaluation.lpips_network import load_lpips

_DESCRIPTION = """
LPIPS (Zhang et al., 2018) with the VGG16 backbone and the v0.1 linear heads. The heads ship in the `lpips` /
`torchmetrics` wheels; the ImageNet VGG16 weights come from `vgg16_weights` (torchvision's vgg16-397923af.pth) or
torchvision's download URL. Without them this metric raises an error (never random weights).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of arrays `(3, H, W)`): reconstructed images in [-1, 1].
    references (`list` of arrays `(3, H, W)`): original images in [-1, 1], same shapes.
    vgg16_weights (`str`, *optional*): local path of the VGG16 weights.
    linear_weights (`str`, *optional*): local path of the LPIPS linear heads (default: the one in the wheel).
    batch_size (`int`, defaults to 32): images per forward pass.
Returns:
    lpips (`float`): mean LPIPS distance; lower is better, 0 for identical images.
"""

_CITATION = """
@inproceedings{zhang2018lpips,
  title={The Unreasonable Effectiveness of Deep Features as a Perceptual Metric},
  author={Zhang, Richard and Isola, Phillip and Efros, Alexei A and Shechtman, Eli and Wang, Oliver},
  booktitle={CVPR}, year={2018}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LPIPSMetric(evaluate.Metric):
    def _info(self):
        image = datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float32"))))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": image, "references": image}),
        )

    def _compute(self, predictions, references, vgg16_weights=None, linear_weights=None, batch_size: int = 32):
        model = load_lpips(vgg16_weights, linear_weights, allow_download=vgg16_weights is None)
        predictions = torch.as_tensor(np.asarray(predictions, dtype=np.float32))
        references = torch.as_tensor(np.asarray(references, dtype=np.float32))
        with torch.no_grad():
            distances = [
                model(predictions[start : start + batch_size], references[start : start + batch_size])
                for start in range(0, len(predictions), batch_size)
            ]
        return {"lpips": torch.cat(distances).mean().item()}
