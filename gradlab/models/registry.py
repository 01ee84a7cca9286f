"""The model registry: name -> builder(model_cfg, init_family, num_outputs).

A builder returns the flax module and the ordered names of its layers (the top-level
parameter collections whose gradient norms the probes report layer by layer).
"""

from gradlab.registry import Registry

MODELS: Registry = Registry("model")
