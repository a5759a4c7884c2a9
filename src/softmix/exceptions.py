"""Warnings and errors raised by softmix.

Hierarchy::

    SoftmixWarning (UserWarning)
    ├── ConvergenceWarning          the fit stopped before meeting its tolerance, or diverged
    └── DegenerateComponentWarning  a component/expert collapsed (weight or variance -> 0)
    NotFittedError (ValueError, AttributeError)
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "NotFittedError",
    "SoftmixWarning",
]


class SoftmixWarning(UserWarning):
    """Base class of every warning softmix emits."""


class ConvergenceWarning(SoftmixWarning):
    """The optimiser stopped at ``max_iter`` or on a non-finite objective.

    The message always names a remedy (raise ``max_iter``, loosen ``tol``, use restarts...).
    """


class DegenerateComponentWarning(SoftmixWarning):
    """A mixture component or expert collapsed; the message names which one."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted estimator was called before ``fit``.

    Subclasses ValueError and AttributeError like scikit-learn's, so ``hasattr`` works.
    """
