"""Codebook usage of an image or speech tokenizer over a whole evaluation set: utilization and perplexity."""

import datasets
import evaluate
import torch

from hf_simvq.evaluation.codebook_statistics import codebook_usage, token_histogram

_DESCRIPTION = """
Codebook utilization is the fraction of the `codebook_size` codes used at least once over the whole set (the SimVQ
paper's measure of codebook collapse); perplexity is exp of the entropy of the code frequencies (equal to the number
of used codes when all are used equally often). Utilization cannot exceed tokens / codebook_size, so evaluate on a
set holding several times more tokens than codes.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list[int]`): the token ids of each image or utterance (flattened).
    codebook_size (`int`): number of codes K of the tokenizer.
Returns:
    utilization (`float`): fraction of codes used at least once, in [0, 1].
    perplexity (`float`): exp(entropy) of the code frequencies, in [1, K].
    used_codes (`int`), dead_codes (`int`): codes used at least once / never.
Examples:
    >>> metric = evaluate.load("hf_simvq/evaluation/metrics/codebook_usage")
    >>> metric.compute(predictions=[[0, 1], [1, 1]], codebook_size=4)["utilization"]
    0.5
"""

_CITATION = """
@article{zhu2024simvq,
  title={Addressing Representation Collapse in Vector Quantized Models with One Linear Layer},
  author={Zhu, Yongxin and Li, Bocheng and Xin, Yifei and Xu, Linli},
  journal={arXiv preprint arXiv:2411.02038},
  year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CodebookUsage(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64"))}),
        )

    def _compute(self, predictions, codebook_size: int):
        histogram = torch.zeros(codebook_size, dtype=torch.long)
        for tokens in predictions:
            histogram += token_histogram(torch.as_tensor(tokens, dtype=torch.long), codebook_size)
        return codebook_usage(histogram)
