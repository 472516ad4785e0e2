"""WaLDORf: a reproduction of Wasteless Language-model Distillation On Reading-comprehension.

Importing the package registers the WaLDORf model with ``AutoConfig`` and
``AutoModelForQuestionAnswering``. Explained in book/intro.md.
"""

from waldorf.config import get_profile

__all__ = ["get_profile"]
__version__ = "0.1.0"
