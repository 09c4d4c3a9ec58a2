"""Models built on the recurrent layers, one file per task."""

from rnnkit.models.language_model import LanguageModel, LMOutput

__all__ = ["LMOutput", "LanguageModel"]
