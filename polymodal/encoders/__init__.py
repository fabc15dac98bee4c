"""Built-in encoders; importing this package registers them all in ``ENCODERS``."""

from polymodal.encoders.base import DEFAULT_ENCODER, ENCODERS, Encoder
from polymodal.registry import import_submodules

# every module in this folder registers its encoder(s); pretrained/ too (their model libraries load lazily)
import_submodules(__name__, __path__)

__all__ = ["DEFAULT_ENCODER", "ENCODERS", "Encoder"]
