"""The SimVQ image tokenizer: configuration, modeling, its autoencoder and quantizers, image processing, diffusers door.

The folder is flat on purpose: `save_pretrained` copies the model's code files for `trust_remote_code=True`, and
transformers follows only one-level relative imports (`from .quantization import ...`) when it collects them, so
everything the model needs at load time lives side by side here. The public names are exported by `hf_simvq`.
"""
