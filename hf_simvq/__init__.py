"""hf-simvq: SimVQ image and speech tokenizers as Hugging Face models.

Importing the package registers the classes with transformers' Auto classes, so `AutoModel.from_pretrained(folder)`
works for any saved SimVQ model, and marks them for `save_pretrained` to copy their code, so a saved folder also
loads with `trust_remote_code=True` where hf_simvq is not installed.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModel,
    AutoModelForAudioTokenization,
    AutoProcessor,
)

from .lm.processing_simvq import SimVQMultimodalProcessor
from .models.simvq.configuration_simvq import SimVQConfig
from .models.simvq.configuration_simvq_audio import SimVQAudioConfig
from .models.simvq.diffusers_simvq import SimVQDiffusersModel, SimVQVQModel
from .models.simvq.feature_extraction_simvq_audio import SimVQAudioFeatureExtractor
from .models.simvq.image_processing_simvq import SimVQImageProcessor
from .models.simvq.modeling_simvq import SimVQEncoderOutput, SimVQModel, SimVQModelOutput, SimVQPreTrainedModel
from .models.simvq.modeling_simvq_audio import (
    SimVQAudioDecoderOutput,
    SimVQAudioEncoderOutput,
    SimVQAudioModel,
    SimVQAudioOutput,
    SimVQAudioPreTrainedModel,
)
from .models.simvq.multiscale_quantization import MultiScaleQuantizerOutput, MultiScaleSimVQQuantizer
from .models.simvq.quantization import QuantizerOutput, SimVQQuantizer, VQQuantizer, nearest_code_indices

AutoConfig.register(SimVQConfig.model_type, SimVQConfig, exist_ok=True)
AutoModel.register(SimVQConfig, SimVQModel, exist_ok=True)
AutoImageProcessor.register(SimVQConfig, image_processor_classes={"pil": SimVQImageProcessor}, exist_ok=True)
SimVQConfig.register_for_auto_class()
SimVQModel.register_for_auto_class("AutoModel")
SimVQImageProcessor.register_for_auto_class("AutoImageProcessor")

AutoConfig.register(SimVQAudioConfig.model_type, SimVQAudioConfig, exist_ok=True)
AutoModel.register(SimVQAudioConfig, SimVQAudioModel, exist_ok=True)
AutoModelForAudioTokenization.register(SimVQAudioConfig, SimVQAudioModel, exist_ok=True)
AutoFeatureExtractor.register(SimVQAudioConfig, SimVQAudioFeatureExtractor, exist_ok=True)
SimVQAudioConfig.register_for_auto_class()
SimVQAudioModel.register_for_auto_class("AutoModel")
SimVQAudioFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

# A multimodal LM folder's processor_config.json names SimVQMultimodalProcessor; AutoProcessor finds registered
# processors by that name. The key is only the registry's handle: no config class maps to this processor.
AutoProcessor.register("simvq_multimodal", SimVQMultimodalProcessor, exist_ok=True)

__all__ = [
    "SimVQAudioConfig",
    "SimVQAudioDecoderOutput",
    "SimVQAudioEncoderOutput",
    "SimVQAudioFeatureExtractor",
    "SimVQAudioModel",
    "SimVQAudioOutput",
    "SimVQAudioPreTrainedModel",
    "MultiScaleQuantizerOutput",
    "MultiScaleSimVQQuantizer",
    "QuantizerOutput",
    "SimVQConfig",
    "SimVQDiffusersModel",
    "SimVQEncoderOutput",
    "SimVQImageProcessor",
    "SimVQModel",
    "SimVQModelOutput",
    "SimVQMultimodalProcessor",
    "SimVQPreTrainedModel",
    "SimVQQuantizer",
    "SimVQVQModel",
    "VQQuantizer",
    "nearest_code_indices",
]
