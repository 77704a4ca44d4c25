"""Structural similarity (SSIM) between reconstructed and original images, averaged over images and channels."""

import datasets
import evaluate
import numpy as np
import torch

from hf_simvq.evaluation.image_quality import ssim

_DESCRIPTION = """
SSIM of Wang et al. (2004) with the standard Gaussian window (11×11, σ = 1.5), K1 = 0.01, K2 = 0.03, computed where
the window fits inside the image, averaged over positions and channels, then over images. Equal to scikit-image's
`structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of arrays `(C, H, W)`): reconstructed images, H and W at least 11.
    references (`list` of arrays `(C, H, W)`): original images, same shapes.
    data_range (`float`, defaults to 1.0): the span of the pixel values (1.0 for [0, 1]).
Returns:
    ssim (`float`): mean SSIM over the images, at most 1.
"""

_CITATION = """
@article{wang2004ssim,
  title={Image quality assessment: from error visibility to structural similarity},
  author={Wang, Zhou and Bovik, Alan C and Sheikh, Hamid R and Simoncelli, Eero P},
  journal={IEEE Transactions on Image Processing},
  volume={13}, number={4}, pages={600--612}, year={2004}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SSIM(evaluate.Metric):
    def _info(self):
        image = datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float32"))))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": image, "references": image}),
        )

    def _compute(self, predictions, references, data_range: float = 1.0):
        values = [
            ssim(torch.as_tensor(np.asarray(image))[None], torch.as_tensor(np.asarray(original))[None], data_range)
            for image, original in zip(predictions, references, strict=True)
        ]
        return {"ssim": torch.cat(values).mean().item()}
