"""lmrec: search and recommendation in which pretrained language models are first-class."""

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.types import Candidates, EventKind

__version__ = "0.1.0"
__all__ = ["Candidates", "Dataset", "EventKind", "IdMap", "Interactions", "ItemTable", "__version__"]
