"""Classify short real texts with Embedding(mask_zero=True) -> LSTM -> Dense(softmax).

The texts are the first paragraphs of the docstrings of Python's own standard library
(they ship with every Python: nothing is downloaded), labelled by the part of the library
they document: "numbers" (math, cmath, statistics, fractions, decimal), "files" (os,
os.path, shutil, pathlib, tempfile, glob) or "text" (str, re, string, textwrap, difflib,
unicodedata). Token ids are padded with pad_sequences; the zeros are turned into lengths,
so the LSTM skips the padding instead of computing it. The test accuracy is printed next to
a bag-of-words baseline (multinomial naive Bayes) and the majority class.

Run: python examples/text_classification.py [--quick]
"""
import argparse
import inspect
import re
from collections import Counter

import numpy as np

from fastlstm.keras import LSTM, Dense, Embedding, Sequential
from fastlstm.keras.utils import pad_sequences, set_random_seed

MAXLEN = 40
CLASSES = {
    "numbers": ["math", "cmath", "statistics", "fractions", "decimal"],
    "files": ["os", "os.path", "shutil", "pathlib", "tempfile", "glob"],
    "text": ["builtins.str", "re", "string", "textwrap", "difflib", "unicodedata"],
}


def _objects(where):
    """Public callables of a module (or of builtins.str) and their methods, once each."""
    import importlib
    mod_name, _, attr = where.partition(".") if where.startswith("builtins.") else (where, "",
                                                                                     "")
    obj = importlib.import_module(mod_name)
    if attr:
        obj = getattr(obj, attr)
    out = []
    for name in sorted(dir(obj)):
        if name.startswith("_"):
            continue
        value = getattr(obj, name, None)
        if callable(value):
            out.append(value)
            if inspect.isclass(value):
                out += [getattr(value, m) for m in sorted(vars(value))
                        if not m.startswith("_") and callable(getattr(value, m, None))]
    return out


def load_texts():
    """(texts, labels): one lowercased first docstring paragraph per documented callable."""
    texts, labels, seen = [], [], set()
    for label, (cls, modules) in enumerate(CLASSES.items()):
        for where in modules:
            for obj in _objects(where):
                doc = inspect.getdoc(obj) or ""
                para = doc.split("\n\n")[0].lower()
                if len(para.split()) < 4 or para in seen:
                    continue
                seen.add(para)
                texts.append(para)
                labels.append(label)
    return texts, np.array(labels)


def tokenize(texts, vocab=None, min_count=2):
    """Word ids (1.. ; 0 is padding) for each text; builds the vocabulary when not given
    (words seen at least min_count times; the rest share id 1, "unknown")."""
    words = [re.findall(r"[a-z]+", t) for t in texts]
    if vocab is None:
        counts = Counter(w for ws in words for w in ws)
        vocab = {w: i + 2 for i, w in enumerate(sorted(w for w, c in counts.items()
                                                      if c >= min_count))}
    return [[vocab.get(w, 1) for w in ws] for ws in words], vocab


def naive_bayes(train_ids, y, test_ids, n_words, n_classes):
    """Multinomial naive Bayes on bags of word ids (Laplace smoothing): the baseline."""
    counts = np.ones((n_classes, n_words))
    for ids, c in zip(train_ids, y):
        np.add.at(counts[c], ids, 1)
    log_p = np.log(counts / counts.sum(1, keepdims=True))
    prior = np.log(np.bincount(y, minlength=n_classes) / len(y))
    return np.array([np.argmax(prior + log_p[:, ids].sum(1)) for ids in test_ids])


def main(quick=False, verbose=True):
    """Train on 75% of the texts, report accuracies on the rest.

    Parameters
    ----------
    quick : bool, default False
        15 epochs instead of 40: seconds, for CI.
    verbose : bool, default True
        Print the data set's size and the accuracies.

    Returns
    -------
    accuracy : dict of str to float
        Test accuracy of "lstm", "bag-of-words" and "majority".
    """
    set_random_seed(0)
    texts, labels = load_texts()
    order = np.random.default_rng(0).permutation(len(texts))
    cut = int(0.75 * len(texts))
    train, test = order[:cut], order[cut:]
    train_ids, vocab = tokenize([texts[i] for i in train])
    test_ids, _ = tokenize([texts[i] for i in test], vocab)
    n_words = len(vocab) + 2
    x = pad_sequences(train_ids, maxlen=MAXLEN, padding="post", truncating="post")
    xt = pad_sequences(test_ids, maxlen=MAXLEN, padding="post", truncating="post")
    y, yt = labels[train], labels[test]

    model = Sequential([Embedding(n_words, 32, mask_zero=True), LSTM(48),
                        Dense(len(CLASSES), activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=15 if quick else 40, batch_size=32, verbose=0)
    accuracy = {
        "lstm": float(model.evaluate(xt, yt, verbose=0)[1]),
        "bag-of-words": float(np.mean(naive_bayes(train_ids, y, test_ids, n_words,
                                                  len(CLASSES)) == yt)),
        "majority": float(np.mean(yt == np.bincount(y).argmax())),
    }
    if verbose:
        print(f"{len(texts)} docstrings ({', '.join(f'{k} {n}' for k, n in zip(CLASSES, np.bincount(labels)))}), "
              f"vocabulary {len(vocab)} words")
        print("test accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    return accuracy


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs")
    main(quick=ap.parse_args().quick)
