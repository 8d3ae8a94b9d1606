"""`audioop` for every package: in the standard library until Python 3.12 (deprecated there,
so the import's warning is silenced), from the audioop-lts wheel, under the same name, on
3.13+."""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["audioop"]
