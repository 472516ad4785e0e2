"""WaLDORf: a reproduction of Wasteless Language-model Distillation On Reading-comprehension.

Importing the package registers the WaLDORf model with ``AutoConfig`` and
``AutoModelForQuestionAnswering``. Explained in book/intro.md.
"""

import waldorf.models  # noqa: F401  (registers the "waldorf" model type with the Auto classes)
from waldorf.config import get_profile
from waldorf.models import WaldorfConfig, WaldorfForQuestionAnswering
from waldorf.qa import QuestionAnswerer

__all__ = ["QuestionAnswerer", "WaldorfConfig", "WaldorfForQuestionAnswering", "get_profile"]
__version__ = "0.1.0"
