"""Built-in encoders; importing this package registers them all in ``ENCODERS``."""

from polymodal.encoders import audio, image, tabular, text, timeseries  # noqa: F401  (registration side effects)
from polymodal.encoders import pretrained  # noqa: F401  (registers the pretrained encoders; their libraries load lazily)
from polymodal.encoders.base import DEFAULT_ENCODER, ENCODERS, Encoder

__all__ = ["DEFAULT_ENCODER", "ENCODERS", "Encoder"]
