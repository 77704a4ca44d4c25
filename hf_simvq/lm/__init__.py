"""Image tokens inside a causal language model: the shared id space, model extension, constrained generation."""
