"""Data sets that ship with fastlstm (package data; nothing is downloaded). See README.md here."""
from importlib.resources import files

import numpy as np


def load_lynx():
    """Annual Canadian lynx trappings, Mackenzie River, 1821-1934: (years, counts), int arrays."""
    table = np.loadtxt(files(__name__).joinpath("lynx.csv").open(), delimiter=",", skiprows=1,
                       dtype=np.int64)
    return table[:, 0], table[:, 1]
