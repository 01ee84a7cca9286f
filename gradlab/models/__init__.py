"""Models by name. Importing this package registers every model family."""

from gradlab.models import linear, mlp  # noqa: F401  (registers 'linear', 'mlp')
from gradlab.models.activations import ACTIVATIONS
from gradlab.models.init import INIT_FAMILIES, scale_params
from gradlab.models.registry import MODELS

__all__ = ["ACTIVATIONS", "INIT_FAMILIES", "MODELS", "scale_params"]
