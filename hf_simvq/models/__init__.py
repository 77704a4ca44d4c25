"""The tokenizer models, one folder per model family, laid out as transformers' `models/<name>/` folders."""
