"""Models by name. Importing this package registers every model family."""

import gradlab.models.cnn  # noqa: F401  (registers 'cnn', 'cnn_localizer')
import gradlab.models.detector  # noqa: F401  (registers 'detector')
import gradlab.models.resnet  # noqa: F401  (registers 'resnet')
import gradlab.models.resnet_imagenet  # noqa: F401  (registers 'resnet_bottleneck')
import gradlab.models.rnn  # noqa: F401  (registers 'elman', 'lstm', 'gru')
import gradlab.models.transformer  # noqa: F401  (registers 'transformer_lm', 'transformer_classifier')
from gradlab.models import linear, mlp  # noqa: F401  (registers 'linear', 'mlp')
from gradlab.models.activations import ACTIVATIONS
from gradlab.models.init import INIT_FAMILIES, scale_by, scale_params
from gradlab.models.registry import MODELS, Model, build_model

__all__ = ["ACTIVATIONS", "INIT_FAMILIES", "MODELS", "Model", "build_model", "scale_by",
           "scale_params"]
