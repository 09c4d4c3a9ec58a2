"""The data every task reads: vocabularies and tokenizers, corpora on disk (streamed, cached,
memory-mapped), TBPTT batches and padded batches, and one reader per format (labelled text,
CoNLL-U, sentence pairs, CSV series, conditions, moving shapes). What is not here: which task
reads what (``rnnkit.tasks``).

>>> from rnnkit.data import Vocab
>>> vocab = Vocab.from_text_chars("hello")
>>> vocab.symbols, vocab.encode("hole").tolist(), vocab.decode([3, 1, 2, 2, 3])
(['e', 'h', 'l', 'o'], [1, 3, 2, 0], 'ohllo')
"""

from rnnkit.data.corpus import (
    BUNDLED,
    Corpus,
    WordText,
    encode_lines,
    load_corpus,
    read_lines,
    resolve_paths,
    split,
    split_lines,
)
from rnnkit.data.streams import TokenStreams
from rnnkit.data.vocab import StreamDecoder, Vocab, WordVocab

__all__ = [
    "BUNDLED",
    "Corpus",
    "StreamDecoder",
    "TokenStreams",
    "Vocab",
    "WordText",
    "WordVocab",
    "encode_lines",
    "load_corpus",
    "read_lines",
    "resolve_paths",
    "split",
    "split_lines",
]
