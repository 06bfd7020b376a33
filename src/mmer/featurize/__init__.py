"""Text featurisation: transcripts -> a text modality (GloVe 6B-50d word sequences or all-MiniLM-L6-v2 embeddings).

Used by `mmer featurize text` and by the readers of real transcripts (mosei-text, meld). See docs/text.md.
"""

from mmer.featurize.cache import featurize_cached
from mmer.featurize.encoders import ENCODERS, POOLINGS, TextEncoding, featurize_texts

__all__ = ["ENCODERS", "POOLINGS", "TextEncoding", "featurize_cached", "featurize_texts"]
