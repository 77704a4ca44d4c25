"""Peak signal-to-noise ratio between reconstructed and original images, averaged over images."""

import datasets
import evaluate
import numpy as np
import torch

from hf_simvq.evaluation.image_quality import psnr

_DESCRIPTION = """
PSNR = 10·log10(data_range² / MSE) in dB, computed per image and averaged over the set (the convention of image
tokenizer papers). Images are (channels, height, width) arrays with values in [0, data_range].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of arrays `(C, H, W)`): reconstructed images.
    references (`list` of arrays `(C, H, W)`): original images, same shapes.
    data_range (`float`, defaults to 1.0): the span of the pixel values (1.0 for [0, 1], 255 for uint8 values).
Returns:
    psnr (`float`): mean PSNR over the images, in dB.
Examples:
    >>> metric = evaluate.load("hf_simvq/evaluation/metrics/psnr")
    >>> round(metric.compute(predictions=[np.full((3, 8, 8), 0.6)], references=[np.full((3, 8, 8), 0.5)])["psnr"], 3)
    20.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PSNR(evaluate.Metric):
    def _info(self):
        image = datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float32"))))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": image, "references": image}),
        )

    def _compute(self, predictions, references, data_range: float = 1.0):
        values = [
            psnr(torch.as_tensor(np.asarray(image))[None], torch.as_tensor(np.asarray(original))[None], data_range)
            for image, original in zip(predictions, references, strict=True)
        ]
        return {"psnr": torch.cat(values).mean().item()}
