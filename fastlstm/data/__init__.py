"""Data sets that ship with fastlstm (package data; nothing is downloaded). See README.md here."""
from importlib.resources import files

import numpy as np


def load_lynx():
    """The annual number of Canadian lynx trapped in the Mackenzie River district, 1821-1934.

    The classic population series (the same numbers as R's ``datasets::lynx``), read from
    the package's own ``lynx.csv``: nothing is downloaded. It has a cycle of roughly 10
    years; ``examples/lynx_forecast.py`` forecasts it.

    Returns
    -------
    years : ndarray of int64, shape (114,)
        1821, 1822, ..., 1934.
    counts : ndarray of int64, shape (114,)
        Lynx trapped in each year.
    """
    table = np.loadtxt(files(__name__).joinpath("lynx.csv").open(), delimiter=",", skiprows=1,
                       dtype=np.int64)
    return table[:, 0], table[:, 1]
