"""The data every task reads: vocabularies and tokenizers (characters, bytes, words, byte-level
BPE), corpora on disk (streamed, cached, memory-mapped), TBPTT batches and padded batches, the
text a language model is scored on, and one reader per format (labelled text, CoNLL-U, sentence
pairs, CSV series, conditions, moving shapes). What is not here: which task reads what
(``rnnkit.tasks``).

>>> from rnnkit.data import Vocab
>>> vocab = Vocab.from_text_chars("hello")
>>> vocab.symbols, vocab.encode("hole").tolist(), vocab.decode([3, 1, 2, 2, 3])
(['e', 'h', 'l', 'o'], [1, 3, 2, 0], 'ohllo')
"""

from rnnkit.data.bpe import BpeVocab
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
from rnnkit.data.scored import ScoredText, char_counts, scored_chars
from rnnkit.data.streams import TokenStreams
from rnnkit.data.vocab import StreamDecoder, Vocab, WordVocab

__all__ = [
    "BUNDLED",
    "BpeVocab",
    "Corpus",
    "ScoredText",
    "StreamDecoder",
    "TokenStreams",
    "Vocab",
    "WordText",
    "WordVocab",
    "char_counts",
    "encode_lines",
    "load_corpus",
    "read_lines",
    "resolve_paths",
    "scored_chars",
    "split",
    "split_lines",
]
